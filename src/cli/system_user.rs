//! `create system-user` and `list system-users`: a `system-user` assertion signed on the HSM
//! by the admin API (`POST /v1/system-users`), printed (or written with `--output`, mode 0600)
//! as the stream snapd's auto-import reads from a USB stick (`auto-import.assert`): the
//! brand's account, the key's account-key, then the system-user.
//!
//! The password is read from a file (or stdin), never from the command line (where `ps` and
//! shell history would keep it), sent over the admin connection once and wiped after.

use std::io::Write;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Error;
use super::client::Client;
use super::model_sign::read_text;
use super::output::{print_json, print_rows, short_time, write_out};
use crate::admin_api::wire::{CreateSystemUser, List, SystemUserRecordView, SystemUserView};

/// `serialmint create system-user`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The model whose devices accept the user (a model assertion signed here with `sign
    /// model`).
    #[arg(long)]
    pub model: String,
    /// The model's brand, when another brand signs (an ODM listed in the model's
    /// `system-user-authority`); default: the signing brand.
    #[arg(long)]
    pub model_brand: Option<String>,
    /// The user's email (`email`).
    #[arg(long)]
    pub email: String,
    /// The login name (`username`).
    #[arg(long)]
    pub username: String,
    /// The user's full name (`name`).
    #[arg(long)]
    pub name: Option<String>,
    /// A file whose first line is the password (`-` for stdin); hashed by the server with
    /// SHA-512 crypt, never stored.
    #[arg(long, required_unless_present = "ssh_key_file")]
    pub password_file: Option<PathBuf>,
    /// A file of ssh public keys, one per line (repeatable).
    #[arg(long)]
    pub ssh_key_file: Vec<PathBuf>,
    /// Make the user change the password at first login.
    #[arg(long, requires = "password_file")]
    pub force_password_change: bool,
    /// Only devices with these serials (comma-separated); the assertion is then format 1.
    #[arg(long, value_delimiter = ',')]
    pub serials: Vec<String>,
    /// Valid from (RFC 3339; default: now).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<OffsetDateTime>,
    /// Valid until (RFC 3339; default: a year after --since).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<OffsetDateTime>,
    /// The signing key's name or SHA3-384 id (default: the brand's only key that may sign
    /// it); ids may start with `-`.
    #[arg(long, allow_hyphen_values = true)]
    pub key: Option<String>,
    /// Write the assertion stream to this file (created mode 0600) instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Print {"brand-id", "model-brand-id", "model", "username", "email", "serials",
    /// "since", "until", "key", "key-name", "assertions"}.
    #[arg(long)]
    pub json: bool,
}

/// `serialmint list system-users`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print a JSON list.
    #[arg(long)]
    pub json: bool,
}

fn parse_time(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(s, &Rfc3339)
}

/// The password: the first line of `file`, without its line end.
fn read_password(file: &Path) -> Result<zeroize::Zeroizing<String>, Error> {
    let (what, text) = read_text(file)?;
    let text = zeroize::Zeroizing::new(text);
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(Error::Input {
            what,
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the first line (the password) is empty",
            ),
        });
    }
    Ok(zeroize::Zeroizing::new(line.to_owned()))
}

/// The ssh keys of `files`: every non-empty line that is not a comment.
fn read_ssh_keys(files: &[PathBuf]) -> Result<Vec<String>, Error> {
    let mut keys = Vec::new();
    for f in files {
        let (_, text) = read_text(f)?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    Ok(keys)
}

/// Writes `text` to a new file `path`, readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| Error::Asset {
            path: path.to_owned(),
            source,
        })
}

/// `create system-user`.
pub async fn create(client: &Client, a: CreateArgs) -> Result<(), Error> {
    let password = a.password_file.as_deref().map(read_password).transpose()?;
    let request = CreateSystemUser {
        model: a.model,
        model_brand_id: a.model_brand,
        email: a.email,
        username: a.username,
        name: a.name,
        password,
        ssh_keys: read_ssh_keys(&a.ssh_key_file)?,
        serials: a.serials,
        since: a.since,
        until: a.until,
        force_password_change: a.force_password_change,
        key: a.key,
        brand_id: client.brand().map(str::to_string),
    };
    let issued: SystemUserView = client.post("/v1/system-users", &request).await?;
    if let Some(path) = &a.output {
        write_private(path, &issued.assertions)?;
    }
    if a.json {
        print_json(&issued)
    } else if a.output.is_none() {
        write_out(format_args!("{}", issued.assertions))
    } else {
        Ok(())
    }
}

/// `list system-users`.
pub async fn list(client: &Client, a: ListArgs) -> Result<(), Error> {
    let list: List<SystemUserRecordView> = client.get("/v1/system-users").await?;
    print_rows(
        &list.items,
        a.json,
        |r| r,
        &[
            "Model",
            "Username",
            "Serials",
            "Until",
            "Signed by",
            "Issued by",
            "Issued",
        ],
        |r| {
            vec![
                format!("{}/{}", r.model_brand_id, r.model),
                r.username.clone(),
                if r.serials.is_empty() {
                    "*".into()
                } else {
                    r.serials.join(",")
                },
                short_time(Some(r.until)),
                r.brand_id.clone(),
                r.issued_by.clone(),
                short_time(Some(r.issued_at)),
            ]
        },
        "No system users issued.",
    )
}
