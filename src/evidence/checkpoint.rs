//! Checkpoints: a chain head (chain, number, sequence, hash, time, instance) signed with the
//! audit key, and the audit public key's file format (PEM SubjectPublicKeyInfo).
//!
//! The signed message is the checkpoint's canonical text ([`Checkpoint::message`]); the
//! signature is RSA PKCS#1 v1.5 over the SHA-512 DigestInfo of it, exactly what the HSM signs
//! for assertions (`CKM_RSA_PKCS`). Checkpoints are numbered 1, 2, ... per chain, so one
//! deleted from the middle of a copy shows as a gap.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};
use time::OffsetDateTime;

use super::chain::{Chain, ChainHash, hex, parse_hex};
use crate::assertion::RsaPublicKey;
use crate::assertion::openpgp::digest_info;

/// A signed chain head, as stored, exported (one JSON object per line) and logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Checkpoint {
    /// `signing-log` or `audit-log`.
    pub chain: String,
    /// 1, 2, ... per chain.
    pub number: i64,
    /// The chain's newest sequence number when it was taken (0: empty chain).
    pub seq: i64,
    /// That row's chain hash, 64 hex digits.
    pub hash: String,
    /// When it was taken.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The instance that took it.
    pub instance: String,
    /// The audit key's SHA3-384 id.
    pub key_id: String,
    /// The RSA signature, standard base64.
    pub signature: String,
}

/// Why a checkpoint does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// A field cannot be read.
    #[error("checkpoint {number} of the {chain}: {what}")]
    Malformed {
        /// Its chain.
        chain: String,
        /// Its number.
        number: i64,
        /// What is wrong.
        what: String,
    },
    /// The signature is not the audit key's over this checkpoint.
    #[error("checkpoint {number} of the {chain} (seq {seq}) is not signed by the audit key")]
    BadSignature {
        /// Its chain.
        chain: String,
        /// Its number.
        number: i64,
        /// Its sequence number.
        seq: i64,
    },
}

impl Checkpoint {
    /// The canonical text that is signed: `serialmint checkpoint v1` then one `name: value`
    /// line per field (chain, number, seq, hash, at as RFC 3339 UTC, instance), each ending
    /// in `\n`.
    pub fn message(
        chain: &str,
        number: i64,
        seq: i64,
        hash: &str,
        at: OffsetDateTime,
        instance: &str,
    ) -> String {
        let at = crate::assertion::time::format_utc(at);
        format!(
            "serialmint checkpoint v1\nchain: {chain}\nnumber: {number}\nseq: {seq}\n\
             hash: {hash}\nat: {at}\ninstance: {instance}\n"
        )
    }

    /// This checkpoint's signed text.
    pub fn signed_text(&self) -> String {
        Self::message(
            &self.chain,
            self.number,
            self.seq,
            &self.hash,
            self.at,
            &self.instance,
        )
    }

    /// The SHA-512 DigestInfo the audit key signs for a checkpoint's text.
    pub fn digest_info_of(text: &str) -> [u8; 83] {
        digest_info(&Sha512::digest(text.as_bytes()).into())
    }

    /// The chain hash it names.
    pub fn chain_hash(&self) -> Result<ChainHash, CheckpointError> {
        parse_hex(&self.hash).ok_or_else(|| self.malformed("its hash is not 64 hex digits"))
    }

    /// Which chain it is of.
    pub fn chain_kind(&self) -> Option<Chain> {
        Chain::from_name(&self.chain)
    }

    fn malformed(&self, what: &str) -> CheckpointError {
        CheckpointError::Malformed {
            chain: self.chain.clone(),
            number: self.number,
            what: what.into(),
        }
    }

    /// Checks the signature with the audit public key (in software).
    pub fn verify(&self, audit_key: &RsaPublicKey) -> Result<(), CheckpointError> {
        self.chain_hash()?;
        let sig = STANDARD
            .decode(&self.signature)
            .map_err(|_| self.malformed("its signature is not base64"))?;
        let di = Self::digest_info_of(&self.signed_text());
        crate::assertion::verify_digest_info(audit_key, &di, &sig).map_err(|_| {
            CheckpointError::BadSignature {
                chain: self.chain.clone(),
                number: self.number,
                seq: self.seq,
            }
        })
    }

    /// A checkpoint of `head` made from a signature over [`Checkpoint::message`].
    pub fn new_signed(
        chain: Chain,
        number: i64,
        head: (i64, &ChainHash),
        at: OffsetDateTime,
        instance: &str,
        key_id: &str,
        signature: &[u8],
    ) -> Self {
        Checkpoint {
            chain: chain.as_str().into(),
            number,
            seq: head.0,
            hash: hex(head.1),
            at,
            instance: instance.into(),
            key_id: key_id.into(),
            signature: STANDARD.encode(signature),
        }
    }
}

/// The message of the service-log line that carries a checkpoint.
pub const LOG_MESSAGE: &str = "log checkpoint";

/// Reads checkpoints: one JSON object per line (`serialmint export checkpoints`), or the
/// service log as it is, where the `log checkpoint` lines carry one in their `checkpoint`
/// field (text format: `checkpoint={...}` ending the line; JSON format: `fields.checkpoint`).
/// Other lines are skipped; a `log checkpoint` line that cannot be read is an error.
pub fn read_checkpoints(text: &str) -> Result<Vec<Checkpoint>, CheckpointError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Ok(cp) = serde_json::from_str::<Checkpoint>(line) {
            out.push(cp);
            continue;
        }
        if !line.contains(LOG_MESSAGE) {
            continue;
        }
        let from_json = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| {
                let field = v.pointer("/fields/checkpoint").or(v.get("checkpoint"))?;
                serde_json::from_str::<Checkpoint>(field.as_str()?).ok()
            });
        let from_text = || {
            let at = line.find("checkpoint={")? + "checkpoint=".len();
            serde_json::from_str::<Checkpoint>(&line[at..]).ok()
        };
        match from_json.or_else(from_text) {
            Some(cp) => out.push(cp),
            None => {
                return Err(CheckpointError::Malformed {
                    chain: "checkpoints file".into(),
                    number: 0,
                    what: format!("line {} names a checkpoint that cannot be read", i + 1),
                });
            }
        }
    }
    Ok(out)
}

const RSA_ALGORITHM: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

/// The audit public key as PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`), what
/// `serialmint export audit-key` prints and `openssl pkey -pubin` reads.
pub fn public_key_pem(key: &RsaPublicKey) -> String {
    let pkcs1 = key.pkcs1_der();
    let mut bits = vec![0x03];
    der_len(pkcs1.len() + 1, &mut bits);
    bits.push(0);
    bits.extend_from_slice(&pkcs1);
    let mut der = vec![0x30];
    der_len(RSA_ALGORITHM.len() + bits.len(), &mut der);
    der.extend_from_slice(&RSA_ALGORITHM);
    der.extend(bits);
    let b64 = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

/// Reads a PEM SubjectPublicKeyInfo RSA public key.
pub fn read_public_key_pem(pem: &str) -> Result<RsaPublicKey, CheckpointError> {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::PublicKey::from_public_key_pem(pem.trim()).map_err(|e| {
        CheckpointError::Malformed {
            chain: "audit key file".into(),
            number: 0,
            what: format!("not a PEM RSA public key (SubjectPublicKeyInfo): {e}"),
        }
    })?;
    Ok(RsaPublicKey::new(&key.n_bytes(), &key.e_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_key_pem_round_trips() {
        let n = [0xc5u8; 512];
        let key = RsaPublicKey::new(&n, &[1, 0, 1]);
        let pem = public_key_pem(&key);
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(read_public_key_pem(&pem).unwrap(), key);
        assert!(read_public_key_pem("nonsense").is_err());
    }

    #[test]
    fn checkpoints_are_read_from_exports_and_service_logs() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let cp = Checkpoint::new_signed(Chain::SigningLog, 2, (9, &[7; 32]), at, "i1", "k", b"s");
        let json = serde_json::to_string(&cp).unwrap();
        let text_log = format!(
            "2026-12-03T00:00:00Z  INFO serialmint::checkpointer: {LOG_MESSAGE} chain=signing-log \
             seq=9 number=2 checkpoint={json}"
        );
        let json_log = serde_json::json!({
            "level": "INFO",
            "fields": {"message": LOG_MESSAGE, "checkpoint": json},
        })
        .to_string();
        let file = format!("{json}\nsome other line\n\n{text_log}\n{json_log}\n");
        assert_eq!(
            read_checkpoints(&file).unwrap(),
            vec![cp.clone(), cp.clone(), cp]
        );
        assert!(read_checkpoints(&format!("{LOG_MESSAGE} checkpoint={{broken")).is_err());
    }

    #[test]
    fn the_signed_text_names_every_field() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let text = Checkpoint::message("signing-log", 3, 1000, "ab", at, "i1");
        assert_eq!(
            text,
            "serialmint checkpoint v1\nchain: signing-log\nnumber: 3\nseq: 1000\nhash: ab\n\
             at: 2023-11-14T22:13:20Z\ninstance: i1\n"
        );
    }
}
