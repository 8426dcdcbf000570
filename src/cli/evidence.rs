//! The tamper-evident log's verbs: `export checkpoints` and `export audit-key` (through the
//! admin API), and `verify-log` (offline: no database, no HSM).

use std::path::Path;

use super::Error;
use super::client::{Client, path_segment};
use super::output::outln;
use crate::admin_api::wire::{CheckpointList, IssuanceView, KeyView, List};
use crate::assertion::RsaPublicKey;
use crate::domain::{Issuance, KeyPurpose, KeyStatus};
use crate::evidence::chain::{Chain, parse_hex, signing_row_bytes};
use crate::evidence::checkpoint::{public_key_pem, read_checkpoints, read_public_key_pem};
use crate::evidence::verify::{Entry, Report, verify};

/// Prints every checkpoint, one JSON object per line.
pub async fn export_checkpoints(client: &Client) -> Result<(), Error> {
    let list: CheckpointList = client.get("/v1/checkpoints").await?;
    for cp in &list.items {
        let line = serde_json::to_string(cp).map_err(|e| Error::Evidence(e.to_string()))?;
        outln!("{line}")?;
    }
    Ok(())
}

/// Prints the audit key's public key as PEM: the named key, or the newest ready, active one.
pub async fn export_audit_key(client: &Client, key: Option<&str>) -> Result<(), Error> {
    let key: KeyView = match key {
        Some(k) => {
            let k: KeyView = client.get(&format!("/v1/keys/{}", path_segment(k))).await?;
            if k.purpose != KeyPurpose::Audit {
                return Err(Error::Evidence(format!(
                    "key {:?} is not an audit key",
                    k.name
                )));
            }
            k
        }
        None => {
            let keys: List<KeyView> = client.get("/v1/keys").await?;
            keys.items
                .into_iter()
                .filter(|k| k.purpose == KeyPurpose::Audit && k.active)
                .filter(|k| k.status == KeyStatus::Ready)
                .max_by_key(|k| k.created_at)
                .ok_or(Error::NoAuditKey)?
        }
    };
    let encoded = key.public_key.ok_or(Error::NoAuditKey)?;
    let public = RsaPublicKey::decode(encoded.as_bytes())
        .map_err(|e| Error::Evidence(format!("audit key {:?}: {e}", key.name)))?;
    outln!("{}", public_key_pem(&public).trim_end())
}

fn read(path: &Path) -> Result<String, Error> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    text.map_err(|e| Error::Evidence(format!("cannot read {}: {e}", path.display())))
}

/// A JSON export row as the chain hashes it.
fn entry(row: IssuanceView) -> Result<Entry, Error> {
    let label = format!(
        "serial {} of {}/{}, id {}",
        row.serial, row.brand_id, row.model, row.id
    );
    let hash =
        match &row.chain_hash {
            Some(h) => Some(parse_hex(h).ok_or_else(|| {
                Error::Evidence(format!("{label}: chain-hash is not 64 hex digits"))
            })?),
            None => None,
        };
    if row.chain_seq.is_some() && (row.model_id.is_none() || row.serial_assertion.is_none()) {
        return Err(Error::Evidence(format!(
            "{label}: the export lacks model-id or serial-assertion; use `serialmint export \
             signing-log --json`"
        )));
    }
    let issued_at = row.issued_at;
    let issuance = Issuance {
        brand_id: row.brand_id,
        model_id: row.model_id.unwrap_or_default(),
        model_name: row.model,
        serial: row.serial,
        revision: row.revision,
        device_key_id: row.device_key,
        request_id: row.request_id,
        signing_key_id: row.signing_key,
        instance: row.instance,
        serial_assertion: row.serial_assertion.unwrap_or_default(),
        original_serial: row.original_serial,
        original_serial_id: None,
    };
    Ok(Entry {
        seq: row.chain_seq,
        hash,
        label,
        bytes_at: Box::new(move |seq| signing_row_bytes(seq, issued_at, &issuance)),
    })
}

/// Verifies the signing log's export `export` against the audit key (PEM) and the
/// checkpoints in `checkpoint_files`, all offline.
pub fn verify_files(
    export: &Path,
    audit_key: &Path,
    checkpoint_files: &[std::path::PathBuf],
) -> Result<Report, Error> {
    let rows: Vec<IssuanceView> = serde_json::from_str(&read(export)?).map_err(|e| {
        Error::Evidence(format!(
            "{} is not a JSON signing-log export (`serialmint export signing-log --json`): {e}",
            export.display()
        ))
    })?;
    let entries = rows.into_iter().map(entry).collect::<Result<Vec<_>, _>>()?;
    let key = read_public_key_pem(&read(audit_key)?)
        .map_err(|e| Error::Evidence(format!("{}: {e}", audit_key.display())))?;
    let mut checkpoints = Vec::new();
    for f in checkpoint_files {
        let found = read_checkpoints(&read(f)?)
            .map_err(|e| Error::Evidence(format!("{}: {e}", f.display())))?;
        checkpoints.extend(
            found
                .into_iter()
                .filter(|c| c.chain == Chain::SigningLog.as_str()),
        );
    }
    Ok(verify(&entries, &checkpoints, Some(&key)))
}

/// `serialmint verify-log`: prints what was checked and every finding; an error when there
/// is one.
pub fn verify_log(
    export: &Path,
    audit_key: &Path,
    checkpoint_files: &[std::path::PathBuf],
) -> Result<(), Error> {
    let r = verify_files(export, audit_key, checkpoint_files)?;
    outln!(
        "signing-log: {} chained rows (newest seq {}), {} rows from before the chain",
        r.chained_rows,
        r.last_seq,
        r.unchained_rows
    )?;
    match r.newest_checkpoint_seq {
        Some(seq) => outln!(
            "checkpoints: {} valid, the newest at seq {seq}",
            r.valid_checkpoints
        )?,
        None => outln!("checkpoints: none valid")?,
    }
    outln!(
        "rows after the newest checkpoint: {} (deleting the newest of these would not show)",
        r.rows_after_checkpoint
    )?;
    for f in &r.findings {
        outln!("FOUND {f}")?;
    }
    if r.is_clean() {
        outln!("OK: the chain and every checkpoint verify")
    } else {
        Err(Error::Tampered(r.findings.len()))
    }
}
