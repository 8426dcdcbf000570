//! `sign model FILE`: a model statement (headers as `snap sign` takes them, in JSON or YAML)
//! signed on the HSM by the admin API (`POST /v1/model-assertions`), printed as the
//! assertion snapd reads (or, with `--json`, the server's answer).

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::Error;
use super::client::Client;
use super::output::{print_json, write_out};
use crate::admin_api::wire::{SignModel, SignedModelView};

/// `serialmint sign ...`
#[derive(Debug, Subcommand)]
pub enum Sign {
    /// Sign a model assertion with a brand key on the HSM, from a statement in JSON or YAML
    /// (headers as `snap sign` takes them; `timestamp`, `authority-id` and `brand-id` are
    /// filled when absent), after checking it as snapd decodes models; prints the assertion.
    Model {
        /// The statement (`-` for stdin).
        file: PathBuf,
        /// The key's name or SHA3-384 id (default: the brand's only key that may sign it);
        /// ids may start with `-`.
        #[arg(long, allow_hyphen_values = true)]
        key: Option<String>,
        /// Print {"brand-id", "model", "revision", "timestamp", "key", "key-name",
        /// "assertion"}.
        #[arg(long)]
        json: bool,
    },
}

/// A text file (`-`: stdin) and its name for messages.
pub(super) fn read_text(file: &Path) -> Result<(String, String), Error> {
    let stdin = file.as_os_str() == "-";
    let what = if stdin {
        "stdin".to_string()
    } else {
        file.display().to_string()
    };
    let bytes = if stdin {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
    } else {
        std::fs::read(file)
    }
    .map_err(|source| Error::Input {
        what: what.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| Error::Input {
        what: what.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })?;
    Ok((what, text))
}

/// Sends the statement in `file` to be signed with `key` and prints the signed model.
pub async fn model(
    client: &Client,
    file: &Path,
    key: Option<String>,
    as_json: bool,
) -> Result<(), Error> {
    let (_, statement) = read_text(file)?;
    let request = SignModel {
        statement,
        key,
        brand_id: client.brand().map(str::to_string),
    };
    let signed: SignedModelView = client.post("/v1/model-assertions", &request).await?;
    if as_json {
        print_json(&signed)
    } else {
        write_out(format_args!("{}", signed.assertion))
    }
}
