//! The `model` assertion (snapd `asserts/model.go` `assembleModel`): pre-UC20 form (gadget,
//! kernel, required-snaps) and UC20+ form (`snaps` list of maps, grade, storage-safety).
//!
//! Snap names, snap ids and channels inside the model are checked for shape only (string
//! types, presence, essential-snap rules); snapd's `naming.ValidateSnap` and channel grammar
//! are not replicated.

use std::ops::Deref;

use time::OffsetDateTime;

use super::error::CheckError;
use super::headers::{self, HeaderValue};
use super::types::{AssertionType, Parsed, is_string, string_list_matching, valid_account_id};
use super::{Assertion, WrongType};

/// Values checked and computed when a model decodes.
#[derive(Debug, Clone)]
pub struct ModelData {
    timestamp: OffsetDateTime,
    classic: bool,
    grade: Option<String>,
    serial_authority: Vec<String>,
    system_user_authority: Option<Vec<String>>,
}

const GRADES: [&str; 3] = ["secured", "signed", "dangerous"];
const STORAGE_SAFETIES: [&str; 3] = ["encrypted", "prefer-encrypted", "prefer-unencrypted"];

fn invalid(m: impl Into<String>) -> CheckError {
    CheckError::Invalid(m.into())
}

pub(crate) fn check(a: &Assertion) -> Result<ModelData, CheckError> {
    let h = a.headers();
    let brand = a.header_str("brand-id").unwrap_or_default();
    let authority = a.authority_id().unwrap_or_default();
    if brand != authority {
        return Err(invalid(format!(
            "authority-id and brand-id must match, model assertions are expected to be signed by the brand: {authority:?} != {brand:?}"
        )));
    }
    super::types::check_model(h)?;
    let classic = headers::optional_bool(h, "classic")?;
    let extended = h.contains_key("snaps");
    if extended {
        for c in ["gadget", "kernel", "required-snaps"] {
            if h.contains_key(c) {
                return Err(invalid(format!(
                    "cannot specify separate {c:?} header once using the extended snaps header"
                )));
            }
        }
    } else {
        if h.contains_key("grade") {
            return Err(invalid(
                "cannot specify a grade for model without the extended snaps header",
            ));
        }
        if h.contains_key("storage-safety") {
            return Err(invalid(
                "cannot specify storage-safety for model without the extended snaps header",
            ));
        }
    }
    if classic && !extended {
        for c in ["kernel", "base"] {
            if h.contains_key(c) {
                return Err(invalid(format!(
                    "cannot specify a {c} with a non-extended classic model"
                )));
            }
        }
    }
    if classic && extended {
        headers::not_empty_string(h, "distribution")?;
    } else if h.contains_key("distribution") {
        return Err(invalid(
            "cannot specify distribution for model unless it is classic and has an extended snaps header",
        ));
    }
    let (mandatory, optional): (&[&str], bool) = if extended {
        (&["architecture", "base"], false)
    } else if classic {
        (&["architecture", "gadget"], true)
    } else {
        (&["architecture", "gadget", "kernel"], false)
    };
    for m in mandatory {
        if optional {
            headers::optional_string(h, m)?;
        } else {
            headers::not_empty_string(h, m)?;
        }
    }
    let base = headers::optional_string(h, "base")?;
    headers::optional_string(h, "store")?;
    headers::optional_string(h, "display-name")?;
    let mut grade = None;
    if extended {
        let g = headers::optional_string(h, "grade")?;
        if !g.is_empty() && !GRADES.contains(&g) {
            return Err(invalid(format!(
                "grade for model must be {}, not {g:?}",
                GRADES.join("|")
            )));
        }
        let g = if g.is_empty() { "signed" } else { g };
        let ss = headers::optional_string(h, "storage-safety")?;
        if !ss.is_empty() && !STORAGE_SAFETIES.contains(&ss) {
            return Err(invalid(format!(
                "storage-safety for model must be {}, not {ss:?}",
                STORAGE_SAFETIES.join("|")
            )));
        }
        if g == "secured" && !ss.is_empty() && ss != "encrypted" {
            return Err(invalid(
                "secured grade model must not have storage-safety overridden, only \"encrypted\" is valid",
            ));
        }
        check_extended_snaps(h.get("snaps"), base)?;
        grade = Some(g.to_owned());
    } else {
        headers::string_list(h, "required-snaps")?;
    }
    let serial_authority = match h.get("serial-authority") {
        None => vec![brand.to_owned()],
        Some(_) => {
            let mut l =
                string_list_matching(h, "serial-authority", valid_account_id).map_err(|_| {
                    invalid("\"serial-authority\" header must be a list of account ids")
                })?;
            if !l.iter().any(|x| x == brand) {
                l.insert(0, brand.to_owned());
            }
            l
        }
    };
    let system_user_authority = match h.get("system-user-authority") {
        None => Some(vec![brand.to_owned()]),
        Some(HeaderValue::String(s)) if s == "*" => None,
        Some(HeaderValue::List(_)) => {
            let mut l = string_list_matching(h, "system-user-authority", valid_account_id)
                .map_err(|_| {
                    invalid("\"system-user-authority\" header must be '*' or a list of account ids")
                })?;
            if !l.iter().any(|x| x == brand) {
                l.insert(0, brand.to_owned());
            }
            Some(l)
        }
        Some(_) => {
            return Err(invalid(
                "\"system-user-authority\" header must be '*' or a list of account ids",
            ));
        }
    };
    let timestamp = headers::rfc3339(h, "timestamp")?;
    Ok(ModelData {
        timestamp,
        classic,
        grade,
        serial_authority,
        system_user_authority,
    })
}

/// `checkExtendedSnaps`, structurally: a list of maps with a name and type; exactly one gadget
/// and one kernel; essential snaps carry no modes or presence.
fn check_extended_snaps(v: Option<&HeaderValue>, base: &str) -> Result<(), CheckError> {
    const WRONG: &str = "\"snaps\" header must be a list of maps";
    let Some(HeaderValue::List(entries)) = v else {
        return Err(invalid(WRONG));
    };
    let (mut gadget, mut kernel, mut snapd) = (false, false, false);
    let mut seen = Vec::new();
    for e in entries {
        let HeaderValue::Map(m) = e else {
            return Err(invalid(WRONG));
        };
        let name = match m.get("name") {
            Some(HeaderValue::String(s)) if !s.is_empty() => s.as_str(),
            Some(HeaderValue::String(_)) => {
                return Err(invalid("\"name\" of snap should not be empty"));
            }
            Some(_) => return Err(invalid("\"name\" of snap must be a string")),
            None => return Err(invalid("\"name\" of snap is mandatory")),
        };
        for k in ["id", "type", "default-channel", "presence"] {
            if m.contains_key(k) && !is_string(m.get(k)) {
                return Err(invalid(format!("{k:?} of snap {name:?} must be a string")));
            }
        }
        if seen.contains(&name) {
            return Err(invalid(format!(
                "cannot list the same snap {name:?} multiple times"
            )));
        }
        seen.push(name);
        let typ = m.get("type").and_then(HeaderValue::as_str).unwrap_or("app");
        let flag = match typ {
            "gadget" => Some(&mut gadget),
            "kernel" => Some(&mut kernel),
            "snapd" => Some(&mut snapd),
            _ => None,
        };
        let essential = flag.is_some() || name == base;
        if let Some(f) = flag {
            if *f {
                return Err(invalid(format!("cannot specify multiple {typ} snaps")));
            }
            *f = true;
        } else if name == base && typ != "base" {
            return Err(invalid(format!(
                "boot base {base:?} must specify type \"base\", not {typ:?}"
            )));
        }
        if essential && (m.contains_key("modes") || m.contains_key("presence")) {
            return Err(invalid(format!(
                "essential snaps are always available, cannot specify modes or presence for snap {name:?}"
            )));
        }
    }
    if !gadget {
        return Err(invalid(
            "one \"snaps\" header entry must specify the model gadget",
        ));
    }
    if !kernel {
        return Err(invalid(
            "one \"snaps\" header entry must specify the model kernel",
        ));
    }
    Ok(())
}

/// A decoded, checked `model` assertion.
#[derive(Debug, Clone)]
pub struct Model(Assertion);

impl TryFrom<Assertion> for Model {
    type Error = WrongType;
    fn try_from(a: Assertion) -> Result<Self, WrongType> {
        match a.parsed {
            Parsed::Model(_) => Ok(Self(a)),
            _ => Err(WrongType {
                expected: AssertionType::Model,
                found: a.kind(),
            }),
        }
    }
}

impl Deref for Model {
    type Target = Assertion;
    fn deref(&self) -> &Assertion {
        &self.0
    }
}

impl Model {
    fn data(&self) -> &ModelData {
        match &self.0.parsed {
            Parsed::Model(d) => d,
            _ => unreachable!("Model is only built from a parsed model"),
        }
    }

    /// The whole assertion.
    pub fn into_inner(self) -> Assertion {
        self.0
    }

    /// `brand-id`.
    pub fn brand_id(&self) -> &str {
        self.header_str("brand-id").unwrap_or_default()
    }

    /// `model`.
    pub fn model(&self) -> &str {
        self.header_str("model").unwrap_or_default()
    }

    /// `series` (always `16` today).
    pub fn series(&self) -> &str {
        self.header_str("series").unwrap_or_default()
    }

    /// `timestamp`.
    pub fn timestamp(&self) -> OffsetDateTime {
        self.data().timestamp
    }

    /// Whether `classic: true`.
    pub fn classic(&self) -> bool {
        self.data().classic
    }

    /// The UC20+ grade (`signed` by default); `None` for pre-UC20 models.
    pub fn grade(&self) -> Option<&str> {
        self.data().grade.as_deref()
    }

    /// Whether this is the UC20+ form (has `snaps`).
    pub fn is_extended(&self) -> bool {
        self.data().grade.is_some()
    }

    /// Accounts allowed to sign serials for this model; the brand is always included.
    pub fn serial_authority(&self) -> &[String] {
        &self.data().serial_authority
    }

    /// Accounts allowed to sign system-users; `None` means `*`.
    pub fn system_user_authority(&self) -> Option<&[String]> {
        self.data().system_user_authority.as_deref()
    }
}
