//! The typed view of a `system-user` assertion (snapd `asserts/system_user.go`) and the
//! content of one to sign; its decode checks are in `checks::system_user`.

use time::OffsetDateTime;

use super::checks::{Parsed, SystemUserData};
use super::decoded::typed_view;
use super::headers::{HeaderValue, Headers};
use super::statement::{StatementError, build_checked};
use super::time::format_utc;
use super::types::AssertionType;

typed_view! {
    /// A decoded, checked `system-user` assertion.
    pub struct SystemUser(AssertionType::SystemUser, Parsed::SystemUser => SystemUserData);
    /// `brand-id` (the model's brand; the signer is `authority-id`).
    fn brand_id = "brand-id";
    /// `email`.
    fn email = "email";
    /// `username`.
    fn username = "username";
}

impl SystemUser {
    /// `models` (empty: any model of the brand).
    pub fn models(&self) -> &[String] {
        &self.data().models
    }

    /// `serials` (empty: any device).
    pub fn serials(&self) -> &[String] {
        &self.data().serials
    }

    /// `since`.
    pub fn since(&self) -> OffsetDateTime {
        self.data().since
    }

    /// `until`.
    pub fn until(&self) -> OffsetDateTime {
        self.data().until
    }
}

/// What a `system-user` to sign says. Strings are taken as given; the result is checked as
/// snapd decodes it before it is returned.
#[derive(Clone, Debug)]
pub struct SystemUserStatement<'a> {
    /// The signing account (`authority-id`).
    pub authority_id: &'a str,
    /// The model's brand (`brand-id`).
    pub brand_id: &'a str,
    /// `email`.
    pub email: &'a str,
    /// `models`.
    pub models: &'a [String],
    /// `serials` (the assertion is then format 1).
    pub serials: &'a [String],
    /// `name`.
    pub name: Option<&'a str>,
    /// `username`.
    pub username: &'a str,
    /// `password`: a crypt(3) hash, never the password.
    pub password_hash: Option<&'a str>,
    /// `ssh-keys`.
    pub ssh_keys: &'a [String],
    /// `since`.
    pub since: OffsetDateTime,
    /// `until`.
    pub until: OffsetDateTime,
    /// `force-password-change: true`.
    pub force_password_change: bool,
}

fn list(l: &[String]) -> HeaderValue {
    HeaderValue::List(l.iter().map(|s| HeaderValue::from(s.as_str())).collect())
}

/// The content of the system-user `s` signed by `sign_key_id` (series 16), checked as snapd
/// decodes it, and the assertion as it will decode.
pub fn system_user_content(
    s: &SystemUserStatement<'_>,
    sign_key_id: &str,
) -> Result<(Vec<u8>, SystemUser), StatementError> {
    let mut h = Headers::new();
    h.insert("authority-id".into(), s.authority_id.into());
    h.insert("brand-id".into(), s.brand_id.into());
    h.insert("email".into(), s.email.into());
    if !s.serials.is_empty() {
        h.insert("format".into(), "1".into());
        h.insert("serials".into(), list(s.serials));
    }
    h.insert("series".into(), list(&["16".to_owned()]));
    h.insert("models".into(), list(s.models));
    if let Some(name) = s.name {
        h.insert("name".into(), name.into());
    }
    h.insert("username".into(), s.username.into());
    if let Some(pw) = s.password_hash {
        h.insert("password".into(), pw.into());
    }
    if !s.ssh_keys.is_empty() {
        h.insert("ssh-keys".into(), list(s.ssh_keys));
    }
    h.insert("since".into(), format_utc(s.since).into());
    h.insert("until".into(), format_utc(s.until).into());
    if s.force_password_change {
        h.insert("force-password-change".into(), "true".into());
    }
    build_checked(AssertionType::SystemUser, &h, "", sign_key_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assertion::time::parse_rfc3339;

    const KEY: &str = "Jv8_JiHiIzJVcO9M55pPdqSDWUvuhfDIBJUS-3VW7F_idjix7Ffn5qMxB21ZQuij";
    const HASH: &str = "$6$rounds=5000$abcdefgh$0123456789abcdefghijABCDEFGHIJ./";

    fn statement<'a>(models: &'a [String], serials: &'a [String]) -> SystemUserStatement<'a> {
        SystemUserStatement {
            authority_id: "acme",
            brand_id: "acme",
            email: "tech@acme.example",
            models,
            serials,
            username: "tech",
            password_hash: Some(HASH),
            since: parse_rfc3339("2026-12-01T00:00:00Z").unwrap(),
            until: parse_rfc3339("2027-01-01T00:00:00Z").unwrap(),
            name: None,
            ssh_keys: &[],
            force_password_change: false,
        }
    }

    #[test]
    fn content_is_in_snapds_order_and_decodes() {
        let models = ["widget".to_owned()];
        let serials = ["S1".to_owned(), "S2".to_owned()];
        let (content, su) = system_user_content(&statement(&models, &serials), KEY).unwrap();
        assert_eq!(
            String::from_utf8(content).unwrap(),
            format!(
                "type: system-user\nformat: 1\nauthority-id: acme\nbrand-id: acme\n\
                 email: tech@acme.example\nmodels:\n  - widget\npassword: {HASH}\n\
                 serials:\n  - S1\n  - S2\nseries:\n  - 16\nsince: 2026-12-01T00:00:00Z\n\
                 until: 2027-01-01T00:00:00Z\nusername: tech\nsign-key-sha3-384: {KEY}\n\n"
            )
            .trim_end()
        );
        assert_eq!(su.serials(), serials);
        assert_eq!(su.models(), models);
        assert_eq!(su.username(), "tech");
    }

    #[test]
    fn what_snapd_would_not_decode_is_refused() {
        let models = ["widget".to_owned()];
        let two = ["a".to_owned(), "b".to_owned()];
        let serials = ["S1".to_owned()];
        let err = |s: SystemUserStatement| system_user_content(&s, KEY).unwrap_err().to_string();
        assert!(err(statement(&two, &serials)).contains("\"models\" must specify exactly one"));
        let mut s = statement(&models, &[]);
        s.until = s.since - time::Duration::days(1);
        assert!(err(s).contains("'until' time cannot be before 'since' time"));
        let mut s = statement(&[], &[]);
        s.until = s.since + time::Duration::days(400);
        assert!(err(s).contains("more than 365 days"));
        let mut s = statement(&models, &[]);
        s.password_hash = Some("$1$salt$hash");
        assert!(err(s).contains("only supports $id$ values of 6"));
        let mut s = statement(&models, &[]);
        s.password_hash = None;
        s.force_password_change = true;
        assert!(err(s).contains("cannot use \"force-password-change\" with an empty"));
        let mut s = statement(&models, &[]);
        s.email = "not an address";
        assert!(err(s).contains("RFC 5322"));
        let mut s = statement(&models, &[]);
        s.username = "Root";
        assert!(err(s).contains("\"username\""));
    }
}
