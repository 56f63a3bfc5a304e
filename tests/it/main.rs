//! Integration tests: the real `zarish` binary on an ephemeral loopback port with a temporary
//! data directory, driven over HTTP by client libraries nobody on this team wrote. Every scenario
//! runs on both backends: SQLite, and PostgreSQL at 127.0.0.1:5432 in a database of its own.

/// Turns each `async fn name(backend: Backend)` scenario into one test per backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

mod cluster;
mod common;
mod flows;
mod forged_tokens;
mod hardening;
mod local;
mod malformed;
mod mfa;
mod negative;
