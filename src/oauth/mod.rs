//! OAuth 2.0 endpoints and their domain logic.

pub mod authorize;
pub mod client_auth;
pub mod error;
pub mod introspect;
pub mod issue;
pub mod pkce;
pub mod revoke;
pub mod signin;
pub mod token;
