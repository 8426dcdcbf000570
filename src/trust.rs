//! The trust database: trusted root accounts and account-keys, accounts and account-keys
//! admitted through a verified chain, and the checks snapd's `Database.Check` applies
//! (`asserts/database.go`: `CheckSigningKeyIsNotExpired`, `CheckSignature`,
//! `CheckTimestampVsSigningKeyValidity`, `checkConsistency` of account, account-key, model).
//!
//! Built-in roots are Canonical's production `account` and root `account-key` from snapd's
//! `asserts/sysdb/trusted.go`. [`TrustDb::from_assertions`] replaces them with the contents of
//! a file (config `trust.assertions` / `SERIALMINT_TRUSTED_ASSERTIONS`), for private stores
//! and tests. The database is immutable after construction and cheap to clone (`Arc`).

use std::collections::HashMap;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::assertion::{
    Account, AccountKey, Assertion, AssertionType, DecodeError, Model, VerifyError, WrongType,
    decode_stream,
};

/// Canonical's production `account` assertion (snapd `asserts/sysdb/trusted.go`).
pub const CANONICAL_ACCOUNT: &str = ACCT;

/// Canonical's production root `account-key` assertion (snapd `asserts/sysdb/trusted.go`).
pub const CANONICAL_ROOT_ACCOUNT_KEY: &str = KEY;

/// Why an assertion is not trusted or could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// The trusted-assertions input does not decode.
    #[error("cannot decode trusted assertions: {0}")]
    Decode(#[from] DecodeError),
    /// The trusted-assertions input holds something else than accounts and account-keys.
    #[error("trusted assertions must be account or account-key, not {0}")]
    NotTrustable(&'static str),
    /// No trusted account-key at all.
    #[error("no trusted account-key in the trusted assertions")]
    NoRoots,
    /// Format above what is supported.
    #[error("proposed {0:?} assertion has format {1} but {2} is latest supported")]
    UnsupportedFormat(&'static str, u32, u32),
    /// No key with that id.
    #[error("no matching public key {key_id:?} for signature by {authority:?}")]
    NoKey {
        /// The `sign-key-sha3-384`.
        key_id: String,
        /// The `authority-id`.
        authority: String,
    },
    /// The key belongs to another account.
    #[error("found public key {key_id:?} from {owner:?} but expected it from: {authority}")]
    KeyAccountMismatch {
        /// The `sign-key-sha3-384`.
        key_id: String,
        /// The key's `account-id`.
        owner: String,
        /// The `authority-id`.
        authority: String,
    },
    /// The signing key is not valid at the check time.
    #[error("assertion is signed with expired public key {key_id:?} from {authority:?}")]
    KeyExpired {
        /// The `sign-key-sha3-384`.
        key_id: String,
        /// The `authority-id`.
        authority: String,
    },
    /// The assertion timestamp lies outside the signing key's validity.
    #[error("{0} assertion timestamp outside of signing key validity")]
    TimestampOutsideKeyValidity(&'static str),
    /// The signature does not verify.
    #[error(transparent)]
    Signature(#[from] VerifyError),
    /// The key's constraints do not allow this assertion.
    #[error(
        "assertion does not match signing constraints for public key {key_id:?} from {authority:?}"
    )]
    Constraints {
        /// The `sign-key-sha3-384`.
        key_id: String,
        /// The `authority-id`.
        authority: String,
    },
    /// A self-signed type cannot be checked against the database.
    #[error("cannot check no-authority assertion type {0:?}")]
    NoAuthority(&'static str),
    /// A consistency rule failed (message as snapd's).
    #[error("{0}")]
    Consistency(String),
    /// A typed view of the wrong type.
    #[error(transparent)]
    WrongType(#[from] WrongType),
}

#[derive(Debug, Default)]
struct Inner {
    /// Accounts whose account-keys are roots (`IsTrustedAccount`).
    trusted_accounts: Vec<String>,
    accounts: HashMap<String, Account>,
    /// Account-keys by `public-key-sha3-384`.
    keys: HashMap<String, AccountKey>,
}

/// An immutable, shareable set of trusted and admitted accounts and account-keys.
#[derive(Debug, Clone)]
pub struct TrustDb {
    inner: Arc<Inner>,
    verified: Arc<VerifiedSignatures>,
}

/// Signatures already verified, shared by a database and every database derived from it.
///
/// A factory line sends the same model assertion with every serial-request; checking its RSA
/// signature once instead of once per device saves an RSA-4096 verification per serial. An
/// entry is SHA-256 over the signing key's id, the content and the signature block, so it
/// records a fact that never changes ("this signature over this content verifies under this
/// key"); the key's validity, constraints and the timestamps are still checked every time.
/// Bounded: emptied when full.
#[derive(Debug, Default)]
struct VerifiedSignatures(parking_lot::Mutex<std::collections::HashSet<[u8; 32]>>);

/// Most signatures remembered.
const VERIFIED_MAX: usize = 4096;

impl VerifiedSignatures {
    fn fingerprint(a: &Assertion) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(a.sign_key_id_bytes());
        h.update((a.content().len() as u64).to_be_bytes());
        h.update(a.content());
        h.update(a.signature());
        h.finalize().into()
    }

    /// Verifies `a` with `key` unless this exact signature was verified with it before.
    fn verify(
        &self,
        a: &Assertion,
        key: &crate::assertion::RsaPublicKey,
    ) -> Result<(), VerifyError> {
        let fp = Self::fingerprint(a);
        if self.0.lock().contains(&fp) {
            return Ok(());
        }
        a.verify_with(key)?;
        let mut seen = self.0.lock();
        if seen.len() >= VERIFIED_MAX {
            seen.clear();
        }
        seen.insert(fp);
        Ok(())
    }
}

impl TrustDb {
    /// The built-in production roots (Canonical).
    pub fn builtin() -> Self {
        let mut bytes = CANONICAL_ACCOUNT.as_bytes().to_vec();
        bytes.push(b'\n');
        bytes.extend_from_slice(CANONICAL_ROOT_ACCOUNT_KEY.as_bytes());
        match Self::from_assertions(&bytes) {
            Ok(db) => db,
            Err(e) => unreachable!("built-in trusted assertions must load: {e}"),
        }
    }

    /// Trusted roots from a stream of `account` and `account-key` assertions (the file named
    /// by `SERIALMINT_TRUSTED_ASSERTIONS`). They are trusted as given, like snapd's
    /// `Trusted` set; their signatures are not checked.
    pub fn from_assertions(bytes: &[u8]) -> Result<Self, TrustError> {
        let mut inner = Inner::default();
        for a in decode_stream(bytes)? {
            match a.kind() {
                AssertionType::Account => {
                    let acc = Account::try_from(a)?;
                    inner.accounts.insert(acc.account_id().to_owned(), acc);
                }
                AssertionType::AccountKey => {
                    let key = AccountKey::try_from(a)?;
                    let owner = key.account_id().to_owned();
                    if !inner.trusted_accounts.contains(&owner) {
                        inner.trusted_accounts.push(owner);
                    }
                    inner.keys.insert(key.public_key_id().to_owned(), key);
                }
                other => return Err(TrustError::NotTrustable(other.name())),
            }
        }
        if inner.keys.is_empty() {
            return Err(TrustError::NoRoots);
        }
        Ok(Self {
            inner: Arc::new(inner),
            verified: Arc::default(),
        })
    }

    /// A new database with `assertions` (accounts and account-keys, in any order) admitted;
    /// each is checked as snapd's `Database.Add` would at time `now`. Assertions already
    /// present (same primary key) are skipped. Any that cannot be admitted fails it all, with
    /// the last error of the final pass.
    pub fn with_admitted(
        &self,
        assertions: impl IntoIterator<Item = Assertion>,
        now: OffsetDateTime,
    ) -> Result<Self, TrustError> {
        let (db, left) = self.admitting(assertions, now);
        match left.into_iter().last() {
            Some((_, e)) => Err(e),
            None => Ok(db),
        }
    }

    /// `assertions` admitted one by one as far as they go: accounts before keys, then keys
    /// until no progress (keys may sign keys). Returns the database with every one that was
    /// admitted, and those that were not, each with why (from the final pass, in order).
    pub fn admitting(
        &self,
        assertions: impl IntoIterator<Item = Assertion>,
        now: OffsetDateTime,
    ) -> (Self, Vec<(Assertion, TrustError)>) {
        let mut pending: Vec<Assertion> = assertions.into_iter().collect();
        pending.sort_by_key(|a| a.kind() != AssertionType::Account);
        let mut db = self.clone();
        loop {
            let mut progress = false;
            let mut left = Vec::new();
            for a in pending {
                match db.admit_one(a.clone(), now) {
                    Ok(next) => {
                        db = next;
                        progress = true;
                    }
                    Err(e) => left.push((a, e)),
                }
            }
            if left.is_empty() || !progress {
                return (db, left);
            }
            pending = left.into_iter().map(|(a, _)| a).collect();
        }
    }

    fn admit_one(&self, a: Assertion, now: OffsetDateTime) -> Result<Self, TrustError> {
        self.check(&a, now)?;
        let mut inner = Inner {
            trusted_accounts: self.inner.trusted_accounts.clone(),
            accounts: self.inner.accounts.clone(),
            keys: self.inner.keys.clone(),
        };
        match a.kind() {
            AssertionType::Account => {
                let acc = Account::try_from(a)?;
                inner
                    .accounts
                    .entry(acc.account_id().to_owned())
                    .or_insert(acc);
            }
            AssertionType::AccountKey => {
                let key = AccountKey::try_from(a)?;
                inner
                    .keys
                    .entry(key.public_key_id().to_owned())
                    .or_insert(key);
            }
            other => return Err(TrustError::NotTrustable(other.name())),
        }
        Ok(Self {
            inner: Arc::new(inner),
            verified: self.verified.clone(),
        })
    }

    /// Whether `account_id` is directly trusted (`IsTrustedAccount`).
    pub fn is_trusted_account(&self, account_id: &str) -> bool {
        self.inner.trusted_accounts.iter().any(|a| a == account_id)
    }

    /// The account with that id, if present.
    pub fn account(&self, account_id: &str) -> Option<&Account> {
        self.inner.accounts.get(account_id)
    }

    /// The account-key with that `public-key-sha3-384`, if present.
    pub fn account_key(&self, key_id: &str) -> Option<&AccountKey> {
        self.inner.keys.get(key_id)
    }

    /// `findAccountKey`: the key `key_id`, which must belong to `authority_id`.
    pub fn find_account_key(
        &self,
        authority_id: &str,
        key_id: &str,
    ) -> Result<&AccountKey, TrustError> {
        let key = self.account_key(key_id).ok_or_else(|| TrustError::NoKey {
            key_id: key_id.to_owned(),
            authority: authority_id.to_owned(),
        })?;
        if key.account_id() != authority_id {
            return Err(TrustError::KeyAccountMismatch {
                key_id: key_id.to_owned(),
                owner: key.account_id().to_owned(),
                authority: authority_id.to_owned(),
            });
        }
        Ok(key)
    }

    /// `Database.Check` at time `now`: supported format, signing key found and owned by the
    /// authority, key valid at `now`, signature, constraints, timestamp within the key's
    /// validity (serial, model, account), and the consistency rules of account, account-key
    /// and serial (a serial whose authority is not its brand is rejected here: that needs the
    /// model, see [`TrustDb::check_serial_with_model`]).
    pub fn check(&self, a: &Assertion, now: OffsetDateTime) -> Result<(), TrustError> {
        let key = self.check_signed(a, now)?;
        match a.kind() {
            AssertionType::Account => {
                let authority = a.authority_id().unwrap_or_default();
                if !self.is_trusted_account(authority) {
                    let id = a.header_str("account-id").unwrap_or_default();
                    return Err(TrustError::Consistency(format!(
                        "account assertion for {id:?} is not signed by a directly trusted authority: {authority}"
                    )));
                }
            }
            AssertionType::AccountKey => {
                let authority = a.authority_id().unwrap_or_default();
                let id = a.header_str("account-id").unwrap_or_default();
                if !self.is_trusted_account(authority) {
                    return Err(TrustError::Consistency(format!(
                        "account-key assertion for {id:?} is not signed by a directly trusted authority: {authority}"
                    )));
                }
                if self.account(id).is_none() {
                    return Err(TrustError::Consistency(format!(
                        "account-key assertion for {id:?} does not have a matching account assertion"
                    )));
                }
                if let Some(name) = a.header_str("name") {
                    let pk = a.header_str("public-key-sha3-384").unwrap_or_default();
                    if let Some(other) = self.inner.keys.values().find(|k| {
                        k.account_id() == id && k.name() == Some(name) && k.public_key_id() != pk
                    }) {
                        return Err(TrustError::Consistency(format!(
                            "account-key assertion for {id:?} with ID {pk:?} has the same name {name:?} as existing ID {:?}",
                            other.public_key_id()
                        )));
                    }
                }
            }
            AssertionType::Serial => {
                let brand = a.header_str("brand-id").unwrap_or_default();
                if a.authority_id() != Some(brand) {
                    return Err(TrustError::Consistency(format!(
                        "serial with authority {:?} different from brand {brand:?} without model assertion with serial-authority set to to allow for them",
                        a.authority_id().unwrap_or_default()
                    )));
                }
            }
            _ => {}
        }
        let _ = key;
        Ok(())
    }

    /// The checks common to every signed type; returns the signing key.
    fn check_signed(&self, a: &Assertion, now: OffsetDateTime) -> Result<&AccountKey, TrustError> {
        let kind = a.kind();
        if !a.supported_format() {
            return Err(TrustError::UnsupportedFormat(
                kind.name(),
                a.format(),
                kind.max_supported_format(),
            ));
        }
        if !kind.has_authority() {
            return Err(TrustError::NoAuthority(kind.name()));
        }
        let authority = a.authority_id().unwrap_or_default();
        let key = self.find_account_key(authority, a.sign_key_id())?;
        if !key.is_valid_at(now) {
            return Err(TrustError::KeyExpired {
                key_id: a.sign_key_id().to_owned(),
                authority: authority.to_owned(),
            });
        }
        // snapd's CheckSignature: the constraints before the signature.
        if !key.may_sign(a) {
            return Err(TrustError::Constraints {
                key_id: a.sign_key_id().to_owned(),
                authority: authority.to_owned(),
            });
        }
        self.verified.verify(a, key.public_key())?;
        if let Some(ts) = timestamp_of(a)
            && !key.is_valid_at(ts)
        {
            return Err(TrustError::TimestampOutsideKeyValidity(kind.name()));
        }
        Ok(key)
    }

    /// Checks a model assertion at `now`: signature by an account-key of its brand (authority
    /// = brand-id is enforced at decode), key valid at `now` and at the model's timestamp.
    pub fn check_model(&self, model: &Model, now: OffsetDateTime) -> Result<(), TrustError> {
        self.check_signed(model, now).map(|_| ())
    }

    /// Checks a serial as a device would with its model at hand: everything in
    /// [`TrustDb::check`], with the authority allowed when listed in the model's
    /// `serial-authority`.
    pub fn check_serial_with_model(
        &self,
        serial: &Assertion,
        model: &Model,
        now: OffsetDateTime,
    ) -> Result<(), TrustError> {
        self.check_signed(serial, now)?;
        let authority = serial.authority_id().unwrap_or_default();
        let brand = serial.header_str("brand-id").unwrap_or_default();
        if authority != brand
            && !(model.brand_id() == brand
                && serial.header_str("model") == Some(model.model())
                && model.serial_authority().iter().any(|a| a == authority))
        {
            return Err(TrustError::Consistency(format!(
                "serial with authority {authority:?} different from brand {brand:?} without model assertion with serial-authority set to to allow for them"
            )));
        }
        Ok(())
    }
}

/// The `timestamp` of the types snapd treats as `timestamped` among those we check.
fn timestamp_of(a: &Assertion) -> Option<OffsetDateTime> {
    match a.kind() {
        AssertionType::Serial | AssertionType::Model | AssertionType::Account => a
            .header_str("timestamp")
            .and_then(|t| crate::assertion::time::parse_rfc3339(t).ok()),
        _ => None,
    }
}

const ACCT: &str = r#"type: account
authority-id: canonical
account-id: canonical
display-name: Canonical
timestamp: 2016-04-01T00:00:00.0Z
username: canonical
validation: certified
sign-key-sha3-384: -CvQKAwRQ5h3Ffn10FILJoEZUXOv6km9FwA80-Rcj-f-6jadQ89VRswHNiEB9Lxk

AcLDXAQAAQoABgUCV7UYzwAKCRDUpVvql9g3IK7uH/4udqNOurx5WYVknzXdwekp0ovHCQJ0iBPw
TSFxEVr9faZSzb7eqJ1WicHsShf97PYS3ClRYAiluFsjRA8Y03kkSVJHjC+sIwGFubsnkmgflt6D
WEmYIl0UBmeaEDS8uY4Xvp9NsLTzNEj2kvzy/52gKaTc1ZSl5RDL9ppMav+0V9iBYpiDPBWH2rJ+
aDSD8Rkyygm0UscfAKyDKH4lrvZ0WkYyi1YVNPrjQ/AtBySh6Q4iJ3LifzKa9woIyAuJET/4/FPY
oirqHAfuvNod36yNQIyNqEc20AvTvZNH0PSsg4rq3DLjIPzv5KbJO9lhsasNJK1OdL6x8Yqrdsbk
ldZp4qkzfjV7VOMQKaadfcZPRaVVeJWOBnBiaukzkhoNlQi1sdCdkBB/AJHZF8QXw6c7vPDcfnCV
1lW7ddQ2p8IsJbT6LzpJu3GW/P4xhNgCjtCJ1AJm9a9RqLwQYgdLZwwDa9iCRtqTbRXBlfy3apps
1VjbQ3h5iCd0hNfwDBnGVm1rhLKHCD1DUdNE43oN2ZlE7XGyh0HFV6vKlpqoW3eoXCIxWu+HBY96
+LSl/jQgCkb0nxYyzEYK4Reb31D0mYw1Nji5W+MIF5E09+DYZoOT0UvR05YMwMEOeSdI/hLWg/5P
k+GDK+/KopMmpd4D1+jjtF7ZvqDpmAV98jJGB2F88RyVb4gcjmFFyTi4Kv6vzz/oLpbm0qrizC0W
HLGDN/ymGA5sHzEgEx7U540vz/q9VX60FKqL2YZr/DcyY9GKX5kCG4sNqIIHbcJneZ4frM99oVDu
7Jv+DIx/Di6D1ULXol2XjxbbJLKHFtHksR97ceaFvcZwTogC61IYUBJCvvMoqdXAWMhEXCr0QfQ5
Xbi31XW2d4/lF/zWlAkRnGTzufIXFni7+nEuOK0SQEzO3/WaRedK1SGOOtTDjB8/3OJeW96AUYK5
oTIynkYkEyHWMNCXALg+WQW6L4/YO7aUjZ97zOWIugd7Xy63aT3r/EHafqaY2nacOhLfkeKZ830b
o/ezjoZQAxbh6ce7JnXRgE9ELxjdAhBTpGjmmmN2sYrJ7zP9bOgly0BnEPXGSQfFA+NNNw1FADx1
MUY8q9DBjmVtgqY+1KGTV5X8KvQCBMODZIf/XJPHdCRAHxMd8COypcwgL2vDIIXpOFbi1J/B0GF+
eklxk9wzBA8AecBMCwCzIRHDNpD1oa2we38bVFrOug6e/VId1k1jYFJjiLyLCDmV8IMYwEllHSXp
LQAdm3xZ7t4WnxYC8YSCk9mXf3CZg59SpmnV5Q5Z6A5Pl7Nc3sj7hcsMBZEsOMPzNC9dPsBnZvjs
WpPUffJzEdhHBFhvYMuD4Vqj6ejUv9l3oTrjQWVC
"#;

const KEY: &str = r#"type: account-key
authority-id: canonical
revision: 2
public-key-sha3-384: -CvQKAwRQ5h3Ffn10FILJoEZUXOv6km9FwA80-Rcj-f-6jadQ89VRswHNiEB9Lxk
account-id: canonical
name: root
since: 2016-04-01T00:00:00.0Z
body-length: 1406
sign-key-sha3-384: -CvQKAwRQ5h3Ffn10FILJoEZUXOv6km9FwA80-Rcj-f-6jadQ89VRswHNiEB9Lxk

AcbDTQRWhcGAASAA4Zdo3CVpKmTecjd3VDBiFbZTKKhcG0UV3FXxyGIe2UsdnJIks4NkVYO+qYk0
zW26Svpa5OIOJGO2NcgN9bpCYWZOufO1xTmC7jW/fEtqJpX8Kcq20+X5AarqJ5RBVnGLrlz+ZT99
aHdRZ4YQ2XUZvhbelzWTdK5+2eMSXNrFjO6WwGh9NRekE/NIBNwvULAtJ5nv1KwZaSpZ+klJrstU
EHPhs+NGGm1Aru01FFl3cWUm5Ao8i9y+pFcPoaRatgtpYU8mg9gP594lvyJqjFofXvHPwztmySqf
FVAp4gLLfLvRxbXkOfPUz8guidqvg6r4DUD+kCBjKYoT44PjK6l51MzEL2IEy6jdnFTgjHbaYML8
/5NpuPu8XiSjCpOTeNR+XKzXC2tHRU7j09Xd44vKRhPk0Hc4XsPNBWqfrcbdWmwsFhjfxFDJajOq
hzWVoiRc5opB5socbRjLf+gYtncxe99oC2FDA2FcftlFoyztho0bAzeFer1IHJIMYWxKMESjvJUE
pnMMKpIMYY0QfWEo5hXR0TaT+NxW2Z9Jqclgyw13y5iY72ZparHS66J+C7dxCEOswlw1ypNic6MM
/OzpafIQ10yAT3HeRCJQQOOSSTaold+WpWsQweYCywPcu9S+wCo6CrPzJCCIxOAnXjLYv2ykTJje
pNJ2+GZ1WH2UeJdJ5sR8fpxxRupqHuEKNRZ+2CqLmFC5kHNszoGolLEvGcK4BJciO4KihnKtxrdX
dUJIOPBLktA8XiiHSOmLzs2CFjcvlDuPSpe64HIL5yCxO1/GRux4A1Kht1+DqTrL7DjyIW+vIPro
A1PQwkcAJyScNRxT4bPpUj8geAXWd3n212W+7QVHuQEFezvXC5GbMyR+Xj47FOFcFcSZID1hTZEu
uMD+AxaBHQKwPfBx1arVKE1OhkuKHeSFtZRP8K8l3qj5W0sIxxIW19W8aziu8ZeDMT+nIEJrJvhx
zGEdxwCrp3k2/93oDV7g+nb1ZGfIhtmcrKziijghzPLaYaiM9LggqwTARelk3xSzd8+uk3LPXuVl
fP8/xHApss6sCE3xk4+F3OGbL7HbGuCnoulf795XKLRTy+xU/78piOMNJJQu+G0lMZIO3cZrP6io
MYDa+jDZw4V4fBRWce/FA3Ot1eIDxCq5v+vfKw+HfUlWcjm6VUQIFZYbK+Lzj6mpXn81BugG3d+M
0WNFObXIrUbhnKcYkus3TSJ9M1oMEIMp0WfFGAVTd61u36fdi2e+/xbLN0kbYcFRZwd9CmtEeDZ0
eYx/pvKKaNz/DfUr0piVCRwxuxQ0kVppklHPO4sOTFZUId8KLHg28LbszvupSsHP/nHlW8l5/VK6
4+KxRV2XofsUnwARAQAB

AcLDXAQAAQoABgUCV83kkgAKCRDUpVvql9g3IA9hIADAkn4VXnJIFblhMSBe6hbTy7z6AfOhZxXR
Ds/mHsiWfFT6ifGi9SpZowhRX+ff57YvFCjlBqMYLKYE0NsFQYEUc5uBWiFZwC0ENydNhO23DV1B
elTSs6mr9duPm1eJAozFrQETOD1kz5BIamqBUeaTczjM+9l5i485Ffknbc+EaGOrtMEap0GqjByQ
u+ykZGvryVQ447avgjvFsMtA0quFi+SoW9PT/9D26e5rD7RIICYWG8mzFRn5Isqs/X4W1uAiKQe9
pqHMbdNr/FCWX5ws0/nMaOq+b0z4EIIXIfT0JmIlFDQsAgFVnKwYw+zs32cTw4XuzvMhgMDtCowD
YodhiO/5AOMsMMV0qBsYxbIPJIEz7b6gwTYEJoTVkqTit6o3UgWrAy+p4Y7t0ickYIHgwiuKRS9E
fu0Ue+32NFp0XFqZElfXLK/U2yjto+fJXu6uAELsXesfFGIOp/nbRbNavUt9jAJeO7ftQczgf39T
YfA0OKerP5gAOd4+aO3gATPUjfWPsJ9908XC7QqK2BwS1kh/fMrd95mxcmXdF1bBElszKwaToBVQ
1m52EYp06kkPyOu+fGKFAoIMafcV/2Ztz1WMo/Vp0iP/r0WAtBDw6sDJyWOfRjUEvP7BBdEzraHV
VblbSrKzhYeEGdMDi6kFC+KEzfPDPFJX1l3saPBkz9VDuESbktyObQp9VfkFKYBgBnw3msQJk+6k
G4t0o3/DZ7qz/kTJXMogG26Z/FsMhPERsaLTbWRJ3WRyXX8COaTladSf8bG0Oib19outnjuvpjQ0
qEV9eeGRBlx9mbidSYH95cj0zD2DKpeSZ83M5K1pFg+8RKToGElGTTk8vtdTfDVbmi3+QntfLq+z
ZMgs2+SmCWrV/MPC04Dl00CXywdKPyf6toomqRP7A5fS7W8P9fdPn+a8JCblcleGj9nvJXBQjue7
97rofCEszhKhoE9fMCIUcSoTU9YAm5Jr+qclSEbV1pzwTvZ8auMIXtzEZV5n4aK4WPDV+lYCadrL
DlvJSJRuXRvIMbmvU9b8NxgG8AS88BkX3L9vlOpkMculwG1/iooQvxuFaJDargt370wAQo0lCpG3
MxnsSusymwnYegvvvr7Xp/KBLZK1+8Djzm3fwAryp4qNo29ciVw3O9lFKmmuiIcxSY0bauXaK6kv
pTnYkmx7XGPF7Ahb7Ov0/0FE2Lx3JZXSEKeW+VrCcpYQOY++t67b+jf0AV4rZExcLFJzP6MPMimP
ZCd383NzlzkXK+vAdvTi40HPiM9FYOp6g8JTs5TTdx2/qs/SWFC8AkahIQmH0IpFBJep2JKl2kyr
FZMvASkHA9bR/UuXDvbMzsUmT/xnERZosQaZgFEO
"#;

/// An account or account-key named for messages: `account ID` or `account-key SHA3-384`.
pub fn describe(a: &Assertion) -> String {
    match a.kind() {
        AssertionType::Account => {
            format!("account {}", a.header_str("account-id").unwrap_or("?"))
        }
        AssertionType::AccountKey => format!(
            "account-key {}",
            a.header_str("public-key-sha3-384").unwrap_or("?")
        ),
        other => other.name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_canonical_root() {
        let db = TrustDb::builtin();
        assert!(db.is_trusted_account("canonical"));
        let key = db
            .account_key("-CvQKAwRQ5h3Ffn10FILJoEZUXOv6km9FwA80-Rcj-f-6jadQ89VRswHNiEB9Lxk")
            .expect("root key");
        assert_eq!(key.account_id(), "canonical");
        // Canonical's root account-key is RSA-8192 (body-length 1406); its serial and
        // store keys below it are RSA-4096.
        assert_eq!(key.public_key().bits(), 8192);
        assert_eq!(
            db.account("canonical").map(|a| a.validation()),
            Some("verified")
        );
    }
}
