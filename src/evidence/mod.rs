//! Tamper evidence for the signing log and the admin audit log: the hash chain's canonical
//! row bytes ([`chain`]), checkpoints (a chain head signed with the audit key, their text,
//! JSON and check, and the audit key's PEM: [`checkpoint`]) and the offline verifier over an
//! export ([`verify`]).
//!
//! Pure code without I/O, on the vocabulary floor: the store computes the chain with it when
//! it writes a row, and `serialmint verify-log` recomputes it from an export, with no
//! database and no HSM. `docs/EVIDENT-LOG.md` specifies the bytes for third parties.

pub mod chain;
pub mod checkpoint;
pub mod verify;
