//! The codec targets: the assertion stream decoder, the header parser and the OpenPGP packet
//! parsers. Each must never panic, and what it accepts must survive a re-encode.

use serialmint::assertion::headers::{HeaderValue, parse_headers, write_header};
use serialmint::assertion::openpgp::encode_v1;
use serialmint::assertion::{Decoder, RsaPublicKey, SignaturePacket, decode};

/// The stream decoder and the single decoder: no panics; anything decoded re-encodes.
pub fn stream_decode(data: &[u8]) {
    for a in Decoder::new(data).flatten() {
        let _ = a.encode();
    }
    let _ = decode(data);
}

fn droppable(v: &HeaderValue) -> bool {
    match v {
        HeaderValue::String(_) => false,
        HeaderValue::List(l) => l.is_empty() || l.iter().any(droppable),
        HeaderValue::Map(m) => m.is_empty() || m.values().any(droppable),
    }
}

/// The header parser: anything it accepts re-emits and re-parses to the same value.
pub fn headers(data: &[u8]) {
    if let Ok(h) = parse_headers(data) {
        if h.values().any(droppable) {
            return; // empty lists/maps are omitted by the encoder, as in snapd
        }
        let mut out = String::new();
        for (k, v) in &h {
            write_header(&mut out, k, v);
        }
        let again = parse_headers(&out.as_bytes()[1..]).expect("re-emitted headers parse");
        assert_eq!(again, h);
    }
}

/// The OpenPGP public-key and signature packet parsers (v1 text and raw packets): no
/// panics; a decoded public key re-encodes to itself.
pub fn openpgp_packets(data: &[u8]) {
    let _ = SignaturePacket::decode(data);
    let _ = RsaPublicKey::decode(data);
    let text = encode_v1(data);
    let _ = SignaturePacket::decode(text.as_bytes());
    if let Ok(k) = RsaPublicKey::decode(text.as_bytes()) {
        assert_eq!(RsaPublicKey::decode(k.encode().as_bytes()).ok(), Some(k));
    }
}
