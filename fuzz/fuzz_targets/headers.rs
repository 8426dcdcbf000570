//! Fuzz the header parser: what it accepts re-emits and re-parses to the same value.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::codec::headers(data));
