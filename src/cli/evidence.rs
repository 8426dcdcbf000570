//! The tamper-evident log's verbs: `export checkpoints`, `export audit-key`, `export
//! audit-log` and `export account-keys` (through the admin API), and `verify-log` (offline
//! over export files: no database, no HSM; or `--live`, over what the admin API serves now),
//! optionally re-verifying each row's serial assertion ([`super::verify_serials`]).

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::Error;
use super::client::{Client, path_segment};
use super::output::outln;
use super::verify_serials::{SerialRow, check_serial};
use crate::admin_api::wire::{AuditEntryView, CheckpointList, IssuanceView, KeyView, List};
use crate::assertion::{RsaPublicKey, decode_stream};
use crate::domain::{Issuance, KeyPurpose, KeyStatus};
use crate::evidence::chain::{
    AuditRow, Chain, audit_row_bytes, canonical_json, parse_hex, signing_row_bytes,
};
use crate::evidence::checkpoint::{
    Checkpoint, public_key_pem, read_checkpoints, read_public_key_pem,
};
use crate::evidence::verify::{Entry, Finding, Report, verify};
use crate::trust::TrustDb;

/// Prints every checkpoint, one JSON object per line.
pub async fn export_checkpoints(client: &Client) -> Result<(), Error> {
    let list: CheckpointList = client.get("/v1/checkpoints").await?;
    for cp in &list.items {
        let line = serde_json::to_string(cp).map_err(|e| Error::Evidence(e.to_string()))?;
        outln!("{line}")?;
    }
    Ok(())
}

/// Prints the whole audit log with its chain links as a JSON array, one entry per line.
pub async fn export_audit_log(client: &Client) -> Result<(), Error> {
    let list: List<AuditEntryView> = client.get("/v1/audit-log/export").await?;
    let lines = list
        .items
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Evidence(e.to_string()))?;
    outln!("[\n{}\n]", lines.join(",\n"))
}

/// Prints the held account and account-key assertions as one stream.
pub async fn export_account_keys(client: &Client) -> Result<(), Error> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    client.download("/v1/account-keys/export", &mut out).await
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

/// A row's `chain-hash`, when it has one.
fn chain_hash(label: &str, h: Option<&str>) -> Result<Option<[u8; 32]>, Error> {
    h.map(|h| {
        parse_hex(h)
            .ok_or_else(|| Error::Evidence(format!("{label}: chain-hash is not 64 hex digits")))
    })
    .transpose()
}

/// An audit-log export entry as the chain hashes it.
fn audit_entry(row: AuditEntryView) -> Result<Entry, Error> {
    let label = format!("{} {} by {}", row.action, row.target, row.actor);
    let hash = chain_hash(&label, row.chain_hash.as_deref())?;
    let detail = canonical_json(&row.detail);
    Ok(Entry {
        seq: row.chain_seq,
        hash,
        label,
        bytes_at: Box::new(move |seq| {
            let r = AuditRow {
                at: row.at,
                actor: &row.actor,
                action: &row.action,
                target: &row.target,
                detail: &detail,
            };
            audit_row_bytes(seq, &r)
        }),
    })
}

/// How findings name a signing-log row.
fn row_label(row: &IssuanceView) -> String {
    format!(
        "serial {} of {}/{}, id {}",
        row.serial, row.brand_id, row.model, row.id
    )
}

/// A JSON export row as the chain hashes it.
fn entry(row: IssuanceView) -> Result<Entry, Error> {
    let label = row_label(&row);
    let hash = chain_hash(&label, row.chain_hash.as_deref())?;
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

/// Reads a JSON export of `what`.
fn read_export<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, Error> {
    serde_json::from_str(&read(path)?).map_err(|e| {
        Error::Evidence(format!(
            "{} is not a JSON {what} export (`serialmint export {what}{}`): {e}",
            path.display(),
            if what == "signing-log" { " --json" } else { "" }
        ))
    })
}

/// What `verify-log` checked: the signing log, and the audit log when given.
pub struct Reports {
    /// The signing log's.
    pub signing_log: Report,
    /// The audit log's, when its export was given.
    pub audit_log: Option<Report>,
    /// With `--check-serials`: the serial assertions re-verified (their findings are the
    /// signing log's).
    pub serials: Option<SerialsChecked>,
}

/// What `--check-serials` looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SerialsChecked {
    /// Rows whose serial assertion was checked.
    pub checked: usize,
    /// Rows without a serial assertion in the export (none in a JSON export of this vault).
    pub without_assertion: usize,
}

/// `--check-serials`: the trusted roots (a file, else Canonical's) and the assertion files
/// to admit under them.
pub struct SerialCheck {
    /// `--trusted`.
    pub trusted: Option<PathBuf>,
    /// `--assertions`.
    pub assertions: Vec<PathBuf>,
}

impl SerialCheck {
    /// The account-key chain: the roots with every assertion of the files (and `more`, e.g.
    /// the server's held ones) admitted through them, checked as snapd's database would now.
    fn trust(&self, more: &[u8]) -> Result<TrustDb, Error> {
        let roots = match &self.trusted {
            Some(path) => TrustDb::from_assertions(read(path)?.as_bytes())
                .map_err(|e| Error::Evidence(format!("{}: {e}", path.display())))?,
            None => TrustDb::builtin(),
        };
        let mut admitted = Vec::new();
        for path in &self.assertions {
            admitted.extend(
                decode_stream(read(path)?.as_bytes())
                    .map_err(|e| Error::Evidence(format!("{}: {e}", path.display())))?,
            );
        }
        admitted.extend(decode_stream(more).map_err(|e| {
            Error::Evidence(format!("the server's held account-keys do not decode: {e}"))
        })?);
        roots
            .with_admitted(admitted, OffsetDateTime::now_utc())
            .map_err(|e| {
                Error::Evidence(format!(
                    "the account-key assertions do not verify under the trusted roots: {e}"
                ))
            })
    }
}

/// Re-verifies each row's serial assertion under `trust`; findings in row order.
fn check_serials(rows: &[IssuanceView], trust: &TrustDb) -> (SerialsChecked, Vec<Finding>) {
    let mut seen = SerialsChecked::default();
    let mut findings = Vec::new();
    for r in rows {
        let Some(assertion) = r.serial_assertion.as_deref() else {
            seen.without_assertion += 1;
            continue;
        };
        seen.checked += 1;
        let label = row_label(r);
        let row = SerialRow {
            brand_id: &r.brand_id,
            model: &r.model,
            serial: &r.serial,
            device_key: &r.device_key,
            signing_key: &r.signing_key,
            issued_at: r.issued_at,
            assertion,
        };
        if let Err(reason) = check_serial(&row, trust) {
            findings.push(Finding::SerialRejected {
                seq: r.chain_seq,
                label,
                reason,
            });
        }
    }
    (seen, findings)
}

/// The audit key (PEM) in `audit_key` and the checkpoints in `checkpoint_files`.
fn key_and_checkpoints(
    audit_key: &Path,
    checkpoint_files: &[PathBuf],
) -> Result<(RsaPublicKey, Vec<Checkpoint>), Error> {
    let key = read_public_key_pem(&read(audit_key)?)
        .map_err(|e| Error::Evidence(format!("{}: {e}", audit_key.display())))?;
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    for f in checkpoint_files {
        checkpoints.extend(
            read_checkpoints(&read(f)?)
                .map_err(|e| Error::Evidence(format!("{}: {e}", f.display())))?,
        );
    }
    Ok((key, checkpoints))
}

/// Verifies the signing log's rows (and the audit log's, when given) against the audit key
/// and the checkpoints: where they came from (files or the admin API) is the caller's.
fn verify_rows(
    rows: Vec<IssuanceView>,
    audit_rows: Option<Vec<AuditEntryView>>,
    key: &RsaPublicKey,
    checkpoints: &[Checkpoint],
    serial_trust: Option<&TrustDb>,
) -> Result<Reports, Error> {
    let serials = serial_trust.map(|trust| check_serials(&rows, trust));
    let entries = rows.into_iter().map(entry).collect::<Result<Vec<_>, _>>()?;
    let of = |chain: Chain| -> Vec<Checkpoint> {
        checkpoints
            .iter()
            .filter(|c| c.chain == chain.as_str())
            .cloned()
            .collect()
    };
    let audit_log = match audit_rows {
        Some(rows) => {
            let entries = rows
                .into_iter()
                .map(audit_entry)
                .collect::<Result<Vec<_>, _>>()?;
            Some(verify(&entries, &of(Chain::AuditLog), Some(key)))
        }
        None => None,
    };
    let mut signing_log = verify(&entries, &of(Chain::SigningLog), Some(key));
    let serials = serials.map(|(seen, findings)| {
        signing_log.findings.extend(findings);
        seen
    });
    Ok(Reports {
        signing_log,
        audit_log,
        serials,
    })
}

/// Verifies the signing log's export `export` (and the audit log's, when given) against the
/// audit key (PEM) and the checkpoints in `checkpoint_files`, all offline.
pub fn verify_files(
    export: &Path,
    audit_key: &Path,
    checkpoint_files: &[PathBuf],
    audit_export: Option<&Path>,
    serial_check: Option<&SerialCheck>,
) -> Result<Reports, Error> {
    let rows: Vec<IssuanceView> = read_export(export, "signing-log")?;
    let audit_rows = match audit_export {
        Some(path) => Some(read_export::<Vec<AuditEntryView>>(path, "audit-log")?),
        None => None,
    };
    let (key, checkpoints) = key_and_checkpoints(audit_key, checkpoint_files)?;
    let trust = serial_check.map(|c| c.trust(&[])).transpose()?;
    verify_rows(rows, audit_rows, &key, &checkpoints, trust.as_ref())
}

/// Prints one chain's report; findings get `prefix`.
fn print_report(chain: Chain, r: &Report, prefix: &str) -> Result<(), Error> {
    outln!(
        "{chain}: {} chained rows (newest seq {}), {} rows from before the chain",
        r.chained_rows,
        r.last_seq,
        r.unchained_rows
    )?;
    match r.newest_checkpoint_seq {
        Some(seq) => outln!(
            "{prefix}checkpoints: {} valid, the newest at seq {seq}",
            r.valid_checkpoints
        )?,
        None => outln!("{prefix}checkpoints: none valid")?,
    }
    outln!(
        "{prefix}rows after the newest checkpoint: {} (deleting the newest of these would not \
         show)",
        r.rows_after_checkpoint
    )?;
    for f in &r.findings {
        outln!("FOUND {prefix}{f}")?;
    }
    Ok(())
}

/// `serialmint verify-log --export FILE`: prints what was checked and every finding; an
/// error when there is one.
pub fn verify_log(
    export: &Path,
    audit_key: &Path,
    checkpoint_files: &[PathBuf],
    audit_export: Option<&Path>,
    serial_check: Option<&SerialCheck>,
) -> Result<(), Error> {
    report(verify_files(
        export,
        audit_key,
        checkpoint_files,
        audit_export,
        serial_check,
    )?)
}

/// `serialmint verify-log --live`: the signing log, the audit log and the checkpoints as the
/// admin API serves them now, checked against the audit key from a file (the server is not
/// trusted for it) and beside any checkpoints kept elsewhere; printed as `verify_log` does.
/// With `serial_check`, the server's held account-keys join the chain, admitted only through
/// the roots given here.
pub async fn verify_live(
    client: &Client,
    audit_key: &Path,
    checkpoint_files: &[PathBuf],
    serial_check: Option<&SerialCheck>,
) -> Result<(), Error> {
    let (key, mut checkpoints) = key_and_checkpoints(audit_key, checkpoint_files)?;
    let mut export = Vec::new();
    client
        .download("/v1/signing-log/export?format=json", &mut export)
        .await?;
    let rows: Vec<IssuanceView> = serde_json::from_slice(&export).map_err(|e| {
        Error::Evidence(format!("the server's signing-log export is not JSON: {e}"))
    })?;
    let audit: List<AuditEntryView> = client.get("/v1/audit-log/export").await?;
    let served: CheckpointList = client.get("/v1/checkpoints").await?;
    checkpoints.extend(served.items);
    let trust = match serial_check {
        Some(check) => {
            let mut held = Vec::new();
            client
                .download("/v1/account-keys/export", &mut held)
                .await?;
            Some(check.trust(&held)?)
        }
        None => None,
    };
    report(verify_rows(
        rows,
        Some(audit.items),
        &key,
        &checkpoints,
        trust.as_ref(),
    )?)
}

/// Prints both reports; an error counting the findings when there are any.
fn report(r: Reports) -> Result<(), Error> {
    // The signing log's lines as they always were; the audit log's prefixed.
    print_report(Chain::SigningLog, &r.signing_log, "")?;
    if let Some(s) = r.serials {
        outln!(
            "serial assertions: {} re-verified against the account-key chain, {} rows without \
             one",
            s.checked,
            s.without_assertion
        )?;
    }
    let mut found = r.signing_log.findings.len();
    if let Some(a) = &r.audit_log {
        print_report(Chain::AuditLog, a, "audit-log: ")?;
        found += a.findings.len();
    }
    if found == 0 {
        outln!(
            "OK: the chain and every checkpoint verify{}",
            if r.serials.is_some() {
                ", and every serial assertion"
            } else {
                ""
            }
        )
    } else {
        Err(Error::Tampered(found))
    }
}
