//! First-start set-up and the registration logic shared by the CLI and the demo: organizations,
//! users and clients, each with generated secrets that are shown once and stored only hashed.

use std::path::Path;

use serde::Serialize;

use crate::model::{Client, ClientKind, GrantType, Organization, Role, Scopes, SigningAlg, User};
use crate::password::{PasswordError, PasswordHasherPool};
use crate::secret::{HashKey, HashPurpose, SecretString, random_id, random_token};
use crate::store::{SharedStore, StoreError};

/// Why a registration was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// A value is invalid; the message says which and why.
    #[error("{0}")]
    Invalid(&'static str),
    /// The id or username is taken.
    #[error("{0} already exists")]
    Exists(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// Hashing failed.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// Writing the credentials file failed.
    #[error("cannot write {0}: {1}")]
    Io(String, std::io::Error),
}

impl From<StoreError> for RegistrationError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict => RegistrationError::Exists("a record with this id"),
            other => RegistrationError::Store(other),
        }
    }
}

/// What a new client looks like.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Client id; generated when absent.
    pub client_id: Option<String>,
    /// Display name.
    pub name: String,
    /// Confidential or public.
    pub kind: ClientKind,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Exact post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// Allowed grant types.
    pub grant_types: Vec<GrantType>,
    /// Allowed scopes.
    pub scope: Scopes,
    /// Skips the consent page.
    pub first_party: bool,
    /// Whether PKCE is required (forced for public clients).
    pub pkce_required: bool,
    /// ID token algorithm.
    pub id_token_alg: SigningAlg,
}

fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks a redirect URI for registration: absolute, no fragment, HTTPS unless loopback.
pub fn check_redirect_uri(raw: &str) -> Result<(), RegistrationError> {
    let url = url::Url::parse(raw)
        .map_err(|_| RegistrationError::Invalid("redirect URI is not an absolute URL"))?;
    if url.fragment().is_some() {
        return Err(RegistrationError::Invalid(
            "redirect URI must not contain a fragment",
        ));
    }
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(RegistrationError::Invalid(
            "redirect URI must use https unless it is loopback",
        )),
        // Private-use schemes of native apps (RFC 8252 §7.1) need a dot in the scheme.
        scheme if scheme.contains('.') => Ok(()),
        _ => Err(RegistrationError::Invalid(
            "redirect URI scheme is not allowed",
        )),
    }
}

/// Registers a client. Returns it with its secret (confidential clients), shown once.
pub async fn register_client(
    store: &SharedStore,
    hash_key: &HashKey,
    spec: ClientSpec,
    now: i64,
) -> Result<(Client, Option<SecretString>), RegistrationError> {
    let (client, secret) = build_client(hash_key, spec, now)?;
    store
        .insert_client(&client)
        .await
        .map_err(|e| exists_as(e, "a client with this id"))?;
    Ok((client, secret))
}

/// Checks a client specification and makes the client and its secret, without storing them.
pub fn build_client(
    hash_key: &HashKey,
    spec: ClientSpec,
    now: i64,
) -> Result<(Client, Option<SecretString>), RegistrationError> {
    let client_id = spec.client_id.unwrap_or_else(random_id);
    if !valid_identifier(&client_id) {
        return Err(RegistrationError::Invalid(
            "client id must be 1-64 characters of A-Z a-z 0-9 - _ .",
        ));
    }
    if spec.grant_types.is_empty() {
        return Err(RegistrationError::Invalid(
            "a client needs at least one grant type",
        ));
    }
    let needs_redirect = spec.grant_types.contains(&GrantType::AuthorizationCode);
    if needs_redirect && spec.redirect_uris.is_empty() {
        return Err(RegistrationError::Invalid(
            "an authorization-code client needs a redirect URI",
        ));
    }
    for uri in spec
        .redirect_uris
        .iter()
        .chain(&spec.post_logout_redirect_uris)
    {
        check_redirect_uri(uri)?;
    }
    if spec.kind == ClientKind::Public && spec.grant_types.contains(&GrantType::ClientCredentials) {
        return Err(RegistrationError::Invalid(
            "a public client cannot use client_credentials",
        ));
    }

    let secret = (spec.kind == ClientKind::Confidential).then(random_token);
    let client = Client {
        client_id,
        name: spec.name,
        kind: spec.kind,
        secret_hash: secret
            .as_ref()
            .map(|s| hash_key.hash(HashPurpose::ClientSecret, s.expose())),
        redirect_uris: spec.redirect_uris,
        post_logout_redirect_uris: spec.post_logout_redirect_uris,
        grant_types: spec.grant_types,
        scope: spec.scope,
        first_party: spec.first_party,
        pkce_required: spec.pkce_required || spec.kind == ClientKind::Public,
        id_token_alg: spec.id_token_alg,
        created_at: now,
    };
    Ok((client, secret))
}

/// What a new user looks like.
#[derive(Debug, Clone)]
pub struct UserSpec {
    /// Sign-in name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// Organization id (must exist).
    pub organization_id: String,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Phone.
    pub phone_number: Option<String>,
}

/// Registers a user with a password.
pub async fn register_user(
    store: &SharedStore,
    passwords: &PasswordHasherPool,
    spec: UserSpec,
    password: SecretString,
    now: i64,
) -> Result<User, RegistrationError> {
    if store
        .get_organization(&spec.organization_id)
        .await?
        .is_none()
    {
        return Err(RegistrationError::Invalid("organization does not exist"));
    }
    let user = build_user(passwords, spec, password, now).await?;
    store
        .insert_user(&user)
        .await
        .map_err(|e| exists_as(e, "a user with this username"))?;
    Ok(user)
}

/// Checks a user specification and hashes the password, without storing anything.
pub async fn build_user(
    passwords: &PasswordHasherPool,
    spec: UserSpec,
    password: SecretString,
    now: i64,
) -> Result<User, RegistrationError> {
    if !valid_identifier(&spec.username) {
        return Err(RegistrationError::Invalid(
            "username must be 1-64 characters of A-Z a-z 0-9 - _ .",
        ));
    }
    if password.expose().chars().count() < 12 {
        return Err(RegistrationError::Invalid(
            "password must be at least 12 characters",
        ));
    }
    if password.expose().len() > 1024 {
        return Err(RegistrationError::Invalid(
            "password must be at most 1024 bytes",
        ));
    }
    Ok(User {
        id: random_id(),
        username: spec.username,
        password_hash: passwords.hash(password).await?,
        role: spec.role,
        organization_id: spec.organization_id,
        given_name: spec.given_name,
        family_name: spec.family_name,
        email: spec.email,
        phone_number: spec.phone_number,
        address: None,
        created_at: now,
    })
}

fn exists_as(err: StoreError, what: &'static str) -> RegistrationError {
    match err {
        StoreError::Conflict => RegistrationError::Exists(what),
        other => RegistrationError::Store(other),
    }
}

/// Registers an organization.
pub async fn register_organization(
    store: &SharedStore,
    org: Organization,
    now: i64,
) -> Result<(), RegistrationError> {
    check_organization(&org)?;
    store
        .insert_organization(&org, now)
        .await
        .map_err(|e| exists_as(e, "an organization with this id"))
}

/// Checks an organization's id and country code.
pub fn check_organization(org: &Organization) -> Result<(), RegistrationError> {
    if !valid_identifier(&org.id) {
        return Err(RegistrationError::Invalid(
            "organization id must be 1-64 characters of A-Z a-z 0-9 - _ .",
        ));
    }
    if org.country.len() != 2 || !org.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(RegistrationError::Invalid(
            "country must be an ISO 3166-1 alpha-2 code, e.g. BD",
        ));
    }
    Ok(())
}

/// The demo credentials file.
#[derive(Debug, Serialize)]
pub struct DemoCredentials {
    issuer: String,
    clients: Vec<DemoClient>,
    users: Vec<DemoUser>,
}

#[derive(Debug, Serialize)]
struct DemoClient {
    client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
    redirect_uris: Vec<String>,
    grant_types: Vec<&'static str>,
    scope: String,
}

#[derive(Debug, Serialize)]
struct DemoUser {
    username: String,
    password: String,
    role: &'static str,
    organization: String,
}

const DEMO_ORG: &str = "hospital-abc";

/// Creates the demo organization, one user per role and three clients, and writes their
/// credentials to `path` (mode 0600). All or nothing: the credentials are written to a temporary
/// file first, the records are stored in one transaction, and only then is the file put in place;
/// a start interrupted half-way leaves nothing behind and the next start does it all again.
pub async fn create_demo(
    store: &SharedStore,
    hash_key: &HashKey,
    passwords: &PasswordHasherPool,
    issuer: &str,
    path: &Path,
    now: i64,
) -> Result<(), RegistrationError> {
    let org = Organization {
        id: DEMO_ORG.into(),
        name: "Hospital ABC".into(),
        country: "BD".into(),
    };
    check_organization(&org)?;
    let mut records = Vec::new();

    let people = [
        (Role::SuperAdmin, "superadmin", "Sara", "Rahman"),
        (Role::OrganizationAdmin, "orgadmin", "Omar", "Hossain"),
        (Role::HealthcareProvider, "provider", "Dr. Nadia", "Karim"),
        (Role::DataAnalyst, "analyst", "Imran", "Chowdhury"),
        (Role::ClinicalStaff, "clinician", "Farida", "Begum"),
    ];
    let mut users = Vec::new();
    for (role, username, given, family) in people {
        let password = random_token();
        let spec = UserSpec {
            username: username.into(),
            role,
            organization_id: DEMO_ORG.into(),
            given_name: Some(given.into()),
            family_name: Some(family.into()),
            email: Some(format!("{username}@hospital-abc.example")),
            phone_number: None,
        };
        records.push(build_user(passwords, spec, password.clone(), now).await?);
        users.push(DemoUser {
            username: username.into(),
            password: password.expose().to_owned(),
            role: role.as_str(),
            organization: DEMO_ORG.into(),
        });
    }

    let user_scope = "openid profile email address phone offline_access account fhirUser launch/patient \
                      patient/Patient.read patient/Observation.read user/Patient.read \
                      user/Observation.read user/Encounter.read";
    let specs = [
        (
            "demo-web",
            "Demo Web Portal",
            ClientKind::Confidential,
            "http://localhost:3000/callback",
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            user_scope,
            true,
        ),
        (
            "demo-spa",
            "Demo Patient App",
            ClientKind::Public,
            "http://localhost:5173/callback",
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            "openid profile email offline_access patient/Patient.read patient/Observation.read",
            false,
        ),
        (
            "demo-backend",
            "Demo Backend Service",
            ClientKind::Confidential,
            "",
            vec![GrantType::ClientCredentials],
            "system/Patient.read system/Observation.read",
            true,
        ),
    ];
    let mut clients = Vec::new();
    let mut client_records = Vec::new();
    for (id, name, kind, redirect, grants, scope, first_party) in specs {
        let redirect_uris: Vec<String> = if redirect.is_empty() {
            vec![]
        } else {
            vec![redirect.into()]
        };
        let spec = ClientSpec {
            client_id: Some(id.into()),
            name: name.into(),
            kind,
            redirect_uris: redirect_uris.clone(),
            post_logout_redirect_uris: redirect_uris
                .iter()
                .map(|u| u.trim_end_matches("callback").to_owned())
                .collect(),
            grant_types: grants.clone(),
            scope: Scopes::parse(scope).map_err(|_| RegistrationError::Invalid("demo scope"))?,
            first_party,
            pkce_required: true,
            id_token_alg: SigningAlg::RS256,
        };
        let (client, secret) = build_client(hash_key, spec, now)?;
        clients.push(DemoClient {
            client_id: client.client_id.clone(),
            client_secret: secret.map(|s| s.expose().to_owned()),
            redirect_uris,
            grant_types: grants.iter().map(|g| g.as_str()).collect(),
            scope: client.scope.to_string(),
        });
        client_records.push(client);
    }

    let file = DemoCredentials {
        issuer: issuer.into(),
        clients,
        users,
    };
    let json = zeroize::Zeroizing::new(
        serde_json::to_vec_pretty(&file)
            .map_err(|_| RegistrationError::Invalid("demo credentials"))?,
    );
    let io = |e| RegistrationError::Io(path.display().to_string(), e);
    let staging = path.with_extension("json.partial");
    if staging.exists() {
        std::fs::remove_file(&staging).map_err(io)?;
    }
    crate::keys::write_private_file(&staging, &json).map_err(io)?;
    store
        .insert_bootstrap(&org, &records, &client_records, now)
        .await?;
    std::fs::rename(&staging, path).map_err(io)?;
    Ok(())
}

/// Creates the first super_admin (`admin`) in a default organization and returns its one-time
/// password, to be shown once to the operator.
pub async fn create_first_admin(
    store: &SharedStore,
    passwords: &PasswordHasherPool,
    now: i64,
) -> Result<SecretString, RegistrationError> {
    let org = Organization {
        id: "platform".into(),
        name: "Platform".into(),
        country: "ZZ".into(),
    };
    check_organization(&org)?;
    let password = random_token();
    let spec = UserSpec {
        username: "admin".into(),
        role: Role::SuperAdmin,
        organization_id: "platform".into(),
        given_name: None,
        family_name: None,
        email: None,
        phone_number: None,
    };
    let user = build_user(passwords, spec, password.clone(), now).await?;
    store.insert_bootstrap(&org, &[user], &[], now).await?;
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_rules() {
        assert!(check_redirect_uri("https://app.example/cb").is_ok());
        assert!(check_redirect_uri("http://localhost:3000/cb").is_ok());
        assert!(check_redirect_uri("http://app.example/cb").is_err());
        assert!(check_redirect_uri("https://app.example/cb#frag").is_err());
        assert!(check_redirect_uri("javascript:alert(1)").is_err());
        assert!(check_redirect_uri("com.example.app:/cb").is_ok());
        assert!(check_redirect_uri("/relative").is_err());
    }
}
