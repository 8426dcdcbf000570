//! The assertion type table (snapd `asserts/asserts.go`: names, primary keys, authority flag,
//! max formats). The per-type decode checks are in `checks`.

/// Every assertion type snapd 2.57 knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum AssertionType {
    Account,
    AccountKey,
    Repair,
    Model,
    Serial,
    BaseDeclaration,
    SnapDeclaration,
    SnapBuild,
    SnapRevision,
    SnapDeveloper,
    SystemUser,
    Validation,
    ValidationSet,
    Store,
    AuthorityDelegation,
    Preseed,
    DeviceSessionRequest,
    SerialRequest,
    AccountKeyRequest,
}

type PrimaryKey = &'static [(&'static str, Option<&'static str>)];

impl AssertionType {
    const ALL: [AssertionType; 19] = [
        Self::Account,
        Self::AccountKey,
        Self::Repair,
        Self::Model,
        Self::Serial,
        Self::BaseDeclaration,
        Self::SnapDeclaration,
        Self::SnapBuild,
        Self::SnapRevision,
        Self::SnapDeveloper,
        Self::SystemUser,
        Self::Validation,
        Self::ValidationSet,
        Self::Store,
        Self::AuthorityDelegation,
        Self::Preseed,
        Self::DeviceSessionRequest,
        Self::SerialRequest,
        Self::AccountKeyRequest,
    ];

    /// The `type` header value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::AccountKey => "account-key",
            Self::Repair => "repair",
            Self::Model => "model",
            Self::Serial => "serial",
            Self::BaseDeclaration => "base-declaration",
            Self::SnapDeclaration => "snap-declaration",
            Self::SnapBuild => "snap-build",
            Self::SnapRevision => "snap-revision",
            Self::SnapDeveloper => "snap-developer",
            Self::SystemUser => "system-user",
            Self::Validation => "validation",
            Self::ValidationSet => "validation-set",
            Self::Store => "store",
            Self::AuthorityDelegation => "authority-delegation",
            Self::Preseed => "preseed",
            Self::DeviceSessionRequest => "device-session-request",
            Self::SerialRequest => "serial-request",
            Self::AccountKeyRequest => "account-key-request",
        }
    }

    /// Looks a type up by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Primary-key headers in order, with the default of optional ones.
    pub fn primary_key(self) -> PrimaryKey {
        match self {
            Self::Account => &[("account-id", None)],
            Self::AccountKey | Self::AccountKeyRequest => &[("public-key-sha3-384", None)],
            Self::Repair => &[("brand-id", None), ("repair-id", None)],
            Self::Model => &[("series", None), ("brand-id", None), ("model", None)],
            Self::Serial | Self::DeviceSessionRequest => {
                &[("brand-id", None), ("model", None), ("serial", None)]
            }
            Self::BaseDeclaration => &[("series", None)],
            Self::SnapDeclaration => &[("series", None), ("snap-id", None)],
            Self::SnapBuild => &[("snap-sha3-384", None)],
            Self::SnapRevision => &[
                ("snap-sha3-384", None),
                ("provenance", Some("global-upload")),
            ],
            Self::SnapDeveloper => &[("snap-id", None), ("publisher-id", None)],
            Self::SystemUser => &[("brand-id", None), ("email", None)],
            Self::Validation => &[
                ("series", None),
                ("snap-id", None),
                ("approved-snap-id", None),
                ("approved-snap-revision", None),
            ],
            Self::ValidationSet => &[
                ("series", None),
                ("account-id", None),
                ("name", None),
                ("sequence", None),
            ],
            Self::Store => &[("store", None)],
            Self::AuthorityDelegation => &[("account-id", None), ("delegate-id", None)],
            Self::Preseed => &[
                ("series", None),
                ("brand-id", None),
                ("model", None),
                ("system-label", None),
            ],
            Self::SerialRequest => &[],
        }
    }

    /// Whether the type carries an `authority-id` (all but the self-signed request types).
    pub fn has_authority(self) -> bool {
        !matches!(
            self,
            Self::DeviceSessionRequest | Self::SerialRequest | Self::AccountKeyRequest
        )
    }

    /// The highest `format` snapd 2.57 supports (`maxSupportedFormat`), except account-key
    /// which is 1 here: serialmint parses `constraints` (snapd 2.61+).
    pub fn max_supported_format(self) -> u32 {
        match self {
            Self::SnapDeclaration => 5,
            Self::SystemUser | Self::AccountKey => 1,
            _ => 0,
        }
    }
}
