//! OpenPGP v4 RSA public-key packets and snapd key ids (snapd `asserts/crypto.go`).
//!
//! snapd encodes every public key as a v4 RSA public-key packet with the fixed creation time
//! 2016-01-01T00:00:00Z (`v1FixedTimestamp`) and algorithm 1, prefixes it with the format byte
//! `0x01`, and names the key by SHA3-384 of those bytes in unpadded base64url.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha3::{Digest, Sha3_384};

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
}

/// Wraps base64 text at 76 columns with `\n`, without a trailing newline (snapd `encodeV1`).
pub fn wrap76(b64: &str) -> String {
    let mut out = String::with_capacity(b64.len() + b64.len() / 76 + 1);
    for (i, chunk) in b64.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // base64 output is ASCII, so every chunk boundary is a char boundary.
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
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
