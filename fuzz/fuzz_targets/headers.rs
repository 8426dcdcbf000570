//! Fuzz the header parser; anything it accepts must re-emit and re-parse to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serialmint::assertion::headers::{HeaderValue, parse_headers, write_header};

fn droppable(v: &HeaderValue) -> bool {
    match v {
        HeaderValue::String(_) => false,
        HeaderValue::List(l) => l.is_empty() || l.iter().any(droppable),
        HeaderValue::Map(m) => m.is_empty() || m.values().any(droppable),
    }
}

fuzz_target!(|data: &[u8]| {
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
});
