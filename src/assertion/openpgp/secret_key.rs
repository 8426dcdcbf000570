//! Reading an OpenPGP secret key as `gpg --export-secret-keys --armor` writes it for a key
//! without a passphrase (RFC 4880 §6.2 armor with its CRC-24, §5.5.3 secret-key packet): the
//! primary key's RSA components, for import onto a token. Subkeys, user ids and signatures
//! are skipped; an encrypted or absent secret part, another version or another algorithm is
//! refused with its own [`SecretKeyError`].
//!
//! Every buffer that holds secret bytes (the decoded armor, the MPIs) is a
//! [`Zeroizing`] one, wiped when dropped.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::packet::{ByteReader, read_packet};

/// The armor line that opens a secret key block.
pub const ARMOR_BEGIN: &str = "-----BEGIN PGP PRIVATE KEY BLOCK-----";
const ARMOR_END: &str = "-----END PGP PRIVATE KEY BLOCK-----";
const KIND: &str = "OpenPGP secret key";

/// Packet tags (RFC 4880 §4.3).
const TAG_SECRET_KEY: u8 = 5;
const TAG_PUBLIC_KEY: u8 = 6;

/// The primary key's RSA components as the packet holds them (OpenPGP's order: `p < q`,
/// `u = p^-1 mod q`), big-endian. Wiped when dropped; never printed.
pub struct RsaSecretKey {
    /// The modulus.
    pub n: Vec<u8>,
    /// The public exponent.
    pub e: Vec<u8>,
    /// The private exponent.
    pub d: Zeroizing<Vec<u8>>,
    /// The smaller prime.
    pub p: Zeroizing<Vec<u8>>,
    /// The larger prime.
    pub q: Zeroizing<Vec<u8>>,
    /// `p^-1 mod q`.
    pub u: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for RsaSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaSecretKey")
            .field("modulus_bytes", &self.n.len())
            .finish_non_exhaustive()
    }
}

/// Why an OpenPGP secret key cannot be read. Messages name the problem, never key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretKeyError {
    /// Not an armored secret key block, or a broken one (base64, CRC, framing).
    #[error("not a readable OpenPGP secret key: {0}")]
    Malformed(String),
    /// The secret part is protected by a passphrase.
    #[error("the OpenPGP secret key is protected by a passphrase")]
    Encrypted,
    /// The secret part is not in the file (a GnuPG stub: the key lives on a smartcard, or
    /// only subkeys were exported).
    #[error(
        "the OpenPGP key block holds no secret key material (a GnuPG stub: the key is on a \
         smartcard, or only subkeys were exported)"
    )]
    Stub,
    /// The primary key is not RSA (public-key algorithm 1, 2 or 3).
    #[error("the OpenPGP key is not an RSA key (public-key algorithm {0})")]
    NotRsa(u8),
    /// A key packet version other than 4.
    #[error("unsupported OpenPGP key version {0} (only version 4 keys)")]
    Version(u8),
}

fn malformed(m: impl Into<String>) -> SecretKeyError {
    SecretKeyError::Malformed(m.into())
}

/// CRC-24 of RFC 4880 §6.1.
fn crc24(data: &[u8]) -> u32 {
    const INIT: u32 = 0x00B7_04CE;
    const POLY: u32 = 0x0186_4CFB;
    let mut crc = INIT;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= POLY;
            }
        }
    }
    crc & 0x00FF_FFFF
}

/// Removes the ASCII armor: the `BEGIN PGP PRIVATE KEY BLOCK` line, armor headers up to the
/// blank line, base64 lines, the optional `=XXXX` checksum (checked when present) and the
/// `END` line. Text before BEGIN and after END is ignored.
pub fn dearmor(text: &str) -> Result<Zeroizing<Vec<u8>>, SecretKeyError> {
    let start = text
        .find(ARMOR_BEGIN)
        .ok_or_else(|| malformed(format!("no \"{ARMOR_BEGIN}\" line")))?;
    let after = &text[start + ARMOR_BEGIN.len()..];
    let end = after
        .find(ARMOR_END)
        .ok_or_else(|| malformed(format!("no \"{ARMOR_END}\" line")))?;
    let mut lines = after[..end].lines().map(str::trim).skip(1).peekable();
    // Armor headers ("Version: ...", "Comment: ...") up to the first blank line.
    if lines.peek().is_some_and(|l| l.contains(": ")) {
        for l in lines.by_ref() {
            if l.is_empty() {
                break;
            }
        }
    }
    let mut b64 = Zeroizing::new(String::new());
    let mut checksum = None;
    for l in lines {
        if l.is_empty() {
            continue;
        }
        if let Some(c) = l.strip_prefix('=') {
            checksum = Some(c.to_string());
            break;
        }
        b64.push_str(l);
    }
    let data = Zeroizing::new(
        STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| malformed("the armored data is not valid base64"))?,
    );
    if let Some(c) = checksum {
        let want = STANDARD
            .decode(c.as_bytes())
            .ok()
            .filter(|b| b.len() == 3)
            .ok_or_else(|| malformed("the armor checksum is not valid base64"))?;
        let want = u32::from_be_bytes([0, want[0], want[1], want[2]]);
        if crc24(&data) != want {
            return Err(malformed(
                "the armor checksum does not match (the file is damaged or truncated)",
            ));
        }
    }
    if data.is_empty() {
        return Err(malformed("the armored block is empty"));
    }
    Ok(data)
}

/// The primary RSA secret key of an armored OpenPGP secret key block.
pub fn read_armored_rsa_secret_key(text: &str) -> Result<RsaSecretKey, SecretKeyError> {
    let data = dearmor(text)?;
    read_rsa_secret_key(&data)
}

/// The primary RSA secret key of binary OpenPGP packets (a transferable secret key): the
/// first key packet must be a secret-key packet.
pub fn read_rsa_secret_key(data: &[u8]) -> Result<RsaSecretKey, SecretKeyError> {
    let mut rest = data;
    while !rest.is_empty() {
        let pkt = read_packet(rest, KIND).map_err(|e| malformed(e.to_string()))?;
        match pkt.tag {
            TAG_SECRET_KEY => return secret_key_packet(pkt.body),
            TAG_PUBLIC_KEY => {
                return Err(malformed(
                    "this is a public key block; export the secret key with \
                     `gpg --export-secret-keys --armor KEYID`",
                ));
            }
            _ => {}
        }
        let next = rest.len() - pkt.after_len();
        if next == 0 || next > rest.len() {
            break;
        }
        rest = &rest[next..];
    }
    Err(malformed("no secret-key packet in the key block"))
}

/// One v4 secret-key packet body (RFC 4880 §5.5.3).
fn secret_key_packet(body: &[u8]) -> Result<RsaSecretKey, SecretKeyError> {
    let eof = || malformed("the secret-key packet is truncated");
    let mut r = ByteReader::new(body);
    let version = r.u8().ok_or_else(eof)?;
    if version != 4 {
        return Err(SecretKeyError::Version(version));
    }
    r.take(4).ok_or_else(eof)?; // creation time
    let algo = r.u8().ok_or_else(eof)?;
    if !matches!(algo, 1..=3) {
        return Err(SecretKeyError::NotRsa(algo));
    }
    let n = r.mpi().ok_or_else(eof)?.to_vec();
    let e = r.mpi().ok_or_else(eof)?.to_vec();
    match r.u8().ok_or_else(eof)? {
        0 => {}
        254 | 255 => {
            // A string-to-key specifier follows: the symmetric algorithm, then the S2K type;
            // GnuPG's extension 101 marks a stub without secret material.
            let _cipher = r.u8().ok_or_else(eof)?;
            let s2k = r.u8().ok_or_else(eof)?;
            if s2k == 101 {
                return Err(SecretKeyError::Stub);
            }
            return Err(SecretKeyError::Encrypted);
        }
        _ => return Err(SecretKeyError::Encrypted),
    }
    let start = r.pos;
    let d = Zeroizing::new(r.mpi().ok_or_else(eof)?.to_vec());
    let p = Zeroizing::new(r.mpi().ok_or_else(eof)?.to_vec());
    let q = Zeroizing::new(r.mpi().ok_or_else(eof)?.to_vec());
    let u = Zeroizing::new(r.mpi().ok_or_else(eof)?.to_vec());
    let end = r.pos;
    let checksum = r.u16().ok_or_else(eof)?;
    let sum = body[start..end]
        .iter()
        .fold(0u16, |a, &b| a.wrapping_add(u16::from(b)));
    if sum != checksum {
        return Err(malformed(
            "the secret-key checksum does not match (the key is damaged)",
        ));
    }
    Ok(RsaSecretKey { n, e, d, p, q, u })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mpi(out: &mut Vec<u8>, v: &[u8]) {
        let bits = (v.len() * 8 - v[0].leading_zeros() as usize) as u16;
        out.extend_from_slice(&bits.to_be_bytes());
        out.extend_from_slice(v);
    }

    /// The secret MPIs followed by their checksum (plus `delta`, to damage it).
    fn secret(mpis: &[&[u8]], delta: u16) -> Vec<u8> {
        let mut out = Vec::new();
        for m in mpis {
            mpi(&mut out, m);
        }
        let sum = out
            .iter()
            .fold(0u16, |a, &b| a.wrapping_add(u16::from(b)))
            .wrapping_add(delta);
        out.extend_from_slice(&sum.to_be_bytes());
        out
    }

    /// A v4 secret-key packet: public part, S2K usage, then `rest` as it is.
    fn packet(algo: u8, usage: u8, rest: &[u8]) -> Vec<u8> {
        let mut body = vec![4, 0, 0, 0, 0, algo];
        mpi(&mut body, &[0xC5; 8]);
        mpi(&mut body, &[1, 0, 1]);
        body.push(usage);
        body.extend_from_slice(rest);
        let mut out = vec![0xC0 | TAG_SECRET_KEY, body.len() as u8];
        out.extend_from_slice(&body);
        out
    }

    fn armor(data: &[u8]) -> String {
        let crc = crc24(data).to_be_bytes();
        format!(
            "{ARMOR_BEGIN}\nVersion: test\n\n{}\n={}\n{ARMOR_END}\n",
            STANDARD.encode(data),
            STANDARD.encode(&crc[1..])
        )
    }

    #[test]
    fn crc24_of_rfc4880_check_value() {
        // The CRC-24/OPENPGP check value ("123456789").
        assert_eq!(crc24(b"123456789"), 0x21CF02);
    }

    #[test]
    fn reads_an_unencrypted_rsa_key() {
        let mpis: [&[u8]; 4] = [&[7; 8], &[3; 4], &[5; 4], &[9; 4]];
        let k = read_armored_rsa_secret_key(&armor(&packet(1, 0, &secret(&mpis, 0)))).unwrap();
        assert_eq!(k.n, [0xC5; 8]);
        assert_eq!(k.e, [1, 0, 1]);
        assert_eq!(&k.d[..], &[7; 8]);
        assert_eq!(&k.u[..], &[9; 4]);
        assert!(!format!("{k:?}").contains("7, 7"));
    }

    #[test]
    fn refusals() {
        let mpis: [&[u8]; 4] = [&[7; 8], &[3; 4], &[5; 4], &[9; 4]];
        let bad_sum = armor(&packet(1, 0, &secret(&mpis, 1)));
        assert!(matches!(
            read_armored_rsa_secret_key(&bad_sum),
            Err(SecretKeyError::Malformed(m)) if m.contains("checksum")
        ));
        let encrypted = armor(&packet(1, 254, &[9, 3, 1, 2]));
        assert_eq!(
            read_armored_rsa_secret_key(&encrypted).unwrap_err(),
            SecretKeyError::Encrypted
        );
        let stub = armor(&packet(1, 255, &[0, 101, 0]));
        assert_eq!(
            read_armored_rsa_secret_key(&stub).unwrap_err(),
            SecretKeyError::Stub
        );
        let eddsa = armor(&packet(22, 0, &secret(&mpis, 0)));
        assert_eq!(
            read_armored_rsa_secret_key(&eddsa).unwrap_err(),
            SecretKeyError::NotRsa(22)
        );
        let mut damaged = armor(&packet(1, 0, &secret(&mpis, 0)));
        damaged = damaged.replacen("\n\n", "\n\nAAAA", 1);
        assert!(matches!(
            read_armored_rsa_secret_key(&damaged),
            Err(SecretKeyError::Malformed(_))
        ));
        assert!(matches!(
            read_armored_rsa_secret_key("hello"),
            Err(SecretKeyError::Malformed(_))
        ));
    }
}
