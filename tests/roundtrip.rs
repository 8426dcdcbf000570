//! Property tests: header encode/decode round trips, packet round trips, and decoders never
//! panic on arbitrary input.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serialmint::assertion::headers::{parse_headers, write_header};
use serialmint::assertion::openpgp::signing_input;
use serialmint::assertion::{Decoder, HeaderValue, Headers, RsaPublicKey, SignaturePacket, decode};

fn name() -> impl Strategy<Value = String> {
    "[a-z](-?[a-z0-9]){0,8}"
}

fn value() -> impl Strategy<Value = HeaderValue> {
    // strings: no '\n'-only issues; any printable text incl. newlines and spaces
    let leaf = "[ -~\n]{0,20}".prop_map(HeaderValue::String);
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(HeaderValue::List),
            prop::collection::btree_map(name(), inner, 1..4)
                .prop_map(|m: BTreeMap<_, _>| HeaderValue::Map(m)),
        ]
    })
}

proptest! {
    #[test]
    fn headers_round_trip(h in prop::collection::btree_map(name(), value(), 1..6)) {
        let mut text = String::new();
        for (k, v) in &h {
            write_header(&mut text, k, v);
        }
        let parsed: Headers = parse_headers(&text.as_bytes()[1..]).unwrap();
        prop_assert_eq!(parsed, h);
    }

    #[test]
    fn public_key_round_trip(n in prop::collection::vec(any::<u8>(), 1..600), e in prop::collection::vec(any::<u8>(), 1..4)) {
        prop_assume!(n.iter().any(|&b| b != 0));
        let k = RsaPublicKey::new(&n, &e);
        let back = RsaPublicKey::decode(k.encode().as_bytes()).unwrap();
        prop_assert_eq!(back.key_id(), k.key_id());
        prop_assert_eq!(back, k);
    }

    #[test]
    fn signature_packet_round_trip(content in prop::collection::vec(any::<u8>(), 0..200), created in any::<u32>(), sig in prop::collection::vec(any::<u8>(), 1..600)) {
        let input = signing_input(&content, created);
        let text = input.encode_signature(&sig);
        let p = SignaturePacket::decode(text.as_bytes()).unwrap();
        prop_assert_eq!(p.created, created);
        prop_assert_eq!(p.hash_tag, input.hash_tag());
        prop_assert_eq!(p.rsa_sig, sig);
        prop_assert_eq!(&p.hash_suffix[..12], &input.hashed_header()[..]);
    }

    #[test]
    fn decoders_never_panic(data in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode(&data);
        for _ in Decoder::new(&data) {}
        let _ = SignaturePacket::decode(&data);
        let _ = RsaPublicKey::decode(&data);
    }

    #[test]
    fn text_like_streams_never_panic(s in "(type: (serial|account|model)\n|body-length: [0-9]{1,2}\n|sign-key-sha3-384: [A-Za-z0-9_-]{64}\n|authority-id: x\n|[a-z]+:\n    [a-z]+\n|\n|AcL[A-Za-z0-9+/=]{4,20}\n){0,12}") {
        for _ in Decoder::new(s.as_bytes()) {}
        let _ = decode(s.as_bytes());
    }
}
