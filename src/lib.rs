//! Zarish Sphere Auth: an OAuth 2.0 / OpenID Connect authorization server for healthcare.
//!
//! The crate is organised by domain: `oauth` holds the protocol endpoints' logic, `oidc` the
//! OpenID Connect additions, `tokens` the JWT formats, `keys` the signing keys, `session` the SSO
//! session and CSRF handling, `store` the persistence layer, `http` the web edge and `cli` the
//! administrator's commands.

pub mod account;
pub mod bootstrap;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod factors;
pub mod http;
pub mod keys;
pub mod mfa;
pub mod model;
pub mod oauth;
pub mod oidc;
pub mod password;
pub mod rbac;
pub mod secret;
pub mod server;
pub mod session;
pub mod state;
pub mod store;
pub mod throttle;
pub mod tokens;
