//! CSRF tokens for every state-changing form: `<issued unix secs>.<nonce>.<hmac>`, signed
//! with a key shared through the database so any instance accepts any instance's token.
//! Stateless, so it works without cookies; a token is good for `MAX_AGE`.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::error::AppError;

const MAX_AGE_SECS: i64 = 12 * 3600;

pub fn issue(key: &SecretString, now: i64) -> String {
    let nonce = crate::random::token(24);
    let payload = format!("{now}.{nonce}");
    format!(
        "{payload}.{}",
        hex::encode(mac(key, &payload).finalize().into_bytes())
    )
}

/// 403 unless `token` is one we issued, not older than MAX_AGE.
pub fn verify(key: &SecretString, token: Option<&str>, now: i64) -> Result<(), AppError> {
    let refuse = || {
        AppError::forbidden(
            "invalid_csrf_token",
            "the form's security token is missing or invalid; reload the page and try again",
        )
    };
    let token = token.ok_or_else(refuse)?;
    let (payload, sig) = token.rsplit_once('.').ok_or_else(refuse)?;
    let (issued, _nonce) = payload.split_once('.').ok_or_else(refuse)?;
    let issued: i64 = issued.parse().map_err(|_| refuse())?;
    let sig = hex::decode(sig).map_err(|_| refuse())?;
    mac(key, payload).verify_slice(&sig).map_err(|_| refuse())?;
    if now - issued > MAX_AGE_SECS || issued - now > 60 {
        return Err(refuse());
    }
    Ok(())
}

fn mac(key: &SecretString, payload: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!());
    m.update(b"csrf.");
    m.update(payload.as_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_anything_else_is_refused() {
        let key = SecretString::from("k1".to_string());
        let token = issue(&key, 1_000);
        assert!(verify(&key, Some(&token), 1_010).is_ok());
        assert!(verify(&SecretString::from("k2".to_string()), Some(&token), 1_010).is_err());
        assert!(verify(&key, Some(&token), 1_000 + MAX_AGE_SECS + 1).is_err());
        for bad in ["", "x", "1.2", "1.2.zz", &token.replace('.', ",")] {
            assert!(verify(&key, Some(bad), 1_010).is_err(), "{bad}");
        }
        assert_eq!(
            verify(&key, None, 1_010).unwrap_err().code(),
            "invalid_csrf_token"
        );
    }
}
