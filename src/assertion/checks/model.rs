//! The `model` checks (snapd `asserts/model.go` `assembleModel`): pre-UC20 form (gadget,
//! kernel, required-snaps) and UC20+ form (`snaps` list of maps, grade, storage-safety).
//!
//! Snap names, snap ids and channels inside the model are checked for shape only (string
//! types, presence, essential-snap rules); snapd's `naming.ValidateSnap` and channel grammar
//! are not replicated.

use time::OffsetDateTime;

use crate::assertion::error::CheckError;
use crate::assertion::headers::{self, HeaderValue, Headers, valid_account_id};

/// Values checked and computed when a model decodes.
#[derive(Debug, Clone)]
pub(crate) struct ModelData {
    pub(crate) timestamp: OffsetDateTime,
    pub(crate) classic: bool,
    /// `None` for the pre-UC20 form.
    pub(crate) grade: Option<String>,
    pub(crate) serial_authority: Vec<String>,
    /// `None` means `*`.
    pub(crate) system_user_authority: Option<Vec<String>>,
}

const GRADES: [&str; 3] = ["secured", "signed", "dangerous"];
const STORAGE_SAFETIES: [&str; 3] = ["encrypted", "prefer-encrypted", "prefer-unencrypted"];

/// `assembleModel`.
pub(crate) fn check(h: &Headers) -> Result<ModelData, CheckError> {
    let text = |name| {
        h.get(name)
            .and_then(HeaderValue::as_str)
            .unwrap_or_default()
    };
    let brand = text("brand-id");
    let authority = text("authority-id");
    if brand != authority {
        return Err(CheckError::invalid(format!(
            "authority-id and brand-id must match, model assertions are expected to be signed by the brand: {authority:?} != {brand:?}"
        )));
    }
    headers::model_header(h)?;
    let classic = headers::optional_bool(h, "classic")?;
    let extended = h.contains_key("snaps");
    if extended {
        for c in ["gadget", "kernel", "required-snaps"] {
            if h.contains_key(c) {
                return Err(CheckError::invalid(format!(
                    "cannot specify separate {c:?} header once using the extended snaps header"
                )));
            }
        }
    } else {
        if h.contains_key("grade") {
            return Err(CheckError::invalid(
                "cannot specify a grade for model without the extended snaps header",
            ));
        }
        if h.contains_key("storage-safety") {
            return Err(CheckError::invalid(
                "cannot specify storage-safety for model without the extended snaps header",
            ));
        }
    }
    if classic && !extended {
        for c in ["kernel", "base"] {
            if h.contains_key(c) {
                return Err(CheckError::invalid(format!(
                    "cannot specify a {c} with a non-extended classic model"
                )));
            }
        }
    }
    if classic && extended {
        headers::not_empty_string(h, "distribution")?;
    } else if h.contains_key("distribution") {
        return Err(CheckError::invalid(
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
            return Err(CheckError::invalid(format!(
                "grade for model must be {}, not {g:?}",
                GRADES.join("|")
            )));
        }
        let g = if g.is_empty() { "signed" } else { g };
        let ss = headers::optional_string(h, "storage-safety")?;
        if !ss.is_empty() && !STORAGE_SAFETIES.contains(&ss) {
            return Err(CheckError::invalid(format!(
                "storage-safety for model must be {}, not {ss:?}",
                STORAGE_SAFETIES.join("|")
            )));
        }
        if g == "secured" && !ss.is_empty() && ss != "encrypted" {
            return Err(CheckError::invalid(
                "secured grade model must not have storage-safety overridden, only \"encrypted\" is valid",
            ));
        }
        check_extended_snaps(h.get("snaps"), base, g)?;
        grade = Some(g.to_owned());
    } else {
        headers::string_list(h, "required-snaps")?;
    }
    let serial_authority = match h.get("serial-authority") {
        None => vec![brand.to_owned()],
        Some(_) => {
            let mut l = headers::string_list_matching(h, "serial-authority", valid_account_id)
                .map_err(|_| {
                    CheckError::invalid("\"serial-authority\" header must be a list of account ids")
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
            let mut l = headers::string_list_matching(h, "system-user-authority", valid_account_id)
                .map_err(|_| {
                    CheckError::invalid(
                        "\"system-user-authority\" header must be '*' or a list of account ids",
                    )
                })?;
            if !l.iter().any(|x| x == brand) {
                l.insert(0, brand.to_owned());
            }
            Some(l)
        }
        Some(_) => {
            return Err(CheckError::invalid(
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

/// `checkModelSnap`'s snap id (snapd `asserts/model.go`, `naming.ValidSnapID`): optional
/// only for `dangerous` models (local snaps not in a store yet).
fn check_snap_id(id: Option<&str>, name: &str, grade: &str) -> Result<(), CheckError> {
    match id {
        None if grade != "dangerous" => Err(CheckError::invalid(format!(
            "\"id\" of snap {name:?} is mandatory for {grade} grade model"
        ))),
        None => Ok(()),
        Some("") => Err(CheckError::invalid(format!(
            "\"id\" of snap {name:?} should not be empty"
        ))),
        Some(id) if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            Err(CheckError::invalid(format!(
                "\"id\" of snap {name:?} contains invalid characters: {id:?}"
            )))
        }
        Some(_) => Ok(()),
    }
}

/// `checkExtendedSnaps`, structurally: a list of maps with a name and type; a snap id (32
/// letters and digits), mandatory unless the grade is `dangerous`; exactly one gadget and one
/// kernel; essential snaps carry no modes or presence.
fn check_extended_snaps(
    v: Option<&HeaderValue>,
    base: &str,
    grade: &str,
) -> Result<(), CheckError> {
    const WRONG: &str = "\"snaps\" header must be a list of maps";
    let Some(HeaderValue::List(entries)) = v else {
        return Err(CheckError::invalid(WRONG));
    };
    let (mut gadget, mut kernel, mut snapd) = (false, false, false);
    let mut seen = Vec::new();
    for e in entries {
        let HeaderValue::Map(m) = e else {
            return Err(CheckError::invalid(WRONG));
        };
        let name = match m.get("name") {
            Some(HeaderValue::String(s)) if !s.is_empty() => s.as_str(),
            Some(HeaderValue::String(_)) => {
                return Err(CheckError::invalid("\"name\" of snap should not be empty"));
            }
            Some(_) => return Err(CheckError::invalid("\"name\" of snap must be a string")),
            None => return Err(CheckError::invalid("\"name\" of snap is mandatory")),
        };
        for k in ["id", "type", "default-channel", "presence"] {
            if m.get(k).is_some_and(|v| v.as_str().is_none()) {
                return Err(CheckError::invalid(format!(
                    "{k:?} of snap {name:?} must be a string"
                )));
            }
        }
        check_snap_id(m.get("id").and_then(HeaderValue::as_str), name, grade)?;
        if seen.contains(&name) {
            return Err(CheckError::invalid(format!(
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
                return Err(CheckError::invalid(format!(
                    "cannot specify multiple {typ} snaps"
                )));
            }
            *f = true;
        } else if name == base && typ != "base" {
            return Err(CheckError::invalid(format!(
                "boot base {base:?} must specify type \"base\", not {typ:?}"
            )));
        }
        if essential && (m.contains_key("modes") || m.contains_key("presence")) {
            return Err(CheckError::invalid(format!(
                "essential snaps are always available, cannot specify modes or presence for snap {name:?}"
            )));
        }
    }
    if !gadget {
        return Err(CheckError::invalid(
            "one \"snaps\" header entry must specify the model gadget",
        ));
    }
    if !kernel {
        return Err(CheckError::invalid(
            "one \"snaps\" header entry must specify the model kernel",
        ));
    }
    Ok(())
}
