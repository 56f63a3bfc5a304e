//! Integration tests: the real `zarish` binary on an ephemeral loopback port with a temporary
//! data directory, driven over HTTP by client libraries nobody on this team wrote.

mod common;
mod flows;
mod forged_tokens;
mod malformed;
mod negative;
