//! The in-memory signer that stands in for the HSM: a software RSA key doing exactly what
//! `CKM_RSA_PKCS` does on the token (PKCS#1 v1.5 type-1 padding around the DigestInfo it is
//! given, no hashing).
//!
//! aws-lc-rs only signs messages it hashes itself, so this calls AWS-LC's `RSA_sign_raw`
//! through `aws-lc-sys`, the library aws-lc-rs is built on (already compiled for serialmint;
//! no extra crypto crate).

use serialmint::signer::{BackendError, DigestInfo, SignBackend, SignFuture};

/// A [`SignBackend`] over one software RSA key, known by its snapd key id.
pub struct SoftRsa {
    key_id: String,
    pkcs8: Vec<u8>,
}

impl SoftRsa {
    /// The key in `pkcs8` (DER), answering for `key_id`.
    pub fn new(key_id: String, pkcs8: Vec<u8>) -> Self {
        Self { key_id, pkcs8 }
    }
}

impl SignBackend for SoftRsa {
    fn sign<'a>(&'a self, key_id: &'a str, digest_infos: &'a [DigestInfo]) -> SignFuture<'a> {
        Box::pin(async move {
            if key_id != self.key_id {
                return Err(BackendError::KeyNotFound(key_id.to_owned()));
            }
            digest_infos
                .iter()
                .map(|d| sign_raw_pkcs1(&self.pkcs8, d).map_err(BackendError::Failed))
                .collect()
        })
    }
}

/// RSA private operation over `input` with PKCS#1 v1.5 type-1 padding.
#[allow(unsafe_code)]
pub fn sign_raw_pkcs1(pkcs8: &[u8], input: &[u8]) -> Result<Vec<u8>, String> {
    use aws_lc_sys as ffi;
    let len = std::os::raw::c_long::try_from(pkcs8.len()).map_err(|e| e.to_string())?;
    // SAFETY: every pointer passed is valid for the length given with it; the EVP_PKEY and
    // the RSA reference taken from it are freed exactly once, on every path.
    unsafe {
        let mut p = pkcs8.as_ptr();
        let pkey = ffi::d2i_AutoPrivateKey(std::ptr::null_mut(), &mut p, len);
        if pkey.is_null() {
            return Err("cannot parse the PKCS#8 key".into());
        }
        let rsa = ffi::EVP_PKEY_get1_RSA(pkey);
        ffi::EVP_PKEY_free(pkey);
        if rsa.is_null() {
            return Err("not an RSA key".into());
        }
        let size = ffi::RSA_size(rsa) as usize;
        let mut out = vec![0u8; size];
        let mut out_len = 0usize;
        let ok = ffi::RSA_sign_raw(
            rsa,
            &mut out_len,
            out.as_mut_ptr(),
            out.len(),
            input.as_ptr(),
            input.len(),
            ffi::RSA_PKCS1_PADDING,
        );
        ffi::RSA_free(rsa);
        if ok != 1 {
            return Err("RSA_sign_raw failed".into());
        }
        out.truncate(out_len);
        Ok(out)
    }
}
