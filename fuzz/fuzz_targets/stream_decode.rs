//! Fuzz the assertion stream decoder and the single decoder: they must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serialmint::assertion::{Decoder, decode};

fuzz_target!(|data: &[u8]| {
    for a in Decoder::new(data).flatten() {
        let _ = a.encode();
    }
    let _ = decode(data);
});
