//! Fuzz the assertion stream decoder and the single decoder.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::codec::stream_decode(data));
