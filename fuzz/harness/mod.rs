//! What the fuzz targets check, shared with the test suite.
//!
//! Each `fuzz_targets/*.rs` is one line over a function here, and `tests/fuzz_inputs.rs`
//! includes this module (`#[path]`) to run the committed seeds (`fuzz/seeds/TARGET/`) and every
//! input that once crashed a target (`fuzz/regressions/TARGET/`) through the same functions
//! in an ordinary `cargo nextest` run, without cargo-fuzz or a nightly feature.

#![allow(dead_code)]

pub mod codec;
pub mod serial_route;
mod soft_rsa;

/// The fuzz targets, as named in `fuzz/Cargo.toml`.
pub const TARGETS: [&str; 4] = [
    "stream_decode",
    "headers",
    "openpgp_packets",
    "serial_route",
];

/// Runs one input through `target`'s checks (panics when one fails, as the target does).
pub fn run(target: &str, data: &[u8]) {
    match target {
        "stream_decode" => codec::stream_decode(data),
        "headers" => codec::headers(data),
        "openpgp_packets" => codec::openpgp_packets(data),
        "serial_route" => {
            serial_route::SerialRoute::shared().run(data);
        }
        _ => panic!("no fuzz target {target}"),
    }
}
