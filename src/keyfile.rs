//! Private key files brought to `import key`: an ASCII-armored OpenPGP secret key without a
//! passphrase (what `gpg --export-secret-keys --armor` writes, also for the keys of
//! `snap create-key`), or PEM (PKCS#1 `RSA PRIVATE KEY`, PKCS#8 `PRIVATE KEY`). [`parse`]
//! reads one into an [`RsaPrivateKey`] with every component the token needs, checked to
//! belong together.
//!
//! Owns: recognising the format, the refusals ([`KeyFileError`]: encrypted, under
//! [`MIN_BITS`] or over [`MAX_BITS`], not RSA, unreadable, inconsistent) and their hints,
//! and the PKCS#11 order of the primes. OpenPGP numbers its primes `p < q` with
//! `u = p^-1 mod q`; PKCS#11 wants `CKA_COEFFICIENT = q^-1 mod p` for its own
//! `CKA_PRIME_1 = p`, `CKA_PRIME_2 = q`, so the OpenPGP primes are swapped, which makes `u`
//! the coefficient, and `u` is checked against the computed one. RustCrypto's `rsa` checks
//! that `n = p*q` and `d*e = 1 mod p-1, q-1` and derives `d mod p-1`, `d mod q-1` and the
//! coefficient; PEM is read by `pkcs8`/`pkcs1`.
//!
//! Every buffer holding secret bytes is [`Zeroizing`] (the `rsa` key zeroizes itself), and
//! no message or `Debug` output carries key material.

use pkcs8::der::Decode;
use rsa::BoxedUint;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use zeroize::Zeroizing;

use crate::assertion::openpgp::RsaPublicKey;
use crate::assertion::openpgp::secret_key::{self, SecretKeyError};

/// The smallest modulus accepted, in bits (snapd refuses smaller signing keys).
pub const MIN_BITS: usize = 4096;

/// The largest modulus accepted, in bits: the HSM layer checks every signature in software,
/// which takes RSA keys up to 8192 bits.
pub const MAX_BITS: usize = 8192;

/// The largest key file read (a 16384-bit armored key is about 12 KiB).
pub const MAX_FILE_BYTES: usize = 64 * 1024;

/// The format of a key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFormat {
    /// An ASCII-armored OpenPGP secret key.
    OpenPgp,
    /// PEM `RSA PRIVATE KEY` (PKCS#1).
    Pkcs1,
    /// PEM `PRIVATE KEY` (PKCS#8).
    Pkcs8,
}

impl std::fmt::Display for KeyFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyFormat::OpenPgp => "OpenPGP",
            KeyFormat::Pkcs1 => "PKCS#1 PEM",
            KeyFormat::Pkcs8 => "PKCS#8 PEM",
        })
    }
}

impl KeyFormat {
    /// How to write the key again without its passphrase.
    fn unprotect_hint(self) -> &'static str {
        match self {
            KeyFormat::OpenPgp => {
                "remove it with `gpg --edit-key KEYID passwd` (enter an empty new passphrase), \
                 then export again with `gpg --export-secret-keys --armor KEYID`"
            }
            KeyFormat::Pkcs1 => "remove it with `openssl rsa -in enc.pem -out plain.pem`",
            KeyFormat::Pkcs8 => {
                "remove it with `openssl pkcs8 -topk8 -nocrypt -in enc.pem -out plain.pem`"
            }
        }
    }
}

/// Why a key file cannot be imported. Messages never carry key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The key is protected by a passphrase; the message says how to remove it.
    #[error(
        "the {format} key is protected by a passphrase: {hint}",
        hint = .format.unprotect_hint()
    )]
    Encrypted {
        /// The file's format.
        format: KeyFormat,
    },
    /// The modulus is smaller than [`MIN_BITS`].
    #[error("the key has {bits} bits; signing keys need at least {MIN_BITS}")]
    TooSmall {
        /// The modulus size.
        bits: usize,
    },
    /// The modulus is larger than [`MAX_BITS`].
    #[error("the key has {bits} bits; signing keys may have at most {MAX_BITS}")]
    TooLarge {
        /// The modulus size.
        bits: usize,
    },
    /// Not an RSA key (what it is, when known).
    #[error("not an RSA key ({0}); only RSA keys can sign snapd assertions")]
    NotRsa(String),
    /// Not a key file this reads.
    #[error(
        "not a readable private key: {0} (expected an ASCII-armored OpenPGP secret key, or \
         PEM \"RSA PRIVATE KEY\" / \"PRIVATE KEY\")"
    )]
    Unreadable(String),
    /// An OpenPGP key block that cannot be used.
    #[error(transparent)]
    OpenPgp(SecretKeyError),
    /// The components do not form an RSA key (n is not p*q, d does not invert e, ...).
    #[error("the {format} key is not a consistent RSA private key: {reason}")]
    Inconsistent {
        /// The file's format.
        format: KeyFormat,
        /// What does not fit.
        reason: String,
        /// What the RSA library said.
        #[source]
        source: Option<rsa::Error>,
    },
}

impl KeyFileError {
    /// A stable machine code for this refusal (the admin API's error code).
    pub fn code(&self) -> &'static str {
        match self {
            KeyFileError::Encrypted { .. } => "key-encrypted",
            KeyFileError::TooSmall { .. } => "key-too-small",
            KeyFileError::TooLarge { .. } => "key-too-large",
            KeyFileError::NotRsa(_) => "key-not-rsa",
            KeyFileError::OpenPgp(SecretKeyError::Encrypted) => "key-encrypted",
            KeyFileError::OpenPgp(SecretKeyError::NotRsa(_)) => "key-not-rsa",
            KeyFileError::Unreadable(_) | KeyFileError::OpenPgp(_) => "key-unreadable",
            KeyFileError::Inconsistent { .. } => "key-inconsistent",
        }
    }
}

impl From<SecretKeyError> for KeyFileError {
    fn from(e: SecretKeyError) -> Self {
        match e {
            SecretKeyError::Encrypted => KeyFileError::Encrypted {
                format: KeyFormat::OpenPgp,
            },
            SecretKeyError::NotRsa(algo) => KeyFileError::NotRsa(format!(
                "OpenPGP public-key algorithm {algo}{}",
                match algo {
                    16 | 20 => " (ElGamal)",
                    17 => " (DSA)",
                    18 => " (ECDH)",
                    19 => " (ECDSA)",
                    22 => " (EdDSA)",
                    _ => "",
                }
            )),
            e => KeyFileError::OpenPgp(e),
        }
    }
}

/// An RSA private key with every component PKCS#11 takes, big-endian without leading zeros,
/// in PKCS#11's order (`coefficient = prime2^-1 mod prime1`). Wiped when dropped; its
/// `Debug` shows only the public key.
pub struct RsaPrivateKey {
    /// The format it was read from.
    pub format: KeyFormat,
    /// The public key (modulus and exponent).
    pub public: RsaPublicKey,
    /// The private exponent.
    pub d: Zeroizing<Vec<u8>>,
    /// `CKA_PRIME_1`.
    pub prime1: Zeroizing<Vec<u8>>,
    /// `CKA_PRIME_2`.
    pub prime2: Zeroizing<Vec<u8>>,
    /// `CKA_EXPONENT_1`: `d mod (prime1 - 1)`.
    pub exponent1: Zeroizing<Vec<u8>>,
    /// `CKA_EXPONENT_2`: `d mod (prime2 - 1)`.
    pub exponent2: Zeroizing<Vec<u8>>,
    /// `CKA_COEFFICIENT`: `prime2^-1 mod prime1`.
    pub coefficient: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaPrivateKey")
            .field("format", &self.format)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// Reads a key file: armored OpenPGP, or PEM PKCS#1 / PKCS#8 (text around the block is
/// ignored). Refuses an encrypted key (saying how to remove the passphrase), a key under
/// [`MIN_BITS`], a non-RSA key, a key whose parts do not belong together, and anything else.
pub fn parse(file: &[u8]) -> Result<RsaPrivateKey, KeyFileError> {
    if file.len() > MAX_FILE_BYTES {
        return Err(KeyFileError::Unreadable(format!(
            "the file has {} bytes, more than a key file ({MAX_FILE_BYTES})",
            file.len()
        )));
    }
    let text = std::str::from_utf8(file).map_err(|_| {
        KeyFileError::Unreadable("the file is not text (binary DER or OpenPGP is not read)".into())
    })?;
    if text.contains(secret_key::ARMOR_BEGIN) {
        return from_openpgp(text);
    }
    if text.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
        return Err(KeyFileError::Unreadable(
            "this is an OpenPGP public key; export the secret key with \
             `gpg --export-secret-keys --armor KEYID`"
                .into(),
        ));
    }
    let Some((label, block)) = pem_block(text) else {
        return Err(KeyFileError::Unreadable("no key block found".into()));
    };
    match label {
        "RSA PRIVATE KEY" if block.contains("Proc-Type: 4,ENCRYPTED") => {
            Err(KeyFileError::Encrypted {
                format: KeyFormat::Pkcs1,
            })
        }
        "ENCRYPTED PRIVATE KEY" => Err(KeyFileError::Encrypted {
            format: KeyFormat::Pkcs8,
        }),
        "RSA PRIVATE KEY" => from_pkcs1(block),
        "PRIVATE KEY" => from_pkcs8(block),
        "EC PRIVATE KEY" => Err(KeyFileError::NotRsa("an EC key".into())),
        "DSA PRIVATE KEY" => Err(KeyFileError::NotRsa("a DSA key".into())),
        "OPENSSH PRIVATE KEY" => Err(KeyFileError::Unreadable(
            "an OpenSSH private key; write it as PEM with `ssh-keygen -p -m PEM -f FILE`".into(),
        )),
        other => Err(KeyFileError::Unreadable(format!(
            "a PEM {other:?} block is not a private key"
        ))),
    }
}

/// The first PEM block: its label and the text from its BEGIN line to its END line.
fn pem_block(text: &str) -> Option<(&str, &str)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label = &rest[..rest.find("-----")?];
    let end_line = format!("-----END {label}-----");
    let end = text[start..].find(&end_line)? + start + end_line.len();
    Some((label, &text[start..end]))
}

fn bits_of(n: &[u8]) -> usize {
    RsaPublicKey::new(n, &[1]).bits()
}

fn check_size(n: &[u8]) -> Result<(), KeyFileError> {
    let bits = bits_of(n);
    if bits < MIN_BITS {
        return Err(KeyFileError::TooSmall { bits });
    }
    if bits > MAX_BITS {
        return Err(KeyFileError::TooLarge { bits });
    }
    Ok(())
}

fn unreadable_pem(format: KeyFormat) -> impl FnOnce(pkcs8::der::Error) -> KeyFileError {
    move |e| KeyFileError::Unreadable(format!("the {format} block cannot be decoded: {e}"))
}

fn from_pkcs1(block: &str) -> Result<RsaPrivateKey, KeyFileError> {
    const F: KeyFormat = KeyFormat::Pkcs1;
    let (_, der) = pkcs8::SecretDocument::from_pem(block).map_err(unreadable_pem(F))?;
    let key = rsa::pkcs1::RsaPrivateKeyRef::from_der(der.as_bytes()).map_err(unreadable_pem(F))?;
    check_size(key.modulus.as_bytes())?;
    let rsa = <rsa::PrivateKey as rsa::pkcs1::DecodeRsaPrivateKey>::from_pkcs1_der(der.as_bytes())
        .map_err(|e| inconsistent(F, e.to_string(), None))?;
    components(F, &rsa)
}

/// `rsaEncryption` (PKCS#1).
const RSA_ENCRYPTION: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

fn from_pkcs8(block: &str) -> Result<RsaPrivateKey, KeyFileError> {
    const F: KeyFormat = KeyFormat::Pkcs8;
    let (_, der) = pkcs8::SecretDocument::from_pem(block).map_err(unreadable_pem(F))?;
    let info = pkcs8::PrivateKeyInfoRef::from_der(der.as_bytes()).map_err(unreadable_pem(F))?;
    let oid = info.algorithm.oid;
    if oid != RSA_ENCRYPTION {
        let what = match oid.to_string().as_str() {
            "1.2.840.10045.2.1" => "an EC key".to_string(),
            "1.3.101.112" => "an Ed25519 key".to_string(),
            "1.3.101.113" => "an Ed448 key".to_string(),
            "1.2.840.10040.4.1" => "a DSA key".to_string(),
            "1.2.840.113549.1.1.10" => "an RSA-PSS-only key".to_string(),
            other => format!("algorithm {other}"),
        };
        return Err(KeyFileError::NotRsa(what));
    }
    let pkcs1 = rsa::pkcs1::RsaPrivateKeyRef::from_der(info.private_key.as_bytes())
        .map_err(unreadable_pem(F))?;
    check_size(pkcs1.modulus.as_bytes())?;
    let rsa = rsa::PrivateKey::try_from(info).map_err(|e| inconsistent(F, e.to_string(), None))?;
    components(F, &rsa)
}

fn from_openpgp(text: &str) -> Result<RsaPrivateKey, KeyFileError> {
    const F: KeyFormat = KeyFormat::OpenPgp;
    let k = secret_key::read_armored_rsa_secret_key(text)?;
    check_size(&k.n)?;
    let precision = u32::try_from(k.n.len() * 8).unwrap_or(u32::MAX);
    let uint = |v: &[u8], bits: u32| {
        BoxedUint::from_be_slice(v, bits)
            .map_err(|_| inconsistent(F, "a component is larger than the modulus".into(), None))
    };
    let e_bits = u32::try_from(k.e.len().max(1) * 8).unwrap_or(u32::MAX);
    // PKCS#11's prime1 is OpenPGP's q, its prime2 OpenPGP's p: then the coefficient
    // prime2^-1 mod prime1 is OpenPGP's u.
    let rsa = rsa::PrivateKey::from_components(
        uint(&k.n, precision)?,
        uint(&k.e, e_bits)?,
        uint(&k.d, precision)?,
        vec![uint(&k.q, precision)?, uint(&k.p, precision)?],
    )
    .map_err(|e| inconsistent(F, e.to_string(), Some(e)))?;
    let out = components(F, &rsa)?;
    if out.coefficient[..] != trim(&k.u)[..] {
        return Err(inconsistent(
            F,
            "its coefficient u is not p^-1 mod q".into(),
            None,
        ));
    }
    Ok(out)
}

fn inconsistent(format: KeyFormat, reason: String, source: Option<rsa::Error>) -> KeyFileError {
    KeyFileError::Inconsistent {
        format,
        reason,
        source,
    }
}

/// Big-endian bytes without leading zeros, in a wiped buffer.
fn trim(v: &[u8]) -> Zeroizing<Vec<u8>> {
    let first = v.iter().position(|&b| b != 0).unwrap_or(v.len());
    Zeroizing::new(v[first..].to_vec())
}

fn be(v: &BoxedUint) -> Zeroizing<Vec<u8>> {
    let full = Zeroizing::new(v.to_be_bytes());
    trim(&full)
}

/// The PKCS#11 components of a checked key (its CRT values computed by `rsa`).
fn components(format: KeyFormat, k: &rsa::PrivateKey) -> Result<RsaPrivateKey, KeyFileError> {
    let missing = || inconsistent(format, "its CRT values cannot be computed".into(), None);
    let primes = k.primes();
    if primes.len() != 2 {
        return Err(inconsistent(
            format,
            format!(
                "it has {} primes; only two-prime keys are read",
                primes.len()
            ),
            None,
        ));
    }
    let n = k.n().to_be_bytes_trimmed_vartime();
    let e = k.e().to_be_bytes_trimmed_vartime();
    let public = RsaPublicKey::new(&n, &e);
    Ok(RsaPrivateKey {
        format,
        public,
        d: be(k.d()),
        prime1: be(primes[0].as_ref()),
        prime2: be(primes[1].as_ref()),
        exponent1: be(k.dp().ok_or_else(missing)?),
        exponent2: be(k.dq().ok_or_else(missing)?),
        coefficient: be(&k.crt_coefficient().ok_or_else(missing)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_by_format() {
        let e = parse(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert_eq!(e.code(), "key-encrypted");
        assert!(
            e.to_string().contains("openssl pkcs8 -topk8 -nocrypt"),
            "{e}"
        );
        let e = parse(
            b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert_eq!(e.code(), "key-encrypted");
        assert!(
            e.to_string()
                .contains("openssl rsa -in enc.pem -out plain.pem"),
            "{e}"
        );
        let e = parse(b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")
            .unwrap_err();
        assert_eq!(e.code(), "key-not-rsa");
        for garbage in [
            &b"hello"[..],
            b"\xff\xfe",
            b"-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
        ] {
            assert_eq!(parse(garbage).unwrap_err().code(), "key-unreadable");
        }
    }

    /// An armored v4 RSA secret key (no checksum line) with an `n_bytes`-byte modulus.
    fn armored_with_modulus(n_bytes: usize) -> String {
        use base64::Engine;
        let mpi = |out: &mut Vec<u8>, v: &[u8]| {
            out.extend_from_slice(&((v.len() * 8) as u16).to_be_bytes());
            out.extend_from_slice(v);
        };
        let mut body = vec![4, 0, 0, 0, 0, 1];
        mpi(&mut body, &vec![0xC5; n_bytes]);
        mpi(&mut body, &[0x81, 0, 1]);
        body.push(0);
        let start = body.len();
        for _ in 0..4 {
            mpi(&mut body, &[0x83; 16]);
        }
        let sum = body[start..]
            .iter()
            .fold(0u16, |a, &b| a.wrapping_add(u16::from(b)));
        body.extend_from_slice(&sum.to_be_bytes());
        let mut packet = vec![0xC5, 0xFF];
        packet.extend_from_slice(&(body.len() as u32).to_be_bytes());
        packet.extend_from_slice(&body);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&packet);
        format!(
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{b64}\n-----END PGP PRIVATE KEY BLOCK-----\n"
        )
    }

    #[test]
    fn sizes_outside_4096_to_8192_bits_are_refused_before_any_arithmetic() {
        let e = parse(armored_with_modulus(1100).as_bytes()).unwrap_err();
        assert_eq!(e.code(), "key-too-large", "{e}");
        assert!(e.to_string().contains("8800 bits"), "{e}");
        let e = parse(armored_with_modulus(256).as_bytes()).unwrap_err();
        assert_eq!(e.code(), "key-too-small", "{e}");
        // 4096 bits that do not form a key: refused as inconsistent, not read as a key.
        let e = parse(armored_with_modulus(512).as_bytes()).unwrap_err();
        assert_eq!(e.code(), "key-inconsistent", "{e}");
    }
}
