//! serialmint-loadtest: plays a factory line of snapd devices against a running serialmint.
//!
//! The factory-line phases (device keys, request-ids, timed serial posts, verification) land
//! with the load-test issue; until then this binary only parses its arguments.

use clap::Parser;

/// Command-line arguments of the load generator.
#[derive(Debug, Parser)]
#[command(name = "serialmint-loadtest", version, about)]
struct Args {
    /// Base URL of the device listener.
    #[arg(long, default_value = "http://127.0.0.1:8080/v1/")]
    url: String,
}

fn main() {
    let args = Args::parse();
    eprintln!(
        "serialmint-loadtest: target {} (load phases not built yet)",
        args.url
    );
    std::process::exit(2);
}
