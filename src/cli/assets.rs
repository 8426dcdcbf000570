//! `serialmint generate-assets DIR` (hidden; for `scripts/package`): shell completions (bash,
//! zsh, fish) and man pages, one per command, generated from the clap definitions so they
//! never drift from the binary.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, Error};

/// Writes `dir/completions/{serialmint.bash,_serialmint,serialmint.fish}` and
/// `dir/man/serialmint*.1`.
pub fn generate(dir: &Path) -> Result<(), Error> {
    let completions = dir.join("completions");
    let man = dir.join("man");
    for d in [&completions, &man] {
        std::fs::create_dir_all(d).map_err(|source| Error::Asset {
            path: d.clone(),
            source,
        })?;
    }
    for (shell, name) in [
        (Shell::Bash, "serialmint.bash"),
        (Shell::Zsh, "_serialmint"),
        (Shell::Fish, "serialmint.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "serialmint", &mut buf);
        write(&completions.join(name), &buf)?;
    }
    let mut cmd = Cli::command();
    cmd.build();
    man_pages(&cmd, &man)
}

/// The page of `cmd` and of each visible subcommand, recursively, each named by its display
/// name (`serialmint-create-key`, set by clap when the command is built).
fn man_pages(cmd: &clap::Command, dir: &Path) -> Result<(), Error> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .map_err(|source| Error::Asset {
            path: path.clone(),
            source,
        })?;
    write(&path, &buf)?;
    for sub in cmd.get_subcommands() {
        if !sub.is_hide_set() && sub.get_name() != "help" {
            man_pages(sub, dir)?;
        }
    }
    Ok(())
}

fn write(path: &PathBuf, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|source| Error::Asset {
        path: path.clone(),
        source,
    })
}
