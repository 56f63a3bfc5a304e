//! The domain's vocabulary: roles, grant types, clients, users and scopes, each as its own type
//! so that no protocol value travels as a bare string past the edge where it was parsed.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A platform role. The set is fixed; permissions follow from it (see [`crate::rbac`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Operates the whole platform.
    SuperAdmin,
    /// Administers one organization.
    OrganizationAdmin,
    /// A clinician with read and write access to the records of their organization.
    HealthcareProvider,
    /// Reads data for analysis.
    DataAnalyst,
    /// Nursing and support staff.
    ClinicalStaff,
}

impl Role {
    /// Every role, in order of decreasing authority.
    pub const ALL: [Role; 5] = [
        Role::SuperAdmin,
        Role::OrganizationAdmin,
        Role::HealthcareProvider,
        Role::DataAnalyst,
        Role::ClinicalStaff,
    ];

    /// The role's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::SuperAdmin => "super_admin",
            Role::OrganizationAdmin => "organization_admin",
            Role::HealthcareProvider => "healthcare_provider",
            Role::DataAnalyst => "data_analyst",
            Role::ClinicalStaff => "clinical_staff",
        }
    }
}

impl FromStr for Role {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(UnknownValue)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no known value of the type it was parsed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown value")]
pub struct UnknownValue;

/// An OAuth grant type this server supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// RFC 6749 §4.1.
    AuthorizationCode,
    /// RFC 6749 §6.
    RefreshToken,
    /// RFC 6749 §4.4.
    ClientCredentials,
}

impl GrantType {
    /// Every supported grant type.
    pub const ALL: [GrantType; 3] = [
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ];

    /// The grant type's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
}

impl FromStr for GrantType {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GrantType::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or(UnknownValue)
    }
}

/// Whether a client can keep a secret (RFC 6749 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// Has a secret and authenticates with it.
    Confidential,
    /// Runs on the user's device; no secret, PKCE always.
    Public,
}

impl ClientKind {
    /// The kind's stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Confidential => "confidential",
            ClientKind::Public => "public",
        }
    }
}

impl FromStr for ClientKind {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "confidential" => Ok(ClientKind::Confidential),
            "public" => Ok(ClientKind::Public),
            _ => Err(UnknownValue),
        }
    }
}

/// A JWS algorithm this server signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
}

impl SigningAlg {
    /// The algorithm's JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::ES256 => "ES256",
            SigningAlg::RS256 => "RS256",
        }
    }

    /// The matching `jsonwebtoken` algorithm.
    pub fn jwt_alg(self) -> jsonwebtoken::Algorithm {
        match self {
            SigningAlg::ES256 => jsonwebtoken::Algorithm::ES256,
            SigningAlg::RS256 => jsonwebtoken::Algorithm::RS256,
        }
    }
}

impl FromStr for SigningAlg {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ES256" => Ok(SigningAlg::ES256),
            "RS256" => Ok(SigningAlg::RS256),
            _ => Err(UnknownValue),
        }
    }
}

/// A set of scope values (RFC 6749 §3.3): space-separated on the wire, ordered and unique here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

/// The longest scope string accepted from a client.
pub const MAX_SCOPE_LEN: usize = 2048;

impl Scopes {
    /// Parses a scope parameter. Scope tokens are printable ASCII without `"` or `\`.
    pub fn parse(raw: &str) -> Result<Self, UnknownValue> {
        if raw.len() > MAX_SCOPE_LEN {
            return Err(UnknownValue);
        }
        let valid_char = |c: char| c == '!' || ('#'..='[').contains(&c) || (']'..='~').contains(&c);
        let mut set = BTreeSet::new();
        for token in raw.split(' ').filter(|t| !t.is_empty()) {
            if !token.chars().all(valid_char) {
                return Err(UnknownValue);
            }
            set.insert(token.to_owned());
        }
        Ok(Self(set))
    }

    /// Builds a set from trusted, already valid scope values.
    pub fn from_values<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Self {
        Self(values.into_iter().map(Into::into).collect())
    }

    /// Whether the set holds `scope`.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    /// Whether every scope of `self` is in `other`.
    pub fn is_subset(&self, other: &Scopes) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scopes in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The scopes of `self` that are also in `other`.
    pub fn intersect(&self, other: &Scopes) -> Scopes {
        Scopes(self.0.intersection(&other.0).cloned().collect())
    }

    /// Removes one scope.
    pub fn remove(&mut self, scope: &str) {
        self.0.remove(scope);
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

/// An organization of the platform (a hospital, a clinic network, a ministry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// Short stable identifier, e.g. `hospital-abc`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
}

/// A user account.
#[derive(Debug, Clone)]
pub struct User {
    /// Stable subject identifier.
    pub id: String,
    /// Sign-in name, unique.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// The platform role.
    pub role: Role,
    /// The organization the user belongs to.
    pub organization_id: String,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Telephone number.
    pub phone_number: Option<String>,
    /// Postal address, one line.
    pub address: Option<String>,
    /// Creation time (Unix seconds).
    pub created_at: i64,
}

/// A registered OAuth client.
#[derive(Debug, Clone)]
pub struct Client {
    /// The client identifier.
    pub client_id: String,
    /// Display name shown on the consent page.
    pub name: String,
    /// Confidential or public.
    pub kind: ClientKind,
    /// Keyed hash of the secret; `None` for public clients.
    pub secret_hash: Option<String>,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Exact post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// Grant types the client may use.
    pub grant_types: Vec<GrantType>,
    /// Scopes the client may ask for.
    pub scope: Scopes,
    /// A first-party client skips the consent page.
    pub first_party: bool,
    /// Whether PKCE is required (always for public clients).
    pub pkce_required: bool,
    /// Algorithm of the ID tokens issued to this client.
    pub id_token_alg: SigningAlg,
    /// Creation time (Unix seconds).
    pub created_at: i64,
}

impl Client {
    /// Whether the client may use `grant`.
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print() {
        let s = Scopes::parse("openid  profile openid").expect("valid");
        assert_eq!(s.to_string(), "openid profile");
        assert!(Scopes::parse("bad\"scope").is_err());
        assert!(Scopes::parse("ünicode").is_err());
    }

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn subset() {
        let a = Scopes::parse("a b").expect("valid");
        let b = Scopes::parse("a b c").expect("valid");
        assert!(a.is_subset(&b));
        assert!(!b.is_subset(&a));
    }
}
