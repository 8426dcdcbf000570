//! Software checks of what the token signs and returns: the SHA-512 DigestInfo shape, and
//! RSA PKCS#1 v1.5 verification of every signature with aws-lc-rs before it is used.

use aws_lc_rs::digest::{Digest, SHA512};
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA512, RsaPublicKeyComponents};

use super::error::HsmError;
use crate::assertion::openpgp::RsaPublicKey;

pub use crate::assertion::openpgp::{SHA512_DIGEST_INFO_PREFIX, digest_info};

/// Refuses anything that is not a SHA-512 DigestInfo.
pub(crate) fn check_digest_info(di: &[u8; 83]) -> Result<(), HsmError> {
    if di[..19] == SHA512_DIGEST_INFO_PREFIX {
        Ok(())
    } else {
        Err(HsmError::InvalidInput(
            "expected a SHA-512 DigestInfo (30 51 30 0d 06 09 60 86 48 01 65 03 04 02 03 05 00 04 40 || digest)".into(),
        ))
    }
}

/// A parsed RSA public key that checks PKCS#1 v1.5 SHA-512 signatures over DigestInfos.
#[derive(Debug)]
pub struct Verifier(ParsedPublicKey);

impl Verifier {
    /// Parses the key once, for many verifications.
    pub fn new(public: &RsaPublicKey) -> Result<Self, HsmError> {
        RsaPublicKeyComponents {
            n: public.modulus(),
            e: public.exponent(),
        }
        .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA512)
        .map(Verifier)
        .map_err(|e| HsmError::Fatal(format!("unusable RSA public key: {e}")))
    }

    /// Whether `signature` is this key's PKCS#1 v1.5 signature of the DigestInfo `di`.
    pub fn verify(&self, di: &[u8; 83], signature: &[u8]) -> bool {
        if di[..19] != SHA512_DIGEST_INFO_PREFIX {
            return false;
        }
        let Ok(digest) = Digest::import_less_safe(&di[19..], &SHA512) else {
            return false;
        };
        self.0.verify_digest_sig(&digest, signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA512};

    #[test]
    fn verifies_a_pkcs1_sha512_signature_and_rejects_others() {
        let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let msg = b"serial assertion content";
        let mut sig = vec![0u8; kp.public_modulus_len()];
        kp.sign(&RSA_PKCS1_SHA512, &SystemRandom::new(), msg, &mut sig)
            .unwrap();
        let c: aws_lc_rs::rsa::PublicKeyComponents<Vec<u8>> = kp.public_key().into();
        let v = Verifier::new(&RsaPublicKey::new(&c.n, &c.e)).unwrap();
        let d = aws_lc_rs::digest::digest(&SHA512, msg);
        let di = digest_info(d.as_ref().try_into().unwrap());
        assert!(v.verify(&di, &sig));
        let mut bad = di;
        bad[82] ^= 1;
        assert!(!v.verify(&bad, &sig));
        assert!(check_digest_info(&bad).is_ok());
        bad[0] = 0;
        assert!(check_digest_info(&bad).is_err());
    }
}
