//! What to sign for one assertion (PROTOCOL.md 2.4): the SHA-512 digest of the content and
//! snapd's fixed signature header, wrapped as the DigestInfo `CKM_RSA_PKCS` signs, and the
//! signature packet built around the token's raw RSA signature.

use aws_lc_rs::digest;

use super::packet::{HASH_SHA512, PUBKEY_ALGO_RSA, encode_v1, write_packet_header};

/// The DER prefix of a SHA-512 `DigestInfo` (RFC 8017 9.2 note 1).
pub const SHA512_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

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
