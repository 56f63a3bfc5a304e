//! OpenID Connect additions: discovery documents (OIDC Discovery, RFC 8414, SMART App Launch),
//! the JWKS and the userinfo endpoint.

pub mod discovery;
pub mod logout;
pub mod userinfo;
