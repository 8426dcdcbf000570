//! The tamper-evident log's verbs: `export checkpoints` and `export audit-key` (through the
//! admin API), and `verify-log` (offline: no database, no HSM).

use super::Error;
use super::client::{Client, path_segment};
use super::output::outln;
use crate::admin_api::wire::{CheckpointList, KeyView, List};
use crate::assertion::RsaPublicKey;
use crate::domain::{KeyPurpose, KeyStatus};
use crate::evidence::checkpoint::public_key_pem;

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
