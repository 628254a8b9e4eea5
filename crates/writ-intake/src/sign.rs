//! Authentication of deliveries on their raw bytes: `sha256=` HMAC headers (GitHub, Jira),
//! shared tokens (GitLab) and HTTP Basic (ServiceNow) compared in constant time, and Standard
//! Webhooks 1.0 (`v1` HMAC-SHA256 and `v1a` Ed25519 over `id.timestamp.body`, with the
//! timestamp within the tolerance).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use writ_core::time::Duration;

use crate::{IntakeError, Received};

/// One secret of a source. Standard Webhooks keys are given as `whsec_<base64>` (symmetric) or
/// `whpk_<base64>` (an Ed25519 public key); anything else is used as the bytes it is. Never
/// printed.
#[derive(Clone)]
pub struct Secret {
    bytes: Vec<u8>,
    public_key: bool,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl Secret {
    /// Reads one secret as written in a secret file line. Refuses what cannot be a key.
    pub fn parse(text: &str) -> Result<Secret, String> {
        let text = text.trim();
        let decode = |b64: &str, what: &str| {
            B64.decode(b64).map_err(|_| format!("the {what} after its prefix is not valid base64"))
        };
        let secret = if let Some(b64) = text.strip_prefix("whsec_") {
            let bytes = decode(b64, "whsec_ secret")?;
            if !(24..=64).contains(&bytes.len()) {
                return Err("a whsec_ secret must decode to 24 to 64 bytes".into());
            }
            Secret { bytes, public_key: false }
        } else if let Some(b64) = text.strip_prefix("whpk_") {
            let bytes = decode(b64, "whpk_ public key")?;
            if bytes.len() != 32 {
                return Err("a whpk_ public key must decode to 32 bytes".into());
            }
            Secret { bytes, public_key: true }
        } else {
            if text.len() < 16 {
                return Err("a secret must be at least 16 characters".into());
            }
            Secret { bytes: text.as_bytes().to_vec(), public_key: false }
        };
        Ok(secret)
    }
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else { return [0; 32] };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The `v1,<base64>` signature a Standard Webhooks sender puts in `webhook-signature`.
pub fn standard_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    format!("v1,{}", B64.encode(hmac_sha256(key, &content)))
}

fn unauthenticated(code: &'static str, message: &str) -> IntakeError {
    IntakeError::Unauthenticated { code, message: message.to_owned() }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

/// `sha256=<hex HMAC-SHA256(secret, body)>` in `header` (GitHub, Jira).
pub(crate) fn check_hub(
    secrets: &[Secret],
    received: &Received<'_>,
    header: &str,
) -> Result<(), IntakeError> {
    let Some(value) = received.header(header) else {
        return Err(unauthenticated("hook.missing_signature", &format!("the {header} header is missing")));
    };
    let given = value.strip_prefix("sha256=").and_then(decode_hex).ok_or_else(|| {
        unauthenticated("hook.bad_signature", &format!("{header} must be sha256= and 64 hex digits"))
    })?;
    let ok = secrets
        .iter()
        .filter(|s| !s.public_key)
        .any(|s| bool::from(hmac_sha256(&s.bytes, received.body).as_slice().ct_eq(&given)));
    if ok {
        Ok(())
    } else {
        Err(unauthenticated("hook.bad_signature", "the signature does not match the body"))
    }
}

/// A shared token sent as is (GitLab's `X-Gitlab-Token`).
pub(crate) fn check_token(secrets: &[Secret], given: Option<&str>, header: &str) -> Result<(), IntakeError> {
    let Some(given) = given else {
        return Err(unauthenticated("hook.missing_signature", &format!("the {header} header is missing")));
    };
    // Compare HMACs of both under a fixed key, so the comparison does not leak the length.
    let digest = |b: &[u8]| hmac_sha256(b"writ token comparison", b);
    let ok = secrets.iter().any(|s| bool::from(digest(&s.bytes).ct_eq(&digest(given.as_bytes()))));
    if ok {
        Ok(())
    } else {
        Err(unauthenticated("hook.bad_signature", &format!("the {header} does not match")))
    }
}

/// HTTP Basic credentials equal to a secret of the form `user:password` (ServiceNow).
pub(crate) fn check_basic(secrets: &[Secret], authorization: Option<&str>) -> Result<(), IntakeError> {
    let Some(value) = authorization else {
        return Err(unauthenticated(
            "hook.missing_signature",
            "send HTTP Basic credentials or Standard Webhooks signature headers",
        ));
    };
    let credentials = value
        .strip_prefix("Basic ")
        .and_then(|b64| B64.decode(b64.trim()).ok())
        .ok_or_else(|| unauthenticated("hook.bad_signature", "the Authorization header is not HTTP Basic"))?;
    let credentials = String::from_utf8(credentials).unwrap_or_default();
    check_token(secrets, Some(&credentials), "Basic credentials")
}

/// Standard Webhooks 1.0: `webhook-id`, `webhook-timestamp` (Unix seconds, within the
/// tolerance either way), `webhook-signature` (space-separated `v1,` and `v1a,` signatures;
/// one valid signature under one of the secrets suffices).
pub(crate) fn check_standard(
    secrets: &[Secret],
    received: &Received<'_>,
    tolerance: Duration,
) -> Result<(), IntakeError> {
    let (Some(id), Some(timestamp), Some(signatures)) = (
        received.header("webhook-id"),
        received.header("webhook-timestamp"),
        received.header("webhook-signature"),
    ) else {
        return Err(unauthenticated(
            "hook.missing_signature",
            "webhook-id, webhook-timestamp and webhook-signature are all required",
        ));
    };
    let seconds: i64 = timestamp
        .parse()
        .map_err(|_| unauthenticated("hook.bad_timestamp", "webhook-timestamp must be whole Unix seconds"))?;
    let skew = received.now.as_millis().saturating_sub(seconds.saturating_mul(1000)).saturating_abs();
    if skew > tolerance.as_millis() {
        return Err(IntakeError::Unauthenticated {
            code: "hook.stale_timestamp",
            message: format!("webhook-timestamp is more than {tolerance} away from now: refused as a replay"),
        });
    }
    let mut content = format!("{id}.{seconds}.").into_bytes();
    content.extend_from_slice(received.body);
    let ok = signatures.split_whitespace().any(|entry| {
        let Some((version, b64)) = entry.split_once(',') else { return false };
        let Ok(given) = B64.decode(b64) else { return false };
        secrets.iter().any(|secret| match (version, secret.public_key) {
            ("v1", false) => bool::from(hmac_sha256(&secret.bytes, &content).as_slice().ct_eq(&given)),
            ("v1a", true) => verify_ed25519(&secret.bytes, &content, &given),
            _ => false,
        })
    });
    if ok { Ok(()) } else { Err(unauthenticated("hook.bad_signature", "no signature matches the content")) }
}

fn verify_ed25519(public: &[u8], content: &[u8], signature: &[u8]) -> bool {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let Ok(public) = <[u8; 32]>::try_from(public) else { return false };
    let Ok(key) = VerifyingKey::from_bytes(&public) else { return false };
    let Ok(signature) = Signature::from_slice(signature) else { return false };
    key.verify(content, &signature).is_ok()
}
