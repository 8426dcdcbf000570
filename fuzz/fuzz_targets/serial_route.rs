//! Fuzz the serial route end to end with an in-memory signer (see `harness/serial_route.rs`).
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::serial_route::SerialRoute::shared().run(data);
});
