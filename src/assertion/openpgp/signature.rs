//! Signature packets: decoding a v4 signature (x/crypto `Signature.parse`), verifying it in
//! software (`openpgpPubKey.verify`), and checking an assembled block against what an HSM signed.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self as awssig, UnparsedPublicKey};

use super::key::RsaPublicKey;
use super::packet::{ByteReader, HASH_SHA512, PUBKEY_ALGO_RSA, decode_v1, read_packet};
use super::signing::SHA512_DIGEST_INFO_PREFIX;
use crate::assertion::error::{PacketError, VerifyError};

/// A parsed v4 signature packet (x/crypto `Signature.parse`, only what snapd uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignaturePacket {
    /// Signature type (0x00 binary, 0x01 text; both accepted).
    pub sig_type: u8,
    /// Public-key algorithm (must be 1 to verify against snapd keys).
    pub pubkey_algo: u8,
    /// Hash algorithm id (RFC 4880 9.4).
    pub hash_algo: u8,
    /// Creation time from the hashed creation-time subpacket (unix seconds).
    pub created: u32,
    /// First two bytes of the digest.
    pub hash_tag: [u8; 2],
    /// The RSA signature bytes as carried (leading zeros kept).
    pub rsa_sig: Vec<u8>,
    /// What is hashed after the content: version .. hashed subpackets, then the trailer.
    pub hash_suffix: Vec<u8>,
}

impl SignaturePacket {
    /// Decodes a v1 signature block (`decodeSignature`).
    pub fn decode(text: &[u8]) -> Result<Self, PacketError> {
        const KIND: &str = "signature";
        let raw = decode_v1(text, KIND)?;
        let pkt = read_packet(&raw, KIND)?;
        if pkt.tag != 2 {
            return Err(PacketError::WrongPacket(KIND, pkt.tag));
        }
        let mut r = pkt.reader();
        let sig = Self::parse(&mut r)?;
        pkt.finish(r.pos, KIND)?;
        Ok(sig)
    }

    fn parse(r: &mut ByteReader<'_>) -> Result<Self, PacketError> {
        const KIND: &str = "signature";
        let bad = |m: String| PacketError::Packet(KIND, m);
        let eof = || bad("unexpected EOF".into());
        let version = r.u8().ok_or_else(eof)?;
        if version < 4 {
            return Err(PacketError::WrongPacket("v4 signature", 2));
        }
        if version != 4 {
            return Err(bad(format!(
                "unsupported feature: signature packet version {version}"
            )));
        }
        let head = r.take(5).ok_or_else(eof)?;
        let (sig_type, pubkey_algo, hash_algo) = (head[0], head[1], head[2]);
        if !matches!(pubkey_algo, 1 | 3 | 17 | 19) {
            return Err(bad(format!(
                "unsupported feature: public key algorithm {pubkey_algo}"
            )));
        }
        if !matches!(hash_algo, 1 | 2 | 3 | 8 | 9 | 10 | 11) {
            return Err(bad(format!(
                "unsupported feature: hash function {hash_algo}"
            )));
        }
        let hashed_len = usize::from(u16::from_be_bytes([head[3], head[4]]));
        let hashed = r.take(hashed_len).ok_or_else(eof)?;
        let mut created = None;
        parse_subpackets(hashed, true, &mut created)?;
        let unhashed_len = usize::from(r.u16().ok_or_else(eof)?);
        let unhashed = r.take(unhashed_len).ok_or_else(eof)?;
        parse_subpackets(unhashed, false, &mut created)?;
        let tag = r.take(2).ok_or_else(eof)?;
        let rsa_sig = r.mpi().ok_or_else(eof)?.to_vec();
        if matches!(pubkey_algo, 17 | 19) {
            r.mpi().ok_or_else(eof)?;
        }
        let l = 6 + hashed_len;
        let mut hash_suffix = Vec::with_capacity(l + 6);
        hash_suffix.push(4);
        hash_suffix.extend_from_slice(head);
        hash_suffix.extend_from_slice(hashed);
        hash_suffix.extend_from_slice(&[4, 0xff]);
        hash_suffix.extend_from_slice(&(l as u32).to_be_bytes());
        Ok(Self {
            sig_type,
            pubkey_algo,
            hash_algo,
            created: created
                .ok_or_else(|| bad("invalid data: no creation time in signature".into()))?,
            hash_tag: [tag[0], tag[1]],
            rsa_sig,
            hash_suffix,
        })
    }

    /// Verifies this signature over `content` with `public` (`openpgpPubKey.verify`): hash
    /// content and suffix with the packet's hash, compare the hash tag, require algorithm 1,
    /// then PKCS#1 v1.5 with the signature left-padded to the key size (`padToKeySize`).
    pub fn verify(&self, content: &[u8], public: &RsaPublicKey) -> Result<(), VerifyError> {
        let (dalg, valg): (&'static digest::Algorithm, &'static awssig::RsaParameters) =
            match self.hash_algo {
                2 => (
                    &digest::SHA1_FOR_LEGACY_USE_ONLY,
                    &awssig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                ),
                8 => (&digest::SHA256, &awssig::RSA_PKCS1_2048_8192_SHA256),
                9 => (&digest::SHA384, &awssig::RSA_PKCS1_2048_8192_SHA384),
                10 => (&digest::SHA512, &awssig::RSA_PKCS1_2048_8192_SHA512),
                other => return Err(VerifyError::UnsupportedHash(other)),
            };
        let d = self.signed_digest(dalg, content)?;
        if self.pubkey_algo != PUBKEY_ALGO_RSA {
            return Err(VerifyError::Algorithm);
        }
        rsa_verify_digest(public, valg, &d, &self.rsa_sig)
    }

    /// The digest of `content` then the hash suffix, checked against the packet's hash tag.
    fn signed_digest(
        &self,
        alg: &'static digest::Algorithm,
        content: &[u8],
    ) -> Result<digest::Digest, VerifyError> {
        let mut ctx = digest::Context::new(alg);
        ctx.update(content);
        ctx.update(&self.hash_suffix);
        let d = ctx.finish();
        if d.as_ref()[..2] != self.hash_tag {
            return Err(VerifyError::HashTag);
        }
        Ok(d)
    }
}

/// The SHA-512 hash a DigestInfo carries, once its prefix is checked.
fn digest_info_hash(digest_info: &[u8; 83]) -> Result<&[u8], VerifyError> {
    let (prefix, hash) = digest_info.split_at(SHA512_DIGEST_INFO_PREFIX.len());
    if prefix != SHA512_DIGEST_INFO_PREFIX {
        return Err(VerifyError::DigestInfo);
    }
    Ok(hash)
}

fn rsa_verify_digest(
    public: &RsaPublicKey,
    alg: &'static awssig::RsaParameters,
    d: &digest::Digest,
    sig: &[u8],
) -> Result<(), VerifyError> {
    let k = public.modulus().len();
    let padded;
    let sig = if sig.len() < k {
        let mut p = vec![0u8; k - sig.len()];
        p.extend_from_slice(sig);
        padded = p;
        &padded[..]
    } else {
        sig
    };
    UnparsedPublicKey::new(alg, public.pkcs1_der())
        .verify_digest(d, sig)
        .map_err(|_| VerifyError::Rsa)
}

/// Checks a raw RSA PKCS#1 v1.5 signature over a SHA-512 `DigestInfo` (what an HSM signed
/// with `CKM_RSA_PKCS`), in software. Used to check HSM output before it is sent anywhere.
pub fn verify_digest_info(
    public: &RsaPublicKey,
    digest_info: &[u8; 83],
    rsa_sig: &[u8],
) -> Result<(), VerifyError> {
    let hash = digest_info_hash(digest_info)?;
    let d = digest::Digest::import_less_safe(hash, &digest::SHA512)
        .map_err(|_| VerifyError::DigestInfo)?;
    rsa_verify_digest(public, &awssig::RSA_PKCS1_2048_8192_SHA512, &d, rsa_sig)
}

/// Verifies an encoded signature block over `content` with `public` (`CheckSignature`'s crypto
/// part: `decodeSignature` then `verify`).
pub fn verify_signature(
    content: &[u8],
    signature_text: &[u8],
    public: &RsaPublicKey,
) -> Result<(), VerifyError> {
    SignaturePacket::decode(signature_text)?.verify(content, public)
}

/// Checks that an encoded signature block carries `rsa_sig` over `content` as `digest_info`
/// (a SHA-512 DigestInfo): everything [`verify_signature`] checks except the RSA step, for a
/// raw signature the caller has already verified against that DigestInfo (the HSM layer
/// checks every token signature in software). It costs one SHA-512 instead of a second RSA
/// verification and still catches any mistake in assembling the packet.
pub fn check_encoded_signature(
    content: &[u8],
    signature_text: &[u8],
    digest_info: &[u8; 83],
    rsa_sig: &[u8],
) -> Result<(), VerifyError> {
    let packet = SignaturePacket::decode(signature_text)?;
    if packet.pubkey_algo != PUBKEY_ALGO_RSA {
        return Err(VerifyError::Algorithm);
    }
    if packet.hash_algo != HASH_SHA512 {
        return Err(VerifyError::UnsupportedHash(packet.hash_algo));
    }
    let d = packet.signed_digest(&digest::SHA512, content)?;
    if digest_info_hash(digest_info)? != d.as_ref() {
        return Err(VerifyError::Mismatch("digest"));
    }
    let unpadded = |s: &[u8]| -> Vec<u8> { s.iter().copied().skip_while(|b| *b == 0).collect() };
    if unpadded(&packet.rsa_sig) != unpadded(rsa_sig) {
        return Err(VerifyError::Mismatch("RSA signature"));
    }
    Ok(())
}

/// x/crypto `parseSignatureSubpackets`: records the creation time, rejects what Go rejects.
fn parse_subpackets(
    mut data: &[u8],
    hashed: bool,
    created: &mut Option<u32>,
) -> Result<(), PacketError> {
    const KIND: &str = "signature";
    let bad = |m: &str| PacketError::Packet(KIND, format!("invalid data: {m}"));
    while let Some(&l0) = data.first() {
        let (len, skip) = match l0 {
            0..=191 => (usize::from(l0), 1),
            192..=254 => {
                let l1 = *data
                    .get(1)
                    .ok_or_else(|| bad("signature subpacket truncated"))?;
                ((usize::from(l0 - 192) << 8) + usize::from(l1) + 192, 2)
            }
            255 => {
                let b = data
                    .get(1..5)
                    .ok_or_else(|| bad("signature subpacket truncated"))?;
                (u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize, 5)
            }
        };
        let rest = &data[skip..];
        if len > rest.len() {
            return Err(bad("signature subpacket truncated"));
        }
        let (sub, next) = rest.split_at(len);
        data = next;
        let Some((&t, body)) = sub.split_first() else {
            return Err(bad("zero length signature subpacket"));
        };
        let (kind, critical) = (t & 0x7f, t & 0x80 != 0);
        match kind {
            2 => {
                if !hashed {
                    return Err(bad("signature creation time in non-hashed area"));
                }
                let b: [u8; 4] = body
                    .try_into()
                    .map_err(|_| bad("signature creation time not four bytes"))?;
                *created = Some(u32::from_be_bytes(b));
            }
            3 | 9 if hashed && body.len() != 4 => {
                return Err(bad("expiration subpacket with bad length"));
            }
            16 if body.len() != 8 => return Err(bad("issuer subpacket with bad length")),
            25 if hashed && body.len() != 1 => {
                return Err(bad("primary user id subpacket with bad length"));
            }
            27 if hashed && body.is_empty() => return Err(bad("empty key flags subpacket")),
            29 if hashed && body.is_empty() => {
                return Err(bad("empty revocation reason subpacket"));
            }
            3 | 9 | 11 | 16 | 21 | 22 | 25 | 27 | 29 | 30 => {}
            32 => {
                return Err(PacketError::Packet(
                    KIND,
                    "unsupported feature: embedded signature subpacket".into(),
                ));
            }
            _ if critical => {
                return Err(PacketError::Packet(
                    KIND,
                    format!(
                        "unsupported feature: unknown critical signature subpacket type {kind}"
                    ),
                ));
            }
            _ => {}
        }
    }
    if created.is_none() {
        return Err(bad("no creation time in signature"));
    }
    Ok(())
}
