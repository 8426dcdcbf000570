//! OpenPGP v4 RSA public-key and signature packets, snapd key ids, the signed-data digest and
//! software verification (snapd `asserts/crypto.go`; x/crypto `openpgp/packet/{packet.go,
//! public_key.go,signature.go}`).
//!
//! snapd encodes every public key as a v4 RSA public-key packet with the fixed creation time
//! 2016-01-01T00:00:00Z (`v1FixedTimestamp`) and algorithm 1, prefixes it with the format byte
//! `0x01`, and names the key by SHA3-384 of those bytes in unpadded base64url. Signatures are v4
//! signature packets over SHA-512 with one hashed creation-time subpacket (PROTOCOL.md 2.3/2.4).

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self as awssig, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha3::{Digest, Sha3_384};

use super::error::{PacketError, VerifyError};

/// snapd's fixed key creation time, 2016-01-01T00:00:00Z (`v1FixedTimestamp`).
pub const FIXED_KEY_CREATION_TIME: u32 = 1_451_606_400;

/// The format byte that prefixes every encoded key and signature (`encodeV1`).
pub const V1: u8 = 0x01;

/// An RSA public key as big-endian modulus and exponent bytes (leading zeros allowed).
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaPublicKey")
            .field("bits", &self.bits())
            .field("id", &self.key_id())
            .finish()
    }
}

impl RsaPublicKey {
    /// A key from big-endian modulus and exponent; leading zero bytes are stripped.
    pub fn new(modulus: &[u8], exponent: &[u8]) -> Self {
        Self {
            n: strip_leading_zeros(modulus).to_vec(),
            e: strip_leading_zeros(exponent).to_vec(),
        }
    }

    /// The modulus, big-endian, without leading zeros.
    pub fn modulus(&self) -> &[u8] {
        &self.n
    }

    /// The public exponent, big-endian, without leading zeros.
    pub fn exponent(&self) -> &[u8] {
        &self.e
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        mpi_bits(&self.n)
    }

    /// The complete public-key packet (new-format header, tag 6), as Go's x/crypto writes it.
    pub fn packet(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.n.len() + self.e.len() + 10);
        body.push(4); // version
        body.extend_from_slice(&FIXED_KEY_CREATION_TIME.to_be_bytes());
        body.push(1); // RSA (encrypt or sign)
        write_mpi(&mut body, &self.n);
        write_mpi(&mut body, &self.e);
        let mut packet = Vec::with_capacity(body.len() + 6);
        write_packet_header(&mut packet, 6, body.len());
        packet.extend_from_slice(&body);
        packet
    }

    /// `0x01 || packet`: the bytes that are base64-encoded and hashed for the key id.
    pub fn v1_bytes(&self) -> Vec<u8> {
        let mut out = vec![V1];
        out.extend_from_slice(&self.packet());
        out
    }

    /// The raw SHA3-384 key id (48 bytes); used as `CKA_ID` on the token.
    pub fn key_id_bytes(&self) -> [u8; 48] {
        Sha3_384::digest(self.v1_bytes()).into()
    }

    /// The key id as snapd writes it (`sign-key-sha3-384`): unpadded base64url of SHA3-384.
    pub fn key_id(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key_id_bytes())
    }

    /// The key as snapd encodes it (`encodeV1`): padded base64, wrapped at 76 columns, no
    /// trailing newline.
    pub fn encode(&self) -> String {
        wrap76(&STANDARD.encode(self.v1_bytes()))
    }

    /// Decodes an encoded key (`DecodePublicKey`): v1 base64 of one RSA public-key packet.
    ///
    /// The creation time and the RSA algorithm variant (1, 2 or 3) in the encoding are
    /// ignored, as snapd recreates the packet with algorithm 1 and the fixed time, so the key
    /// id only depends on (n, e).
    pub fn decode(text: &[u8]) -> Result<Self, PacketError> {
        const KIND: &str = "public key";
        let raw = decode_v1(text, KIND)?;
        let pkt = read_packet(&raw, KIND)?;
        if pkt.tag != 6 && pkt.tag != 14 {
            return Err(PacketError::WrongPacket(KIND, pkt.tag));
        }
        let mut r = pkt.reader();
        let bad = |m: &str| PacketError::Packet(KIND, m.to_owned());
        let head = r.take(6).ok_or_else(|| bad("unexpected EOF"))?;
        if head[0] != 4 {
            return Err(bad("unsupported feature: public key version"));
        }
        match head[5] {
            1..=3 => {}
            16..=19 => {
                return Err(PacketError::Packet(KIND, "expected RSA public key".into()));
            }
            other => {
                return Err(bad(&format!(
                    "unsupported feature: public key type: {other}"
                )));
            }
        }
        let n = r.mpi().ok_or_else(|| bad("unexpected EOF"))?;
        let e = r.mpi().ok_or_else(|| bad("unexpected EOF"))?;
        if e.len() > 3 {
            return Err(bad("unsupported feature: large public exponent"));
        }
        pkt.finish(r.pos, KIND)?;
        Ok(Self::new(n, e))
    }

    /// PKCS#1 `RSAPublicKey` DER (what aws-lc-rs takes as an RSA public key).
    pub fn pkcs1_der(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.n.len() + self.e.len() + 16);
        der_uint(&mut body, &self.n);
        der_uint(&mut body, &self.e);
        let mut out = Vec::with_capacity(body.len() + 5);
        out.push(0x30);
        der_len(&mut out, body.len());
        out.extend_from_slice(&body);
        out
    }
}

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn der_uint(out: &mut Vec<u8>, v: &[u8]) {
    let v = strip_leading_zeros(v);
    let pad = v.first().is_none_or(|&b| b & 0x80 != 0);
    out.push(0x02);
    der_len(out, v.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(v);
}

/// Decodes `encodeV1` text: standard base64 (ignoring `\n` and `\r`, as Go's decoder does),
/// then checks and strips the `0x01` format byte (`decodeV1`).
pub fn decode_v1(text: &[u8], kind: &'static str) -> Result<Vec<u8>, PacketError> {
    if text.is_empty() {
        return Err(PacketError::NoData(kind));
    }
    let flat: Vec<u8> = text
        .iter()
        .copied()
        .filter(|&c| c != b'\n' && c != b'\r')
        .collect();
    let raw = STANDARD
        .decode(&flat)
        .map_err(|_| PacketError::Base64(kind))?;
    match raw.split_first() {
        None => Err(PacketError::Empty(kind)),
        Some((&V1, rest)) => Ok(rest.to_vec()),
        Some((&v, _)) => Err(PacketError::Version(kind, v)),
    }
}

/// One packet read from a buffer holding exactly one packet (x/crypto `readHeader`).
struct RawPacket<'a> {
    tag: u8,
    /// The packet body as far as it is present (declared length capped at the data).
    body: &'a [u8],
    /// Bytes after the declared packet.
    after: usize,
}

/// Go wraps the packet body in a 4096-byte `bufio.Reader` (`peekVersion`), so bytes inside the
/// packet after what the parser needs are consumed in whole buffer fills.
const GO_BUFIO_SIZE: usize = 4096;

impl<'a> RawPacket<'a> {
    fn reader(&self) -> ByteReader<'a> {
        ByteReader {
            data: self.body,
            pos: 0,
        }
    }

    /// snapd's "spurious trailing data" check after the parser consumed `used` body bytes.
    fn finish(&self, used: usize, kind: &'static str) -> Result<(), PacketError> {
        let fills = used.div_ceil(GO_BUFIO_SIZE).max(1);
        let consumed = (fills * GO_BUFIO_SIZE).min(self.body.len());
        if self.after != 0 || consumed < self.body.len() {
            return Err(PacketError::TrailingData(kind));
        }
        Ok(())
    }
}

fn read_packet<'a>(data: &'a [u8], kind: &'static str) -> Result<RawPacket<'a>, PacketError> {
    let bad = |m: &str| PacketError::Packet(kind, m.to_owned());
    let eof = || bad("unexpected EOF");
    let (&first, rest) = data.split_first().ok_or_else(|| bad("EOF"))?;
    if first & 0x80 == 0 {
        return Err(bad("invalid data: tag byte does not have MSB set"));
    }
    let (tag, len, hdr): (u8, Option<usize>, usize) = if first & 0x40 == 0 {
        let tag = (first & 0x3f) >> 2;
        match first & 3 {
            3 => (tag, None, 1),
            lt => {
                let n = 1usize << lt;
                let b = rest.get(..n).ok_or_else(eof)?;
                let len = b.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x));
                (tag, Some(len), 1 + n)
            }
        }
    } else {
        let tag = first & 0x3f;
        let l0 = *rest.first().ok_or_else(eof)?;
        match l0 {
            0..=191 => (tag, Some(usize::from(l0)), 2),
            192..=223 => {
                let l1 = *rest.get(1).ok_or_else(eof)?;
                (
                    tag,
                    Some((usize::from(l0 - 192) << 8) + usize::from(l1) + 192),
                    3,
                )
            }
            224..=254 => return Err(bad("unsupported feature: partial body lengths")),
            255 => {
                let b = rest.get(1..5).ok_or_else(eof)?;
                let len = b.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x));
                (tag, Some(len), 6)
            }
        }
    };
    let avail = &data[hdr..];
    let (body, after) = match len {
        None => (avail, 0),
        Some(l) if l <= avail.len() => (&avail[..l], avail.len() - l),
        Some(_) => (avail, 0),
    };
    Ok(RawPacket { tag, body, after })
}

/// A cursor over packet bytes; `None` means Go's `io.ErrUnexpectedEOF`.
struct ByteReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// x/crypto `readMPI`: bit count, then `ceil(bits/8)` bytes, leading zeros kept.
    fn mpi(&mut self) -> Option<&'a [u8]> {
        let bits = usize::from(self.u16()?);
        self.take(bits.div_ceil(8))
    }
}

/// Public-key algorithm 1: RSA (encrypt or sign), the only one snapd keys use.
pub const PUBKEY_ALGO_RSA: u8 = 1;
/// Hash algorithm 10: SHA-512.
pub const HASH_SHA512: u8 = 10;
/// The DER prefix of a SHA-512 `DigestInfo` (RFC 8017 9.2 note 1).
pub const SHA512_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

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
        let mut ctx = digest::Context::new(dalg);
        ctx.update(content);
        ctx.update(&self.hash_suffix);
        let d = ctx.finish();
        if d.as_ref()[..2] != self.hash_tag {
            return Err(VerifyError::HashTag);
        }
        if self.pubkey_algo != PUBKEY_ALGO_RSA {
            return Err(VerifyError::Algorithm);
        }
        rsa_verify_digest(public, valg, &d, &self.rsa_sig)
    }
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
    let (prefix, hash) = digest_info.split_at(SHA512_DIGEST_INFO_PREFIX.len());
    if prefix != SHA512_DIGEST_INFO_PREFIX {
        return Err(VerifyError::DigestInfo);
    }
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
    let mut ctx = digest::Context::new(&digest::SHA512);
    ctx.update(content);
    ctx.update(&packet.hash_suffix);
    let d = ctx.finish();
    if d.as_ref()[..2] != packet.hash_tag {
        return Err(VerifyError::HashTag);
    }
    let (prefix, hash) = digest_info.split_at(SHA512_DIGEST_INFO_PREFIX.len());
    if prefix != SHA512_DIGEST_INFO_PREFIX {
        return Err(VerifyError::DigestInfo);
    }
    if hash != d.as_ref() {
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

/// What to sign for one assertion (PROTOCOL.md 2.4): the digest of
/// `CONTENT || sig_hdr || trailer` with snapd's fixed signature header.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningInput {
    digest_info: [u8; 83],
    hashed_header: [u8; 12],
    created: u32,
}

impl std::fmt::Debug for SigningInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningInput")
            .field("created", &self.created)
            .field("digest", &hex(self.digest()))
            .finish()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The 18 bytes hashed after the content for a signature made at `created`
/// (`04 00 01 0A 00 06 05 02 TT TT TT TT 04 FF 00 00 00 0C`).
pub fn hash_suffix(created: u32) -> [u8; 18] {
    let mut s = [0u8; 18];
    s[..12].copy_from_slice(&hashed_header(created));
    s[12..].copy_from_slice(&[0x04, 0xFF, 0, 0, 0, 12]);
    s
}

fn hashed_header(created: u32) -> [u8; 12] {
    let t = created.to_be_bytes();
    [
        4,
        0,
        PUBKEY_ALGO_RSA,
        HASH_SHA512,
        0,
        6,
        5,
        2,
        t[0],
        t[1],
        t[2],
        t[3],
    ]
}

/// Wraps a SHA-512 digest as the 83-byte DigestInfo that CKM_RSA_PKCS signs.
pub fn digest_info(sha512: &[u8; 64]) -> [u8; 83] {
    let mut out = [0u8; 83];
    out[..19].copy_from_slice(&SHA512_DIGEST_INFO_PREFIX);
    out[19..].copy_from_slice(sha512);
    out
}

/// Computes the signing input for `content` signed at `created` (unix seconds).
pub fn signing_input(content: &[u8], created: u32) -> SigningInput {
    let mut ctx = digest::Context::new(&digest::SHA512);
    ctx.update(content);
    ctx.update(&hash_suffix(created));
    let d = ctx.finish();
    SigningInput {
        digest_info: digest_info(d.as_ref().try_into().expect("SHA-512 is 64 bytes")),
        hashed_header: hashed_header(created),
        created,
    }
}

impl SigningInput {
    /// The 83-byte DER `DigestInfo` to sign with `CKM_RSA_PKCS`.
    pub fn digest_info(&self) -> &[u8; 83] {
        &self.digest_info
    }

    /// The 64-byte SHA-512 digest.
    pub fn digest(&self) -> &[u8] {
        &self.digest_info[19..]
    }

    /// The two-byte hash tag carried in the packet.
    pub fn hash_tag(&self) -> [u8; 2] {
        [self.digest_info[19], self.digest_info[20]]
    }

    /// The 12 hashed header bytes (packet bytes 3..15).
    pub fn hashed_header(&self) -> &[u8; 12] {
        &self.hashed_header
    }

    /// The signature creation time (unix seconds).
    pub fn created(&self) -> u32 {
        self.created
    }

    /// The full signature packet around `rsa_sig` (new-format header, Go-style MPI: bit count
    /// `8 * len`, leading zero bytes kept), as x/crypto `Signature.Serialize` writes it.
    pub fn signature_packet(&self, rsa_sig: &[u8]) -> Vec<u8> {
        let mut body = Vec::with_capacity(rsa_sig.len() + 20);
        body.extend_from_slice(&self.hashed_header);
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&self.hash_tag());
        body.extend_from_slice(&((rsa_sig.len() * 8) as u16).to_be_bytes());
        body.extend_from_slice(rsa_sig);
        let mut packet = Vec::with_capacity(body.len() + 6);
        write_packet_header(&mut packet, 2, body.len());
        packet.extend_from_slice(&body);
        packet
    }

    /// The encoded signature block (`encodeV1` of the packet; no trailing newline).
    pub fn encode_signature(&self, rsa_sig: &[u8]) -> String {
        encode_v1(&self.signature_packet(rsa_sig))
    }
}

/// `encodeV1`: padded base64 of `0x01 || packet`, wrapped at 76 columns.
pub fn encode_v1(packet: &[u8]) -> String {
    let mut raw = Vec::with_capacity(packet.len() + 1);
    raw.push(V1);
    raw.extend_from_slice(packet);
    wrap76(&STANDARD.encode(raw))
}

/// Wraps base64 text at 76 columns with `\n`, without a trailing newline (snapd `encodeV1`).
pub fn wrap76(b64: &str) -> String {
    let mut out = String::with_capacity(b64.len() + b64.len() / 76 + 1);
    for (i, chunk) in b64.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // base64 output is ASCII, so every chunk boundary is a char boundary.
        out.extend(chunk.iter().map(|&b| char::from(b)));
    }
    out
}

/// Writes a new-format OpenPGP packet header (x/crypto `serializeHeader`).
pub fn write_packet_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(0xC0 | tag);
    if len < 192 {
        out.push(len as u8);
    } else if len < 8384 {
        let l = len - 192;
        out.push(((l >> 8) + 192) as u8);
        out.push((l & 0xFF) as u8);
    } else {
        out.push(0xFF);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// Writes a canonical MPI: exact bit count, then the bytes without leading zeros.
fn write_mpi(out: &mut Vec<u8>, v: &[u8]) {
    let v = strip_leading_zeros(v);
    out.extend_from_slice(&(mpi_bits(v) as u16).to_be_bytes());
    out.extend_from_slice(v);
}

fn strip_leading_zeros(v: &[u8]) -> &[u8] {
    let first = v.iter().position(|&b| b != 0).unwrap_or(v.len());
    &v[first..]
}

fn mpi_bits(v: &[u8]) -> usize {
    let v = strip_leading_zeros(v);
    match v.first() {
        None => 0,
        Some(&b) => (v.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_header_lengths_follow_go() {
        let mut out = Vec::new();
        write_packet_header(&mut out, 6, 525);
        assert_eq!(out, [0xC6, 0xC1, 0x4D]);
        out.clear();
        write_packet_header(&mut out, 2, 530);
        assert_eq!(out, [0xC2, 0xC1, 0x52]);
        out.clear();
        write_packet_header(&mut out, 6, 100);
        assert_eq!(out, [0xC6, 100]);
        out.clear();
        write_packet_header(&mut out, 6, 9000);
        assert_eq!(out, [0xC6, 0xFF, 0, 0, 0x23, 0x28]);
    }

    #[test]
    fn mpi_bit_counts() {
        assert_eq!(mpi_bits(&[0x01, 0x00, 0x01]), 17);
        assert_eq!(mpi_bits(&[0x00, 0x80]), 8);
        assert_eq!(mpi_bits(&[]), 0);
    }

    #[test]
    fn wraps_at_76_without_trailing_newline() {
        let s = "A".repeat(160);
        let w = wrap76(&s);
        let lines: Vec<_> = w.split('\n').collect();
        assert_eq!(
            lines.iter().map(|l| l.len()).collect::<Vec<_>>(),
            [76, 76, 8]
        );
    }
}
