//! A user's second factor, as the sign-in flow and the account page use it: enrolment with a
//! confirming code, verification with replay defence, backup codes, and removal. The TOTP secret
//! is sealed under the master key, bound to the user's id.

use crate::mfa::{self, Enrollment};
use crate::model::User;
use crate::secret::{HashPurpose, SecretString};
use crate::state::AppState;
use crate::store::StoreError;

/// A failure of ours while handling a factor (never a wrong code).
#[derive(Debug, thiserror::Error)]
pub enum FactorError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Sealing or opening the secret failed.
    #[error("sealed secret: {0}")]
    Seal(#[from] crate::keys::KeyError),
    /// The TOTP generator could not be built.
    #[error(transparent)]
    Totp(#[from] mfa::TotpSetupError),
}

/// How a second factor was proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A TOTP code of a step not used before.
    Totp,
    /// A backup code, now spent; this many remain.
    BackupCode {
        /// Unused backup codes left.
        remaining: i64,
    },
}

fn seal_label(user_id: &str) -> String {
    format!("totp:{user_id}")
}

/// Whether the user has a confirmed factor.
pub async fn is_enrolled(state: &AppState, user: &User) -> Result<bool, FactorError> {
    Ok(state
        .store
        .get_mfa(&user.id)
        .await?
        .is_some_and(|m| m.confirmed_at.is_some()))
}

/// Starts (or restarts) enrolment: a fresh secret, stored sealed and pending. Does nothing to a
/// confirmed factor, and then returns `None`.
pub async fn begin_enrollment(
    state: &AppState,
    user: &User,
) -> Result<Option<Enrollment>, FactorError> {
    if is_enrolled(state, user).await? {
        return Ok(None);
    }
    let secret = mfa::new_secret();
    let sealed = state.vault.master().seal(&seal_label(&user.id), &secret)?;
    state
        .store
        .put_pending_mfa(&user.id, &sealed, state.now())
        .await?;
    let totp = mfa::totp(&secret, &user.username)?;
    Ok(Some(mfa::enrollment(&totp, &secret)?))
}

/// The pending enrolment's material again (to redisplay after a wrong code).
pub async fn pending_enrollment(
    state: &AppState,
    user: &User,
) -> Result<Option<Enrollment>, FactorError> {
    let Some(record) = state.store.get_mfa(&user.id).await? else {
        return Ok(None);
    };
    if record.confirmed_at.is_some() {
        return Ok(None);
    }
    let secret = state
        .vault
        .master()
        .open(&seal_label(&user.id), &record.sealed_secret)?;
    let totp = mfa::totp(&secret, &user.username)?;
    Ok(Some(mfa::enrollment(&totp, &secret)?))
}

/// Confirms a pending factor with a first valid code; returns the new backup codes, shown once.
pub async fn confirm_enrollment(
    state: &AppState,
    user: &User,
    code: &str,
) -> Result<Option<Vec<SecretString>>, FactorError> {
    let Some(record) = state.store.get_mfa(&user.id).await? else {
        return Ok(None);
    };
    if record.confirmed_at.is_some() {
        return Ok(None);
    }
    let secret = state
        .vault
        .master()
        .open(&seal_label(&user.id), &record.sealed_secret)?;
    let totp = mfa::totp(&secret, &user.username)?;
    let Some(step) = mfa::matching_step(&totp, code, state.now()) else {
        return Ok(None);
    };
    if !state.store.confirm_mfa(&user.id, step, state.now()).await? {
        return Ok(None);
    }
    tracing::info!(target: "zarish::security", user_id = %user.id, "second factor enrolled");
    Ok(Some(regenerate_backup_codes(state, user).await?))
}

/// Replaces every backup code of the user with ten new ones, returned once.
pub async fn regenerate_backup_codes(
    state: &AppState,
    user: &User,
) -> Result<Vec<SecretString>, FactorError> {
    let codes = mfa::new_backup_codes();
    let hashes: Vec<String> = codes
        .iter()
        .filter_map(|c| mfa::normalize_backup_code(c.expose()))
        .map(|c| {
            state
                .hash_key
                .hash(HashPurpose::BackupCode, &format!("{}|{c}", user.id))
        })
        .collect();
    state
        .store
        .replace_backup_codes(&user.id, &hashes, state.now())
        .await?;
    Ok(codes)
}

/// Checks a TOTP code or a backup code for a user with a confirmed factor. A TOTP code counts
/// once: its step must be newer than every step accepted before. A backup code is spent.
pub async fn verify(
    state: &AppState,
    user: &User,
    code: &str,
) -> Result<Option<Proof>, FactorError> {
    let Some(record) = state.store.get_mfa(&user.id).await? else {
        return Ok(None);
    };
    if record.confirmed_at.is_none() || code.len() > 64 {
        return Ok(None);
    }

    if let Some(backup) = mfa::normalize_backup_code(code) {
        let hash = state
            .hash_key
            .hash(HashPurpose::BackupCode, &format!("{}|{backup}", user.id));
        let spent = state
            .store
            .use_backup_code(&user.id, &hash, state.now())
            .await?;
        if let Some(remaining) = spent {
            tracing::info!(target: "zarish::security", user_id = %user.id, remaining, "backup code used");
        }
        return Ok(spent.map(|remaining| Proof::BackupCode { remaining }));
    }

    let secret = state
        .vault
        .master()
        .open(&seal_label(&user.id), &record.sealed_secret)?;
    let totp = mfa::totp(&secret, &user.username)?;
    let Some(step) = mfa::matching_step(&totp, code, state.now()) else {
        return Ok(None);
    };
    if !state.store.accept_totp_step(&user.id, step).await? {
        tracing::warn!(target: "zarish::security", user_id = %user.id, "replayed TOTP code refused");
        return Ok(None);
    }
    Ok(Some(Proof::Totp))
}

/// Removes the factor and its backup codes, and ends every session of the user (with their
/// refresh tokens): sessions that a second factor protected must not outlive it.
pub async fn remove(state: &AppState, user: &User) -> Result<(), FactorError> {
    state.store.delete_mfa(&user.id).await?;
    let ended = state.store.end_user_sessions(&user.id, state.now()).await?;
    tracing::info!(target: "zarish::security", user_id = %user.id, ended, "second factor removed");
    Ok(())
}
