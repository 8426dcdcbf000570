//! `system-user` (snapd `asserts/system_user.go`, `assembleSystemUser`): email, the series /
//! models / serials lists (serials only in format 1, with exactly one model), username, a
//! crypt(3) password hash of id 6 or above (`checkHashedPassword`), force-password-change
//! only with a password, ssh-keys, and `since` ≤ `until` (at most a year apart when no model
//! is named).
//!
//! The email check is stricter than Go's `mail.ParseAddress`: a bare `local@domain` of RFC
//! 5322 atoms, which Go accepts too (serialmint never emits a form Go would refuse).

use std::sync::LazyLock;

use time::OffsetDateTime;

use super::super::error::CheckError;
use super::super::headers::{self, Headers};

/// What a system-user's checks computed.
#[derive(Debug, Clone)]
pub(crate) struct SystemUserData {
    pub(crate) models: Vec<String>,
    pub(crate) serials: Vec<String>,
    pub(crate) since: OffsetDateTime,
    pub(crate) until: OffsetDateTime,
}

/// snapd's `validSystemUserUsernames`, byte for byte (`.-_` is a range, as in Go's RE2).
static USERNAME: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^[a-z0-9][-a-z0-9+.-_]*$").expect("the username pattern compiles")
});

pub(super) fn check(h: &Headers, format: u32) -> Result<SystemUserData, CheckError> {
    let email = headers::not_empty_string(h, "email")?;
    if !plain_address(email) {
        return Err(CheckError::invalid(format!(
            "\"email\" header must be a RFC 5322 compliant email address: {email:?}"
        )));
    }
    headers::string_list(h, "series")?;
    let models = headers::string_list(h, "models")?;
    let serials = headers::string_list(h, "serials")?;
    if !serials.is_empty() && format < 1 {
        return Err(CheckError::invalid(
            "the \"serials\" header is only supported for format 1 or greater",
        ));
    }
    if !serials.is_empty() && models.len() != 1 {
        return Err(CheckError::invalid(
            "in the presence of the \"serials\" header \"models\" must specify exactly one model",
        ));
    }
    headers::optional_string(h, "name")?;
    headers::string_matches(h, "username", |u| USERNAME.is_match(u))?;
    let password = hashed_password(h)?;
    if headers::optional_bool(h, "force-password-change")? && password.is_empty() {
        return Err(CheckError::invalid(
            "cannot use \"force-password-change\" with an empty \"password\"",
        ));
    }
    headers::string_list(h, "ssh-keys")?;
    let since = headers::rfc3339(h, "since")?;
    let until = headers::rfc3339(h, "until")?;
    if until < since {
        return Err(CheckError::invalid(
            "'until' time cannot be before 'since' time",
        ));
    }
    if models.is_empty() && until > since.replace_year(since.year() + 1).unwrap_or(since) {
        return Err(CheckError::invalid(
            "'until' time cannot be more than 365 days in the future when no models are specified",
        ));
    }
    Ok(SystemUserData {
        models,
        serials,
        since,
        until,
    })
}

/// `checkHashedPassword`: empty, or `$id$salt$hash` / `$id$rounds=N$salt$hash` with id ≥ 6,
/// 5000 ≤ N ≤ 999999999, salt and hash of `[a-zA-Z0-9./]+`.
fn hashed_password(h: &Headers) -> Result<&str, CheckError> {
    let pw = headers::optional_string(h, "password")?;
    if pw.is_empty() {
        return Ok(pw);
    }
    let invalid = |why: String| Err(CheckError::invalid(why));
    let l: Vec<&str> = pw.splitn(5, '$').collect();
    if l.len() != 4 && l.len() != 5 {
        return invalid(
            "\"password\" header invalid: hashed password must be of the form \
             \"$integer-id$salt$hash\", see crypt(3)"
                .into(),
        );
    }
    if l[2].starts_with("rounds=") && l.len() == 4 {
        return invalid("\"password\" header invalid: missing hash field".into());
    }
    let (id, rounds, salt, hash) = if l.len() == 4 {
        (l[1], "", l[2], l[3])
    } else {
        (l[1], l[2], l[3], l[4])
    };
    let Ok(id_n) = headers::go_atoi("password", id) else {
        return invalid(format!(
            "\"password\" header must start with \"$integer-id$\", got {id:?}"
        ));
    };
    if id_n < 6 {
        return invalid(
            "\"password\" header only supports $id$ values of 6 (sha512crypt) or higher".into(),
        );
    }
    if let Some(n) = rounds.strip_prefix("rounds=") {
        let Ok(n) = headers::go_atoi("rounds", n) else {
            return invalid(format!(
                "\"password\" header has invalid number of rounds: {n:?}"
            ));
        };
        if !(5000..=999_999_999).contains(&n) {
            return invalid(format!(
                "\"password\" header rounds parameter out of bounds: {n}"
            ));
        }
    }
    let crypt_chars = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    };
    if !crypt_chars(salt) {
        return invalid(format!(
            "\"password\" header has invalid chars in salt {salt:?}"
        ));
    }
    if !crypt_chars(hash) {
        return invalid(format!(
            "\"password\" header has invalid chars in hash {hash:?}"
        ));
    }
    Ok(pw)
}

/// `local@domain`, each side dot-separated RFC 5322 atoms (a subset of what Go's
/// `mail.ParseAddress` accepts).
fn plain_address(s: &str) -> bool {
    let atom = |a: &str| {
        !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b))
    };
    let dot_atoms = |p: &str| p.split('.').all(atom);
    match s.split_once('@') {
        Some((local, domain)) => dot_atoms(local) && dot_atoms(domain) && !domain.contains('@'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(plain_address("ops@acme.example"));
        assert!(plain_address("first.last+tag@x"));
        for bad in [
            "", "a", "a@", "@b", "a b@c", "a@b@c", "a..b@c", "<a@b>", "a@b.",
        ] {
            assert!(!plain_address(bad), "{bad}");
        }
    }

    #[test]
    fn usernames_follow_snapds_pattern() {
        for ok in ["tech", "a.b-c_d+e", "0day", "a:b"] {
            assert!(USERNAME.is_match(ok), "{ok}");
        }
        for bad in ["", "-a", "Tech", "a b", "_a"] {
            assert!(!USERNAME.is_match(bad), "{bad}");
        }
    }
}
