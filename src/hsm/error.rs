//! The HSM layer's errors: [`HsmError`] for callers, and the one function ([`classify`]) that
//! sorts every cryptoki failure into what the pool does about it.

use cryptoki::error::{Error as CkError, RvError};

/// What went wrong in the HSM layer, in terms a caller can act on.
///
/// Every message is one line and never contains a PIN.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HsmError {
    /// No token can serve the request right now (outage, recovery under way). The device side
    /// answers 503 with `Retry-After`; the pool heals itself in the background.
    #[error("HSM unavailable: {0}")]
    Unavailable(String),
    /// The configured token label is not present in any slot of the module.
    #[error("token {label:?} not found in {module}; tokens present: [{found}]", found = .found.join(", "))]
    TokenNotFound {
        /// The label asked for.
        label: String,
        /// The module searched.
        module: String,
        /// The labels of the tokens that are present.
        found: Vec<String>,
    },
    /// No key with this id on any token.
    #[error("key {0} not found on the token")]
    KeyNotFound(String),
    /// The token already holds a key with this id or name (an import is refused).
    #[error("{0}")]
    KeyExists(String),
    /// The caller's input was refused (bad key id, malformed DigestInfo, bad name, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// An operation did not finish in time (waiting for a session, key generation).
    #[error("timed out: {0}")]
    Timeout(String),
    /// A failure that retrying will not fix: wrong PIN, locked PIN, missing mechanism, a
    /// signature that does not verify, a module that cannot be loaded.
    #[error("HSM error: {0}")]
    Fatal(String),
}

impl HsmError {
    /// Whether the caller may retry later (device side: 503 + `Retry-After`).
    pub fn is_retryable(&self) -> bool {
        matches!(self, HsmError::Unavailable(_) | HsmError::Timeout(_))
    }
}

/// What the pool does about a cryptoki error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// The session (or the login, or a cached handle) is stale: drop the session, open a new
    /// one, log in again, re-find key handles, retry once.
    Reopen,
    /// The token, device or connection is gone: take the token out of rotation and recover it
    /// in the background (re-initialising its module instance when it has its own).
    TokenGone,
    /// The request itself is wrong; the session is fine.
    Caller,
    /// Nothing the pool can do: PIN problems, missing functions or mechanisms, library errors.
    Fatal,
}

/// The one mapping from cryptoki errors to what the pool does about them.
///
/// A broken p11-kit-client connection (server killed) shows up as `CKR_DEVICE_ERROR` on every
/// call until the module instance is finalized and initialized again (measured with p11-kit
/// 0.24.1), hence `DeviceError` is "token gone", not fatal.
pub(crate) fn classify(err: &CkError) -> ErrorClass {
    match err {
        CkError::Pkcs11(rv, _) => classify_rv(*rv),
        CkError::LibraryLoading(_)
        | CkError::NotSupported
        | CkError::NullFunctionPointer
        | CkError::MissingSymbol(_)
        | CkError::PinNotSet => ErrorClass::Fatal,
        CkError::TryFromInt(_)
        | CkError::TryFromSlice(_)
        | CkError::ParseInt(_)
        | CkError::Utf8(_)
        | CkError::NulError(_)
        | CkError::InvalidValue => ErrorClass::Caller,
    }
}

fn classify_rv(rv: RvError) -> ErrorClass {
    use RvError::*;
    match rv {
        SessionHandleInvalid
        | SessionClosed
        | UserNotLoggedIn
        | ObjectHandleInvalid
        | KeyHandleInvalid
        | OperationActive
        | OperationNotInitialized
        | SessionCount => ErrorClass::Reopen,
        DeviceRemoved
        | TokenNotPresent
        | DeviceError
        | DeviceMemory
        | SlotIdInvalid
        | CryptokiNotInitialized
        | TokenNotRecognized
        | GeneralError
        | FunctionFailed
        | HostMemory => ErrorClass::TokenGone,
        ArgumentsBad
        | DataInvalid
        | DataLenRange
        | EncryptedDataInvalid
        | EncryptedDataLenRange
        | KeyTypeInconsistent
        | KeySizeRange
        | KeyFunctionNotPermitted
        | KeyNotWrappable
        | KeyUnextractable
        | MechanismParamInvalid
        | AttributeReadOnly
        | AttributeSensitive
        | AttributeTypeInvalid
        | AttributeValueInvalid
        | TemplateIncomplete
        | TemplateInconsistent
        | SignatureInvalid
        | SignatureLenRange
        | BufferTooSmall
        | TokenWriteProtected => ErrorClass::Caller,
        _ => ErrorClass::Fatal,
    }
}

/// A short name for a cryptoki error, for health reports and metrics labels (no secrets).
pub(crate) fn error_name(err: &CkError) -> String {
    match err {
        CkError::Pkcs11(rv, f) => format!("{rv:?} in {f:?}"),
        CkError::LibraryLoading(_) => "LibraryLoading".into(),
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    fn rv(rv: RvError) -> ErrorClass {
        classify(&CkError::Pkcs11(rv, Function::Sign))
    }

    #[track_caller]
    fn all_classed(errors: &[RvError], class: ErrorClass) {
        for e in errors {
            assert_eq!(rv(*e), class, "{e:?}");
        }
    }

    #[test]
    fn session_level_errors_reopen() {
        all_classed(
            &[
                RvError::SessionHandleInvalid,
                RvError::SessionClosed,
                RvError::UserNotLoggedIn,
                RvError::ObjectHandleInvalid,
            ],
            ErrorClass::Reopen,
        );
    }

    #[test]
    fn device_level_errors_take_the_token_out() {
        all_classed(
            &[
                RvError::DeviceRemoved,
                RvError::TokenNotPresent,
                RvError::DeviceError,
                RvError::CryptokiNotInitialized,
            ],
            ErrorClass::TokenGone,
        );
    }

    #[test]
    fn caller_and_fatal_errors() {
        assert_eq!(rv(RvError::DataLenRange), ErrorClass::Caller);
        assert_eq!(rv(RvError::PinIncorrect), ErrorClass::Fatal);
        assert_eq!(rv(RvError::PinLocked), ErrorClass::Fatal);
        assert_eq!(rv(RvError::MechanismInvalid), ErrorClass::Fatal);
    }

    #[test]
    fn messages_are_one_line() {
        let e = HsmError::TokenNotFound {
            label: "x".into(),
            module: "/m.so".into(),
            found: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            e.to_string(),
            "token \"x\" not found in /m.so; tokens present: [a, b]"
        );
    }
}
