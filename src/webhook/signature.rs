//! `Stripe-Signature` verification on the raw body bytes, before anything is parsed.
//! Valid when some `v1` equals hex(HMAC-SHA256(secret, "<t>.<body>")) for some
//! configured secret (constant-time), and |now − t| ≤ tolerance in both directions.
//! The key is the whole `whsec_…` string as bytes, as Stripe and its CLI sign.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("Stripe-Signature header is missing")]
    Missing,
    #[error("more than one Stripe-Signature header")]
    Multiple,
    #[error("Stripe-Signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error("no signature matches the body under any configured secret")]
    Mismatch,
    #[error("signature timestamp is outside the allowed tolerance")]
    OutOfTolerance,
}

impl SignatureError {
    pub fn code(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing_signature",
            SignatureError::Multiple => "multiple_signature_headers",
            SignatureError::Malformed(_) => "malformed_signature",
            SignatureError::Mismatch => "signature_mismatch",
            SignatureError::OutOfTolerance => "timestamp_out_of_tolerance",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct ParsedHeader {
    pub timestamp: i64,
    /// Decoded `v1` signatures; values that are not hex are dropped (they can never match).
    pub v1: Vec<Vec<u8>>,
}

pub fn parse(header: &str) -> Result<ParsedHeader, SignatureError> {
    if header.trim().is_empty() {
        return Err(SignatureError::Missing);
    }
    let mut timestamp = None;
    let mut v1 = Vec::new();
    let mut saw_v1 = false;
    for element in header.split(',') {
        let element = element.trim();
        if element.is_empty() {
            continue;
        }
        let (key, value) = element
            .split_once('=')
            .ok_or(SignatureError::Malformed("element without '='"))?;
        match key.trim() {
            "t" => {
                let value = value.trim();
                if timestamp.is_some() {
                    return Err(SignatureError::Malformed("more than one timestamp"));
                }
                if value.is_empty()
                    || value.len() > 18
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(SignatureError::Malformed("timestamp is not a number"));
                }
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed("timestamp is not a number"))?,
                );
            }
            "v1" => {
                saw_v1 = true;
                if let Ok(bytes) = hex::decode(value.trim()) {
                    v1.push(bytes);
                }
            }
            _ => {} // v0 and schemes we do not know are ignored, as Stripe documents
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("no timestamp"))?;
    if !saw_v1 {
        return Err(SignatureError::Malformed("no v1 signature"));
    }
    Ok(ParsedHeader { timestamp, v1 })
}

/// Verifies `header` for `body`. `now` is unix seconds (injected so tests control time).
pub fn verify(
    header: &str,
    body: &[u8],
    secrets: &[SecretString],
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureError> {
    let parsed = parse(header)?;
    let matches = secrets.iter().any(|secret| {
        let mac = signer(secret.expose_secret(), parsed.timestamp, body);
        parsed
            .v1
            .iter()
            .any(|sig| mac.clone().verify_slice(sig).is_ok())
    });
    if !matches {
        return Err(SignatureError::Mismatch);
    }
    if now.abs_diff(parsed.timestamp) > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::OutOfTolerance);
    }
    Ok(parsed.timestamp)
}

/// hex(HMAC-SHA256(secret, "<t>.<body>")): what goes after `v1=`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    hex::encode(signer(secret, timestamp, body).finalize().into_bytes())
}

/// A complete header as Stripe (and `stripe listen`) sends it.
pub fn header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", sign(secret, timestamp, body))
}

fn signer(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests;
