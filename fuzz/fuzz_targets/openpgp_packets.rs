//! Fuzz the OpenPGP public-key and signature packet parsers (v1 text and raw packets).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serialmint::assertion::openpgp::encode_v1;
use serialmint::assertion::{RsaPublicKey, SignaturePacket};

fuzz_target!(|data: &[u8]| {
    let _ = SignaturePacket::decode(data);
    let _ = RsaPublicKey::decode(data);
    let text = encode_v1(data);
    let _ = SignaturePacket::decode(text.as_bytes());
    if let Ok(k) = RsaPublicKey::decode(text.as_bytes()) {
        assert_eq!(RsaPublicKey::decode(k.encode().as_bytes()).ok(), Some(k));
    }
});
