//! OpenPGP framing as x/crypto reads and writes it: packet headers, MPIs, and snapd's `encodeV1`
//! text form (`0x01` format byte, padded base64, 76 columns).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::assertion::error::PacketError;

/// The format byte that prefixes every encoded key and signature (`encodeV1`).
pub const V1: u8 = 0x01;

/// Public-key algorithm 1: RSA (encrypt or sign), the only one snapd keys use.
pub const PUBKEY_ALGO_RSA: u8 = 1;
/// Hash algorithm 10: SHA-512.
pub const HASH_SHA512: u8 = 10;

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

/// One packet read from a buffer holding exactly one packet (x/crypto `readHeader`).
pub(super) struct RawPacket<'a> {
    pub(super) tag: u8,
    /// The packet body as far as it is present (declared length capped at the data).
    pub(super) body: &'a [u8],
    /// Bytes after the declared packet.
    after: usize,
}

/// Go wraps the packet body in a 4096-byte `bufio.Reader` (`peekVersion`), so bytes inside the
/// packet after what the parser needs are consumed in whole buffer fills.
const GO_BUFIO_SIZE: usize = 4096;

impl<'a> RawPacket<'a> {
    pub(super) fn reader(&self) -> ByteReader<'a> {
        ByteReader {
            data: self.body,
            pos: 0,
        }
    }

    /// How many bytes follow the packet in the buffer it was read from.
    pub(super) fn after_len(&self) -> usize {
        self.after
    }

    /// snapd's "spurious trailing data" check after the parser consumed `used` body bytes.
    pub(super) fn finish(&self, used: usize, kind: &'static str) -> Result<(), PacketError> {
        let fills = used.div_ceil(GO_BUFIO_SIZE).max(1);
        let consumed = (fills * GO_BUFIO_SIZE).min(self.body.len());
        if self.after != 0 || consumed < self.body.len() {
            return Err(PacketError::TrailingData(kind));
        }
        Ok(())
    }
}

pub(super) fn read_packet<'a>(
    data: &'a [u8],
    kind: &'static str,
) -> Result<RawPacket<'a>, PacketError> {
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
pub(super) struct ByteReader<'a> {
    data: &'a [u8],
    /// Bytes consumed so far.
    pub(super) pos: usize,
}

impl<'a> ByteReader<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        ByteReader { data, pos: 0 }
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// x/crypto `readMPI`: bit count, then `ceil(bits/8)` bytes, leading zeros kept.
    pub(super) fn mpi(&mut self) -> Option<&'a [u8]> {
        let bits = usize::from(self.u16()?);
        self.take(bits.div_ceil(8))
    }
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
pub(super) fn write_mpi(out: &mut Vec<u8>, v: &[u8]) {
    let v = strip_leading_zeros(v);
    out.extend_from_slice(&(mpi_bits(v) as u16).to_be_bytes());
    out.extend_from_slice(v);
}

pub(super) fn strip_leading_zeros(v: &[u8]) -> &[u8] {
    let first = v.iter().position(|&b| b != 0).unwrap_or(v.len());
    &v[first..]
}

pub(super) fn mpi_bits(v: &[u8]) -> usize {
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
