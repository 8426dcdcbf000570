//! The v4 RSA public-key packet snapd writes for every key, the SHA3-384 key id, and the
//! PKCS#1 DER form aws-lc-rs verifies with.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha3::{Digest, Sha3_384};

use super::packet::{
    V1, decode_v1, mpi_bits, read_packet, strip_leading_zeros, wrap76, write_mpi,
    write_packet_header,
};
use crate::assertion::error::PacketError;

/// snapd's fixed key creation time, 2016-01-01T00:00:00Z (`v1FixedTimestamp`).
pub const FIXED_KEY_CREATION_TIME: u32 = 1_451_606_400;

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
