//! Brute-force defence for sign-in: a per-address block and a per-account exponential delay, both
//! counted in the store so that they hold across nodes.
//!
//! - Address: `ip_failure_limit` failures (password or second factor) within `ip_window` seconds
//!   block the address from sign-in for `ip_block` seconds (defaults 5, 15 min, 15 min).
//! - Account: per typed username and client address, the first `account_free_failures` failures
//!   cost nothing; after that each attempt must wait 2^(n - free) seconds after the last failure,
//!   capped at `account_delay_cap` (30 s). The count restarts after `account_reset_after` quiet
//!   seconds or a successful sign-in. Keying by username and address is the trade-off: a stranger
//!   failing on purpose from elsewhere cannot slow the real user down at all, while a guesser
//!   spread over many addresses is held only by the address block (five tries per address per 15
//!   minutes). The key includes the typed username, known or not, so the delay does not reveal
//!   which accounts exist.
//! - Attempts of one address or username are serialized on each node ([`AttemptLocks`]), so that
//!   a burst of parallel guesses is checked and counted one by one.
//!
//! The client address is the TCP peer, unless the peer is a configured trusted proxy: then the
//! right-most `X-Forwarded-For` entry that is not itself a trusted proxy. A header from anyone
//! else is ignored.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

use crate::state::AppState;
use crate::store::StoreError;

/// The client's address as far as the server can trust it.
pub fn client_ip(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpAddr]) -> String {
    let Some(peer) = peer.map(|p| p.ip()) else {
        return "unknown".to_owned();
    };
    if !trusted.contains(&peer) {
        return peer.to_string();
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for entry in forwarded.iter().rev() {
        match entry.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip.to_string(),
            Err(_) => break,
        }
    }
    peer.to_string()
}

/// Whether a sign-in attempt may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allowed,
    /// Refuse; try again after this many seconds.
    RetryAfter(i64),
}

/// The per-account counter is kept per typed username *and* client address: a stranger who fails
/// on purpose from elsewhere cannot slow the real user down, while one source guessing at one
/// account meets the growing delay (and the address block).
fn account_key(username: &str, ip: &str) -> String {
    format!("{}|{ip}", username.trim().to_lowercase())
}

/// Striped locks that serialize sign-in attempts per client address and per username on this
/// node, so that parallel guesses cannot all pass the check before any failure is recorded.
/// Across nodes at most one attempt per node is in flight for the same address or username.
pub struct AttemptLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for AttemptLocks {
    fn default() -> Self {
        Self {
            stripes: (0..256).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl std::fmt::Debug for AttemptLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttemptLocks")
    }
}

fn stripe(key: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % 256) as usize
}

/// Held while one sign-in attempt is checked, verified and recorded.
pub struct AttemptGuard<'a> {
    _first: tokio::sync::MutexGuard<'a, ()>,
    _second: Option<tokio::sync::MutexGuard<'a, ()>>,
}

impl AttemptLocks {
    /// Waits for the attempt slot of `ip` and `username` (locks taken in index order).
    pub async fn acquire(&self, ip: &str, username: &str) -> AttemptGuard<'_> {
        let a = stripe(&format!("ip|{ip}"));
        let b = stripe(&format!("user|{}", username.trim().to_lowercase()));
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let first = self.stripes[low].lock().await;
        let second = if high != low {
            Some(self.stripes[high].lock().await)
        } else {
            None
        };
        AttemptGuard {
            _first: first,
            _second: second,
        }
    }
}

/// Checks the address block and the account delay before any password is looked at.
async fn check(state: &AppState, ip: &str, username: &str) -> Result<Verdict, StoreError> {
    let now = state.now();
    let limits = state.settings.signin;
    if let Some(until) = state.store.ip_blocked_until(ip, now).await? {
        return Ok(Verdict::RetryAfter((until - now).max(1)));
    }
    if let Some(f) = state
        .store
        .account_failures(&account_key(username, ip))
        .await?
    {
        let excess = f.failures - limits.account_free_failures;
        let quiet = now - f.last_failure >= limits.account_reset_after;
        if excess > 0 && !quiet {
            let delay = 1i64
                .checked_shl(excess.min(30) as u32)
                .unwrap_or(i64::MAX)
                .min(limits.account_delay_cap);
            let ready_at = f.last_failure + delay;
            if now < ready_at {
                return Ok(Verdict::RetryAfter(ready_at - now));
            }
        }
    }
    Ok(Verdict::Allowed)
}

/// Counts a failed attempt against the address and the account. Returns the verdict for the
/// next attempt from this address: blocked when this failure reached the limit.
async fn record_failure(state: &AppState, ip: &str, username: &str) -> Result<Verdict, StoreError> {
    let now = state.now();
    let limits = state.settings.signin;
    state
        .store
        .record_account_failure(&account_key(username, ip), now, limits.account_reset_after)
        .await?;
    let blocked = state
        .store
        .record_ip_failure(
            ip,
            now,
            limits.ip_window,
            limits.ip_failure_limit,
            limits.ip_block,
        )
        .await?;
    Ok(match blocked {
        Some(until) => {
            tracing::warn!(target: "zarish::security", ip, "address blocked from sign-in after repeated failures");
            Verdict::RetryAfter((until - now).max(1))
        }
        None => Verdict::Allowed,
    })
}

/// The outcome of one guarded sign-in attempt.
#[derive(Debug)]
pub enum Attempt<T> {
    /// Refused before the check ran, or this failure reached the limit: retry after so many
    /// seconds.
    Blocked(i64),
    /// The check said no; the failure is counted.
    Refused,
    /// The check passed.
    Passed(T),
}

/// Runs one sign-in attempt (a password, a second factor) of `username` from `ip` under the
/// brute-force rules: waits for the attempt slot of the address and username, refuses a blocked
/// address or a delayed account, runs `check` (`None` means refused), and counts a refusal. This
/// is the one place the rules are applied, for every form that takes a secret.
pub async fn attempt<T, E>(
    state: &AppState,
    ip: &str,
    username: &str,
    check: impl std::future::Future<Output = Result<Option<T>, E>>,
) -> Result<Attempt<T>, E>
where
    E: From<StoreError>,
{
    let _slot = state.attempts.acquire(ip, username).await;
    if let Verdict::RetryAfter(seconds) = self::check(state, ip, username).await? {
        return Ok(Attempt::Blocked(seconds));
    }
    match check.await? {
        Some(passed) => Ok(Attempt::Passed(passed)),
        None => match record_failure(state, ip, username).await? {
            Verdict::RetryAfter(seconds) => Ok(Attempt::Blocked(seconds)),
            Verdict::Allowed => Ok(Attempt::Refused),
        },
    }
}

/// Clears the account's count after a successful sign-in.
pub async fn record_success(state: &AppState, ip: &str, username: &str) -> Result<(), StoreError> {
    state
        .store
        .clear_account_failures(&account_key(username, ip))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(s.parse().expect("ip"), 1234))
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        assert_eq!(client_ip(addr("10.0.0.9"), &h, &[]), "10.0.0.9");
    }

    #[test]
    fn trusted_proxy_passes_the_client_on() {
        let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 1.2.3.4, 10.0.0.1"),
        );
        assert_eq!(client_ip(addr("10.0.0.1"), &h, &[proxy]), "1.2.3.4");
        assert_eq!(
            client_ip(addr("10.0.0.1"), &HeaderMap::new(), &[proxy]),
            "10.0.0.1"
        );
        assert_eq!(client_ip(None, &h, &[proxy]), "unknown");
    }
}
