//! Stateless request-ids: an expiry and random bytes, authenticated with HMAC-SHA256 under a
//! 32-byte secret that every instance shares (kept in Postgres by the store).
//!
//! Issuing one writes nothing anywhere; any instance holding the secret accepts any other's.
//! Single use is not enforced here but at issuance, through the signing log (a request-id
//! that issued for one device key cannot issue for another).
//!
//! Wire form: unpadded base64url of `expiry (u64 BE unix seconds) || nonce (16 bytes) ||
//! tag (32 bytes)`, 75 characters, where `tag = HMAC-SHA256(secret, DOMAIN || expiry ||
//! nonce)`. The tag is checked in constant time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Length of the shared secret.
pub const SECRET_LEN: usize = 32;

/// Domain separation for the MAC input.
const DOMAIN: &[u8] = b"serialmint request-id v1\0";
const NONCE_LEN: usize = 16;
const TAG_LEN: usize = 32;
const RAW_LEN: usize = 8 + NONCE_LEN + TAG_LEN;
/// Length of the unpadded base64url form.
const ENCODED_LEN: usize = (RAW_LEN * 4).div_ceil(3);

/// Why a request-id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestIdError {
    /// Not something this service issued (wrong length or alphabet).
    #[error("malformed request-id")]
    Malformed,
    /// The tag does not match: tampered with, or issued under another secret.
    #[error("request-id not issued by this service")]
    BadTag,
    /// Valid, but past its lifetime.
    #[error("request-id expired")]
    Expired,
}

/// Issues and verifies request-ids.
pub struct RequestIds {
    key: hmac::Key,
    lifetime: Duration,
}

impl std::fmt::Debug for RequestIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestIds")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// A fresh random secret (what the store writes the first time it finds none).
pub fn generate_secret() -> [u8; SECRET_LEN] {
    let mut s = [0u8; SECRET_LEN];
    aws_lc_rs::rand::fill(&mut s).expect("system RNG works");
    s
}

impl RequestIds {
    /// Request-ids under `secret`, each valid for `lifetime`.
    pub fn new(secret: &[u8; SECRET_LEN], lifetime: Duration) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            lifetime,
        }
    }

    /// How long a request-id stays valid.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A new request-id, valid from now for the lifetime.
    pub fn issue(&self) -> String {
        self.issue_at(SystemTime::now())
    }

    /// A new request-id as if issued at `now`.
    pub fn issue_at(&self, now: SystemTime) -> String {
        let expiry = unix_secs(now).saturating_add(self.lifetime.as_secs());
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("system RNG works");
        let mut raw = Vec::with_capacity(RAW_LEN);
        raw.extend_from_slice(&expiry.to_be_bytes());
        raw.extend_from_slice(&nonce);
        let tag = hmac::sign(&self.key, &mac_input(&raw));
        raw.extend_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks a request-id: ours (constant-time tag check) and not expired. Returns when it
    /// expires.
    pub fn verify(&self, id: &str) -> Result<SystemTime, RequestIdError> {
        self.verify_at(id, SystemTime::now())
    }

    /// [`RequestIds::verify`] at a given time.
    pub fn verify_at(&self, id: &str, now: SystemTime) -> Result<SystemTime, RequestIdError> {
        if id.len() != ENCODED_LEN {
            return Err(RequestIdError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(id)
            .map_err(|_| RequestIdError::Malformed)?;
        if raw.len() != RAW_LEN {
            return Err(RequestIdError::Malformed);
        }
        let (signed, tag) = raw.split_at(8 + NONCE_LEN);
        hmac::verify(&self.key, &mac_input(signed), tag).map_err(|_| RequestIdError::BadTag)?;
        let expiry = u64::from_be_bytes(signed[..8].try_into().expect("8 bytes"));
        if unix_secs(now) >= expiry {
            return Err(RequestIdError::Expired);
        }
        Ok(UNIX_EPOCH + Duration::from_secs(expiry))
    }
}

fn mac_input(signed: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + signed.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(signed);
    m
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFE: Duration = Duration::from_secs(600);

    fn ids() -> RequestIds {
        RequestIds::new(&[7u8; SECRET_LEN], LIFE)
    }

    #[test]
    fn issued_ids_verify_and_are_unique() {
        let r = ids();
        let a = r.issue();
        let b = r.issue();
        assert_ne!(a, b);
        assert_eq!(a.len(), 75);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        let expiry = r.verify(&a).unwrap();
        let left = expiry.duration_since(SystemTime::now()).unwrap();
        assert!(left <= LIFE && left > LIFE - Duration::from_secs(5));
    }

    #[test]
    fn expired_ids_are_refused() {
        let r = ids();
        let then = SystemTime::now() - LIFE - Duration::from_secs(1);
        let id = r.issue_at(then);
        assert_eq!(r.verify(&id), Err(RequestIdError::Expired));
        // Still valid one second before its expiry.
        let id = r.issue_at(SystemTime::now());
        assert!(
            r.verify_at(&id, SystemTime::now() + LIFE - Duration::from_secs(2))
                .is_ok()
        );
        assert_eq!(
            r.verify_at(&id, SystemTime::now() + LIFE + Duration::from_secs(1)),
            Err(RequestIdError::Expired)
        );
    }

    #[test]
    fn tampered_ids_are_refused() {
        let r = ids();
        let id = r.issue();
        let mut raw = URL_SAFE_NO_PAD.decode(&id).unwrap();
        // Push the expiry a year out: the tag no longer matches.
        raw[4] ^= 0x01;
        assert_eq!(
            r.verify(&URL_SAFE_NO_PAD.encode(&raw)),
            Err(RequestIdError::BadTag)
        );
        let mut raw = URL_SAFE_NO_PAD.decode(&id).unwrap();
        *raw.last_mut().unwrap() ^= 0x80;
        assert_eq!(
            r.verify(&URL_SAFE_NO_PAD.encode(&raw)),
            Err(RequestIdError::BadTag)
        );
    }

    #[test]
    fn another_secret_is_refused() {
        let id = ids().issue();
        let other = RequestIds::new(&[8u8; SECRET_LEN], LIFE);
        assert_eq!(other.verify(&id), Err(RequestIdError::BadTag));
        // The same secret on another instance accepts it.
        assert!(ids().verify(&id).is_ok());
    }

    #[test]
    fn malformed_ids_are_refused() {
        let r = ids();
        for bad in ["", "x", "not base64 !!", &"A".repeat(75), &"A".repeat(76)] {
            let e = r.verify(bad).unwrap_err();
            assert!(
                e == RequestIdError::Malformed || e == RequestIdError::BadTag,
                "{bad}: {e:?}"
            );
        }
        let id = r.issue();
        assert_eq!(r.verify(&id[..74]), Err(RequestIdError::Malformed));
        assert_eq!(r.verify(&format!("{id}A")), Err(RequestIdError::Malformed));
    }

    #[test]
    fn generated_secrets_differ() {
        assert_ne!(generate_secret(), generate_secret());
    }
}
