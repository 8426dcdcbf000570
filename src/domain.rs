//! The small vocabulary every floor shares: the named choices of the admin plane (duplicate
//! policy, serial generation, token roles, key status, held assertion kinds), and the one
//! shape of a signing-log row ([`Issuance`], [`LoggedIssuance`], [`RecordOutcome`]) that
//! registration builds and the store records and reads back.
//!
//! Each choice is written once here, with its wire name, and parsed and printed only through
//! [`std::str::FromStr`], [`std::fmt::Display`] and serde, so the store's text columns, the
//! admin wire, the CLI's flags and registration read the same names. This module depends on
//! nothing else in the crate.

use std::fmt;

/// A name that is not one of an enum's choices.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be {choices}, not {got:?}")]
pub struct UnknownChoice {
    /// What was being parsed (e.g. `duplicate-policy`).
    pub what: &'static str,
    /// The accepted names, as prose (`refuse or reissue`).
    pub choices: &'static str,
    /// What was given.
    pub got: String,
}

/// Declares a fieldless enum with one wire name per variant: `as_str`, `ALL`, `FromStr`
/// (failing with [`UnknownChoice`]), `Display`, and serde as that name.
macro_rules! named_choices {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident as $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every choice, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }

            /// The wire names, for messages and CLI value parsers.
            pub fn names() -> Vec<&'static str> {
                Self::ALL.iter().map(|c| c.as_str()).collect()
            }

            fn choices() -> &'static str {
                choice_list!($($wire),+)
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownChoice;

            fn from_str(s: &str) -> Result<Self, UnknownChoice> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(UnknownChoice {
                        what: $what,
                        choices: Self::choices(),
                        got: s.to_string(),
                    }),
                }
            }
        }

        /// Reads a stored text column (`#[sqlx(try_from = "String")]`): an unknown name is
        /// an error, never a default.
        impl TryFrom<String> for $name {
            type Error = UnknownChoice;

            fn try_from(s: String) -> Result<Self, UnknownChoice> {
                s.parse()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// `"a or b"`, `"a, b or c"` from literals, at compile time.
macro_rules! choice_list {
    ($only:literal) => {
        $only
    };
    ($a:literal, $b:literal) => {
        concat!($a, " or ", $b)
    };
    ($a:literal, $b:literal, $c:literal) => {
        concat!($a, ", ", $b, " or ", $c)
    };
}

named_choices! {
    /// What happens when a serial already issued to one device key is asked for by another.
    #[derive(Default)]
    pub enum DuplicatePolicy as "duplicate-policy" {
        /// Refuse with 409 (the default).
        #[default]
        Refuse = "refuse",
        /// Issue it again with the next revision.
        Reissue = "reissue",
    }
}

named_choices! {
    /// How a serial is chosen when the device proposes none.
    #[derive(Default)]
    pub enum SerialGeneration as "serial-generation" {
        /// A random UUID (the default).
        #[default]
        Uuid = "uuid",
        /// The model's prefix followed by the next value of its counter.
        PrefixCounter = "prefix-counter",
        /// None: the device must propose one (400 otherwise).
        RequireProposed = "require-proposed",
    }
}

named_choices! {
    /// What an admin token may do.
    pub enum Role as "role" {
        /// Read and change everything.
        Admin = "admin",
        /// Read only.
        ReadOnly = "read-only",
    }
}

named_choices! {
    /// Where a signing key's generation on the token stands.
    pub enum KeyStatus as "key status" {
        /// The HSM is generating it.
        Pending = "pending",
        /// Generated; id and public key known.
        Ready = "ready",
        /// Generation failed; see its error.
        Failed = "failed",
    }
}

named_choices! {
    /// Where a signing key came from.
    #[derive(Default)]
    pub enum KeyOrigin as "key origin" {
        /// Generated on the token (`create key`).
        #[default]
        Generated = "generated",
        /// Brought as a key file and imported onto the token (`import key`).
        Imported = "imported",
    }
}

named_choices! {
    /// What a signing key is for.
    #[derive(Default)]
    pub enum KeyPurpose as "key purpose" {
        /// Assertions (serials, account-key-requests): the default.
        #[default]
        Assertions = "assertions",
        /// Only the tamper-evident log's checkpoints; never an assertion.
        Audit = "audit",
    }
}

named_choices! {
    /// The kinds of assertion the server holds and serves after a serial.
    pub enum AssertionKind as "assertion type" {
        /// An `account` assertion (primary key: account-id).
        Account = "account",
        /// An `account-key` assertion (primary key: public-key-sha3-384).
        AccountKey = "account-key",
    }
}

/// A serial to record in the signing log: built by registration, inserted by the store.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Issuance {
    /// The brand's account-id.
    pub brand_id: String,
    /// The model's row id (from the catalog).
    pub model_id: i64,
    /// The model name.
    pub model_name: String,
    /// The serial number.
    pub serial: String,
    /// The serial's revision (0 for a first issue; re-issues count up). Stored as `INTEGER`.
    #[sqlx(try_from = "i32")]
    pub revision: u32,
    /// The device key's SHA3-384 id.
    pub device_key_id: String,
    /// The request-id the device used.
    pub request_id: String,
    /// The signing key's SHA3-384 id.
    pub signing_key_id: String,
    /// Which serialmint instance signed it.
    pub instance: String,
    /// The full serial assertion text (what the device is answered).
    pub serial_assertion: String,
    /// On a remodel re-registration, the serial this one replaces, by its primary key
    /// (`brand-id/model/serial`); `None` for a first registration.
    pub original_serial: Option<String>,
    /// The signing-log row of that serial, when this vault issued it.
    pub original_serial_id: Option<i64>,
}

/// A signing-log row as exported: the row and its link in the tamper-evident chain
/// (`docs/EVIDENT-LOG.md`; both `None` for rows written before the chain started).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ExportedIssuance {
    /// The row.
    #[sqlx(flatten)]
    pub row: LoggedIssuance,
    /// Its sequence number in the chain.
    pub chain_seq: Option<i64>,
    /// Its chain hash (32 bytes).
    pub chain_hash: Option<Vec<u8>>,
}

/// A row of the signing log: an issuance with its row id and the time it was recorded.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LoggedIssuance {
    /// Row id (increasing; the paging cursor).
    pub id: i64,
    /// When it was recorded.
    pub issued_at: time::OffsetDateTime,
    /// What was recorded.
    #[sqlx(flatten)]
    pub issuance: Issuance,
}

/// What recording one issuance did. The signing log's unique constraints decide it (one
/// issuance per request-id; one per brand, model, serial and revision).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Recorded now: the new serial may be answered.
    Inserted(LoggedIssuance),
    /// Already recorded for the same device key, by the same request-id or the same serial:
    /// answer the earlier serial (`serial_assertion`), never the new one.
    Replay(LoggedIssuance),
    /// Refused: the request-id already issued a serial to another device key.
    RequestIdUsed(LoggedIssuance),
    /// Refused: the serial (at this revision) was already issued to another device key.
    SerialTaken(LoggedIssuance),
    /// Refused: the model was deleted meanwhile.
    ModelGone,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_refusals_list_the_choices() {
        for p in DuplicatePolicy::ALL {
            assert_eq!(p.as_str().parse::<DuplicatePolicy>(), Ok(*p));
        }
        for g in SerialGeneration::ALL {
            assert_eq!(g.to_string().parse::<SerialGeneration>(), Ok(*g));
        }
        let e = "sometimes".parse::<DuplicatePolicy>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "duplicate-policy must be refuse or reissue, not \"sometimes\""
        );
        let e = "x".parse::<SerialGeneration>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "serial-generation must be uuid, prefix-counter or require-proposed, not \"x\""
        );
    }

    #[test]
    fn serde_uses_the_wire_names() {
        assert_eq!(
            serde_json::to_string(&Role::ReadOnly).unwrap(),
            "\"read-only\""
        );
        let r: Role = serde_json::from_str("\"admin\"").unwrap();
        assert_eq!(r, Role::Admin);
        let e = serde_json::from_str::<Role>("\"root\"").unwrap_err();
        assert!(
            e.to_string().contains("role must be admin or read-only"),
            "{e}"
        );
    }
}
