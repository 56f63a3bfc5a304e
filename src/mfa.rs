//! The second factor: TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps, one step of skew either
//! side and no more) and single-use backup codes.
//!
//! Replay defence lives in the store: a code is accepted only if its step is newer than the last
//! accepted step of the user, in one conditional `UPDATE`, so a code (or its neighbours) cannot be
//! used twice even by two racing requests.

use qrcode::QrCode;
use qrcode::render::svg;
use totp_rs::{Algorithm, Builder, Totp};
use zeroize::Zeroizing;

use crate::secret::{SecretString, random_bytes};

/// The issuer shown in authenticator apps.
pub const ISSUER: &str = "ZARISH SPHERE";
/// Number of backup codes per user.
pub const BACKUP_CODES: usize = 10;
/// Seconds per TOTP step.
pub const STEP: u64 = 30;
/// `acr` of a sign-in with password and a second factor.
pub const ACR_MFA: &str = "urn:zarish:acr:mfa";
/// `acr` of a sign-in with a password only.
pub const ACR_PWD: &str = "urn:zarish:acr:pwd";

/// Whether an `amr` list (space separated, RFC 8176 values) includes a second factor.
pub fn amr_has_second_factor(amr: &str) -> bool {
    amr.split(' ').any(|m| m == "otp")
}

/// The `acr` that an `amr` list earns.
pub fn acr_for(amr: &str) -> &'static str {
    if amr_has_second_factor(amr) {
        ACR_MFA
    } else {
        ACR_PWD
    }
}

/// A failure to build a TOTP generator (an unusable secret or account name).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("invalid TOTP parameters")]
pub struct TotpSetupError;

/// A fresh 160-bit TOTP secret.
pub fn new_secret() -> Zeroizing<Vec<u8>> {
    Zeroizing::new(random_bytes::<20>().to_vec())
}

/// The TOTP generator for `secret`, labelled with `username`.
pub fn totp(secret: &[u8], username: &str) -> Result<Totp, TotpSetupError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP)
        .with_secret(secret.to_vec())
        .with_issuer(Some(ISSUER))
        .with_account_name(username.replace(':', "_"))
        .build()
        .map_err(|_| TotpSetupError)
}

/// The time step a code matches at `now` (current step or one either side), if any.
pub fn matching_step(totp: &Totp, code: &str, now: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = u64::try_from(now).ok()?;
    totp.check(code, now)
        .and_then(|step| i64::try_from(step).ok())
}

/// What an enrolment page shows.
pub struct Enrollment {
    /// The `otpauth://` URI.
    pub uri: SecretString,
    /// The secret in base32, for typing by hand.
    pub secret_base32: SecretString,
    /// The URI as an inline SVG QR code.
    pub qr_svg: String,
}

/// The enrolment material for `totp`, whose secret is `secret`.
pub fn enrollment(totp: &Totp, secret: &[u8]) -> Result<Enrollment, TotpSetupError> {
    let uri = totp.to_url().map_err(|_| TotpSetupError)?;
    let code = QrCode::new(uri.as_bytes()).map_err(|_| TotpSetupError)?;
    let qr_svg = code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    let secret_base32 = base32_encode(secret);
    Ok(Enrollment {
        uri: SecretString::new(uri),
        secret_base32: SecretString::new(secret_base32),
        qr_svg,
    })
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Ten fresh backup codes, each 10 base32 characters (50 bits) shown as `xxxxx-xxxxx`.
pub fn new_backup_codes() -> Vec<SecretString> {
    (0..BACKUP_CODES)
        .map(|_| {
            let raw = base32_encode(random_bytes::<7>().as_ref()).to_lowercase();
            SecretString::new(format!("{}-{}", &raw[..5], &raw[5..10]))
        })
        .collect()
}

/// The canonical form of a typed backup code: lower case, without spaces or dashes. `None` when it
/// cannot be a backup code.
pub fn normalize_backup_code(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .collect::<String>()
        .to_lowercase();
    let valid = code.len() == 10
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
    valid.then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows (8 digits, secret "12345678901234567890").
    #[test]
    fn rfc6238_test_vectors() {
        let totp = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(8)
            .with_skew(0)
            .with_step_duration(30)
            .with_secret(b"12345678901234567890".to_vec())
            .build()
            .expect("totp");
        for (time, code) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp.generate(time).to_string(), code, "t={time}");
        }
    }

    #[test]
    fn window_is_one_step_either_side() {
        let secret = new_secret();
        let t = totp(&secret, "alice").expect("totp");
        let now = 1_800_000_015;
        let step = now / 30;
        for (offset, accepted) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = t.generate(((step + offset) * 30) as u64).to_string();
            assert_eq!(
                matching_step(&t, &code, now).is_some(),
                accepted,
                "offset {offset}"
            );
        }
        assert_eq!(matching_step(&t, "12345", now), None);
        assert_eq!(matching_step(&t, "abcdef", now), None);
    }

    #[test]
    fn enrollment_has_issuer_and_qr() {
        let secret = new_secret();
        let t = totp(&secret, "dr.nadia").expect("totp");
        let e = enrollment(&t, &secret).expect("enrollment");
        assert!(
            e.uri
                .expose()
                .starts_with("otpauth://totp/ZARISH%20SPHERE:dr.nadia?")
        );
        assert!(
            e.uri
                .expose()
                .contains(&format!("secret={}", e.secret_base32.expose()))
        );
        assert!(e.qr_svg.contains("<svg"));
        assert_eq!(e.secret_base32.expose().len(), 32);
    }

    #[test]
    fn backup_codes_are_distinct_and_normalize() {
        let codes = new_backup_codes();
        assert_eq!(codes.len(), 10);
        let mut plain: Vec<String> = codes
            .iter()
            .map(|c| normalize_backup_code(c.expose()).expect("valid"))
            .collect();
        plain.sort();
        plain.dedup();
        assert_eq!(plain.len(), 10);
        assert_eq!(
            normalize_backup_code(" ABCDE-23456 ").as_deref(),
            Some("abcde23456")
        );
        assert_eq!(normalize_backup_code("123456"), None);
    }
}
