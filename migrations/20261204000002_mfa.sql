-- Multi-factor authentication and brute-force defence. Portable SQL for SQLite and PostgreSQL.

-- One TOTP factor per user. The secret is sealed (AES-256-GCM) under a key derived from the
-- master key. A factor is pending until the user confirms one code. last_used_step is the newest
-- accepted 30-second step: codes of that step or older are refused (replay defence).
CREATE TABLE mfa_factors (
    user_id         TEXT PRIMARY KEY REFERENCES users(id),
    sealed_secret   TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    confirmed_at    BIGINT,
    last_used_step  BIGINT
);

-- Single-use backup codes, stored only as keyed hashes.
CREATE TABLE backup_codes (
    user_id     TEXT NOT NULL REFERENCES users(id),
    code_hash   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    used_at     BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- Failed sign-ins (password or second factor) per client address, within the counting window.
CREATE TABLE ip_failures (
    ip          TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX ip_failures_ip ON ip_failures(ip, at);

-- Addresses blocked from sign-in until a time.
CREATE TABLE ip_blocks (
    ip              TEXT PRIMARY KEY,
    blocked_until   BIGINT NOT NULL
);

-- Consecutive failed sign-ins per typed username (known or not, so that the delay does not
-- reveal which accounts exist), for the exponential delay.
CREATE TABLE account_failures (
    user_id         TEXT PRIMARY KEY,
    failures        BIGINT NOT NULL,
    last_failure    BIGINT NOT NULL
);

CREATE INDEX sessions_user ON sessions(user_id);
