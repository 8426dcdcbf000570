//! The hash chain: the canonical bytes of a signing-log or audit-log row, and
//! `hash = SHA-256(previous hash ‖ canonical bytes)`.
//!
//! Sequence numbers start at 1 per chain; the row before the first one has the hash of 32 zero
//! bytes ([`GENESIS`]). The canonical bytes (`docs/EVIDENT-LOG.md` is the spec) are a tag
//! naming the chain and its version, then every field in a fixed order: integers as
//! big-endian two's complement (8 bytes; the revision 4 bytes), times as 8-byte microseconds
//! since the Unix epoch (UTC), text as a 4-byte big-endian byte length and its UTF-8 bytes.
//! Nothing here reads a clock or a database.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::domain::Issuance;

/// A chain hash (SHA-256).
pub type ChainHash = [u8; 32];

/// The hash "before" sequence 1.
pub const GENESIS: ChainHash = [0u8; 32];

/// The two chains, named as in the `log_chain_heads` table and in checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Chain {
    /// The signing log (`signing_log`).
    SigningLog,
    /// The admin audit log (`audit_log`).
    AuditLog,
}

impl Chain {
    /// The name in the database and in checkpoints.
    pub fn as_str(self) -> &'static str {
        match self {
            Chain::SigningLog => "signing-log",
            Chain::AuditLog => "audit-log",
        }
    }

    /// The chain of this name (`signing-log`, `audit-log`).
    pub fn from_name(name: &str) -> Option<Chain> {
        [Chain::SigningLog, Chain::AuditLog]
            .into_iter()
            .find(|c| c.as_str() == name)
    }

    /// The tag the canonical bytes start with.
    pub fn tag(self) -> &'static str {
        match self {
            Chain::SigningLog => "serialmint signing-log v1",
            Chain::AuditLog => "serialmint audit-log v1",
        }
    }
}

impl std::fmt::Display for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Builds canonical bytes field by field.
#[derive(Default)]
struct Canonical(Vec<u8>);

impl Canonical {
    fn text(&mut self, s: &str) -> &mut Self {
        // Rows are far below 4 GiB (the request body cap); saturating keeps this total.
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    /// An optional text: one byte 0 when absent, or 1 and then the text.
    fn opt_text(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            None => {
                self.0.push(0);
                self
            }
            Some(s) => {
                self.0.push(1);
                self.text(s)
            }
        }
    }

    fn int(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn time(&mut self, t: OffsetDateTime) -> &mut Self {
        self.int(micros(t))
    }
}

/// Microseconds since the Unix epoch (Postgres keeps `timestamptz` to the microsecond).
pub fn micros(t: OffsetDateTime) -> i64 {
    let nanos = t.unix_timestamp_nanos();
    i64::try_from(nanos.div_euclid(1000)).unwrap_or(i64::MAX)
}

/// The canonical bytes of a signing-log row at sequence `seq`, recorded at `issued_at`.
pub fn signing_row_bytes(seq: i64, issued_at: OffsetDateTime, r: &Issuance) -> Vec<u8> {
    let mut c = Canonical::default();
    c.text(Chain::SigningLog.tag())
        .int(seq)
        .time(issued_at)
        .text(&r.brand_id)
        .int(r.model_id)
        .text(&r.model_name)
        .text(&r.serial);
    c.0.extend_from_slice(&r.revision.to_be_bytes());
    c.text(&r.device_key_id)
        .text(&r.request_id)
        .text(&r.signing_key_id)
        .text(&r.instance)
        .text(&r.serial_assertion)
        .opt_text(r.original_serial.as_deref());
    c.0
}

/// An audit-log row's fields, as hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow<'a> {
    /// When.
    pub at: OffsetDateTime,
    /// Who.
    pub actor: &'a str,
    /// What kind of change.
    pub action: &'a str,
    /// What it changed.
    pub target: &'a str,
    /// The detail, as [`canonical_json`] writes it.
    pub detail: &'a str,
}

/// The canonical bytes of an audit-log row at sequence `seq`.
pub fn audit_row_bytes(seq: i64, r: &AuditRow<'_>) -> Vec<u8> {
    let mut c = Canonical::default();
    c.text(Chain::AuditLog.tag())
        .int(seq)
        .time(r.at)
        .text(r.actor)
        .text(r.action)
        .text(r.target)
        .text(r.detail);
    c.0
}

/// The audit detail's canonical text: compact JSON with object keys sorted by their bytes
/// (serde_json's map is ordered), as read back from Postgres' `jsonb` too.
pub fn canonical_json(v: &serde_json::Value) -> String {
    v.to_string()
}

/// `SHA-256(prev ‖ bytes)`.
pub fn link(prev: &ChainHash, bytes: &[u8]) -> ChainHash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(bytes);
    h.finalize().into()
}

/// Lower-case hex of a hash (as exports and checkpoints print it).
pub fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// A hash from 64 hex digits.
pub fn parse_hex(s: &str) -> Option<ChainHash> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Extends a chain: yields `(seq, hash)` for each row's canonical bytes after `(seq, hash)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The sequence number of the newest row (0 before the first).
    pub seq: i64,
    /// Its hash ([`GENESIS`] before the first).
    pub hash: ChainHash,
}

impl Head {
    /// The head of an empty chain.
    pub fn genesis() -> Self {
        Head {
            seq: 0,
            hash: GENESIS,
        }
    }

    /// Appends a row whose canonical bytes `bytes_at(seq)` builds; returns its seq and hash.
    pub fn append(&mut self, bytes_at: impl FnOnce(i64) -> Vec<u8>) -> (i64, ChainHash) {
        let seq = self.seq + 1;
        let hash = link(&self.hash, &bytes_at(seq));
        self.seq = seq;
        self.hash = hash;
        (seq, hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Issuance {
        Issuance {
            brand_id: "acme".into(),
            model_id: 7,
            model_name: "widget".into(),
            serial: "S1".into(),
            revision: 2,
            device_key_id: "dev".into(),
            request_id: "req".into(),
            signing_key_id: "key".into(),
            instance: "i1".into(),
            serial_assertion: "type: serial\n".into(),
            original_serial: None,
            original_serial_id: None,
        }
    }

    #[test]
    fn signing_row_bytes_follow_the_spec() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000).unwrap();
        let b = signing_row_bytes(3, at, &row());
        let mut want = Vec::new();
        let text = |w: &mut Vec<u8>, s: &str| {
            w.extend_from_slice(&(s.len() as u32).to_be_bytes());
            w.extend_from_slice(s.as_bytes());
        };
        text(&mut want, "serialmint signing-log v1");
        want.extend_from_slice(&3i64.to_be_bytes());
        want.extend_from_slice(&1_700_000_000_123_456i64.to_be_bytes());
        text(&mut want, "acme");
        want.extend_from_slice(&7i64.to_be_bytes());
        text(&mut want, "widget");
        text(&mut want, "S1");
        want.extend_from_slice(&2u32.to_be_bytes());
        for s in ["dev", "req", "key", "i1", "type: serial\n"] {
            text(&mut want, s);
        }
        want.push(0);
        assert_eq!(b, want);
        // A re-registration names the serial it replaces (its row id is not hashed).
        let mut rereg = row();
        rereg.original_serial = Some("acme/old/S0".into());
        rereg.original_serial_id = Some(41);
        let b = signing_row_bytes(3, at, &rereg);
        want.pop();
        want.push(1);
        text(&mut want, "acme/old/S0");
        assert_eq!(b, want);
    }

    #[test]
    fn the_chain_links_each_row_to_the_previous_hash() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let mut head = Head::genesis();
        let (s1, h1) = head.append(|seq| signing_row_bytes(seq, at, &row()));
        let (s2, h2) = head.append(|seq| signing_row_bytes(seq, at, &row()));
        assert_eq!((s1, s2), (1, 2));
        assert_eq!(h1, link(&GENESIS, &signing_row_bytes(1, at, &row())));
        assert_eq!(h2, link(&h1, &signing_row_bytes(2, at, &row())));
        assert_ne!(h1, h2, "the sequence number is hashed");
        // SHA-256 of 32 zero bytes: a value any implementation can check itself against.
        assert_eq!(
            hex(&link(&GENESIS, b"")),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        assert_eq!(parse_hex(&hex(&h2)), Some(h2));
        assert_eq!(parse_hex("zz"), None);
    }

    #[test]
    fn audit_detail_keys_are_sorted() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":2,"c":[1,"x"]}}"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":{"c":[1,"x"],"d":2},"b":1}"#);
    }
}
