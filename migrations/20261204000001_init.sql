-- Zarish Sphere Auth, initial schema. Portable SQL: SQLite and PostgreSQL run the same file.
-- Times are Unix seconds (BIGINT). Every stored secret or bearer handle is a keyed hash.

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    country     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    role            TEXT NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations(id),
    given_name      TEXT,
    family_name     TEXT,
    email           TEXT,
    phone_number    TEXT,
    address         TEXT,
    created_at      BIGINT NOT NULL
);

CREATE TABLE clients (
    client_id                 TEXT PRIMARY KEY,
    name                      TEXT NOT NULL,
    kind                      TEXT NOT NULL,
    secret_hash               TEXT,
    redirect_uris             TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    grant_types               TEXT NOT NULL,
    scope                     TEXT NOT NULL,
    first_party               BOOLEAN NOT NULL,
    pkce_required             BOOLEAN NOT NULL,
    id_token_alg              TEXT NOT NULL,
    created_at                BIGINT NOT NULL
);

-- Private keys are sealed with AES-256-GCM under a key derived from the master key file, which
-- never enters the database.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    sealed_key  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL REFERENCES users(id),
    auth_time   BIGINT NOT NULL,
    amr         TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE auth_requests (
    handle_hash TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    params      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE grants (
    id          TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    scope       TEXT NOT NULL,
    auth_time   BIGINT NOT NULL,
    amr         TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX grants_session ON grants(session_id);

CREATE TABLE authorization_codes (
    code_hash       TEXT PRIMARY KEY,
    grant_id        TEXT NOT NULL REFERENCES grants(id),
    client_id       TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    nonce           TEXT,
    code_challenge  TEXT,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT
);

CREATE TABLE refresh_tokens (
    jti         TEXT PRIMARY KEY,
    grant_id    TEXT NOT NULL REFERENCES grants(id),
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    rotated_at  BIGINT
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens(grant_id);

-- Access tokens issued under a user grant, so that revoking the grant (code replay, refresh reuse,
-- logout) makes them inactive at introspection. Client-credentials tokens are not recorded.
CREATE TABLE access_tokens (
    jti         TEXT PRIMARY KEY,
    grant_id    TEXT NOT NULL REFERENCES grants(id),
    expires_at  BIGINT NOT NULL
);
CREATE INDEX access_tokens_grant ON access_tokens(grant_id);

-- Individually revoked token ids (RFC 7009), kept until the token would have expired anyway.
CREATE TABLE revoked_tokens (
    jti         TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE consents (
    user_id     TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    granted_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
