//! The `serialmint` binary: parse the command line, run the command.

use clap::Parser;

fn main() -> std::process::ExitCode {
    serialmint::cli::run(serialmint::cli::Cli::parse())
}
