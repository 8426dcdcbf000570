//! Fuzz the OpenPGP public-key and signature packet parsers (v1 text and raw).
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::codec::openpgp_packets(data));
