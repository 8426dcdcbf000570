//! `constraints` of account-keys: every malformed form of `ROLE-SCOPED-KEYS.md` refused with
//! snapd's message (decoding whole account-keys), the format rule, and snapd's matching
//! semantics (anchoring, alternatives, lists, maps, missing headers).

use super::*;
use crate::assertion::headers::parse_headers;
use crate::assertion::openpgp::RsaPublicKey;
use crate::assertion::{AccountKey, DecodeError, decode};

const SIGN_KEY: &str =
    "sign-key-sha3-384: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// An account-key with `format` and this `constraints` block (indented lines after
/// `constraints:`), with a placeholder signature (decoding does not verify it).
fn account_key(format: u32, constraints: &str) -> Result<AccountKey, DecodeError> {
    let key = RsaPublicKey::new(&[0xC5; 256], &[1, 0, 1]);
    let body = key.encode();
    let format = if format > 0 {
        format!("format: {format}\n")
    } else {
        String::new()
    };
    let text = format!(
        "type: account-key\n{format}authority-id: canonical\naccount-id: brand\nname: serials\n\
         constraints:{constraints}\npublic-key-sha3-384: {}\nsince: 2024-01-01T00:00:00Z\n\
         body-length: {}\n{SIGN_KEY}\n\n{body}\n\nSIG",
        key.key_id(),
        body.len()
    );
    decode(text.as_bytes()).map(|a| AccountKey::try_from(a).unwrap())
}

fn refused(format: u32, constraints: &str) -> String {
    account_key(format, constraints).unwrap_err().to_string()
}

const SERIALS_AND_USERS: &str = "
  -
    headers:
      type: serial
      model: foo-.*
  -
    headers:
      type: system-user";

#[test]
fn a_well_formed_list_decodes_and_shows_compactly() {
    let k = account_key(1, SERIALS_AND_USERS).unwrap();
    let c = k.constraints().expect("constraints");
    assert_eq!(c.to_string(), "serial model=foo-.*; system-user");
    assert_eq!(c.types().collect::<Vec<_>>(), ["serial", "system-user"]);
    let alts = account_key(
        1,
        "
  -
    headers:
      type: serial
      model:
        - foo-.*
        - bar
      brand-id: acme",
    )
    .unwrap();
    assert_eq!(
        alts.constraints().unwrap().to_string(),
        "serial brand-id=acme model=[foo-.*, bar]"
    );
}

#[test]
fn every_malformed_form_gets_snapds_message() {
    let cases: &[(&str, &str)] = &[
        (" x", "assertions constraints must be a list of maps"),
        ("\n  - x", "assertions constraints must be a list of maps"),
        (
            "\n  -\n    headers: x",
            "\"headers\" constraint must be a map",
        ),
        (
            "\n  -\n    other:\n      type: serial",
            "\"headers\" constraint mandatory in asserions constraints",
        ),
        (
            "\n  -\n    headers:\n      model: foo",
            "type header constraint mandatory in asserions constraints",
        ),
        (
            "\n  -\n    headers:\n      type:\n        - serial\n        - model",
            "type header constraint must be a string",
        ),
        (
            "\n  -\n    headers:\n      type: preseed|model",
            "type header constraint must be a precise string and not a regexp",
        ),
        (
            "\n  -\n    headers:\n      type: serial\n      model: $X",
            "cannot compile headers constraint: cannot compile \"model\" constraint \"$X\": no $OP() or $REF constraints supported",
        ),
        (
            "\n  -\n    headers:\n      type: serial\n      model: $SLOT(x)",
            "cannot compile headers constraint: cannot compile \"model\" constraint \"$SLOT(x)\": no $OP() or $REF constraints supported",
        ),
        (
            "\n  -\n    headers:\n      type: serial\n      model:\n        -\n          - a\n          - b",
            "cannot compile headers constraint: cannot nest alternative constraints directly at \"model/alt#1/\"",
        ),
        (
            "\n  -\n    headers:\n      type: serial\n      model:\n        -\n          x: $Y",
            "cannot compile headers constraint: cannot compile \"model/alt#1/.x\" constraint \"$Y\": no $OP() or $REF constraints supported",
        ),
        (
            "\n  -\n    headers:\n      type: serial\n      model: foo(",
            "cannot compile headers constraint: cannot compile \"model\" constraint \"foo(\": error parsing regexp: unclosed group",
        ),
    ];
    for (block, want) in cases {
        assert_eq!(
            refused(1, block),
            format!("assertion account-key: {want}"),
            "constraints:{block}"
        );
    }
    // The first malformed entry refuses the whole list, even after a good one.
    assert_eq!(
        refused(1, &format!("{SERIALS_AND_USERS}\n  - x")),
        "assertion account-key: assertions constraints must be a list of maps"
    );
}

#[test]
fn constraints_need_format_1() {
    assert_eq!(
        refused(0, SERIALS_AND_USERS),
        "assertion account-key: account-key assertion with format set to 0 lower than min \
         format 1 covering included features"
    );
    // A malformed list is reported as such whatever the format.
    assert_eq!(
        refused(0, " x"),
        "assertion account-key: assertions constraints must be a list of maps"
    );
    // Format 2 is beyond what account-keys have.
    assert!(account_key(2, SERIALS_AND_USERS).unwrap().format() == 2);
    assert!(
        !account_key(2, SERIALS_AND_USERS)
            .unwrap()
            .supported_format()
    );
}

/// Headers from text, as a decoded assertion has them.
fn headers(text: &str) -> Headers {
    parse_headers(text.as_bytes()).unwrap()
}

fn parse(block: &str) -> Constraints {
    let h = headers(&format!("constraints:{block}"));
    Constraints::parse(&h["constraints"]).unwrap()
}

const SERIAL: &str = "type: serial\nauthority-id: acme\nbrand-id: acme\nmodel: foo-1\nserial: SN-7\nsign-key-sha3-384: K";

#[test]
fn strings_are_anchored_regexps() {
    let c = parse(SERIALS_AND_USERS);
    assert!(c.may_sign_headers(&headers(SERIAL)));
    // Anchored at both ends: no prefix or suffix slips through.
    for model in ["xfoo-1", "foo", "bar-foo-1"] {
        assert!(
            !c.may_sign_headers(&headers(&SERIAL.replace("foo-1", model))),
            "{model}"
        );
    }
    // `^(a|b)$`: alternation inside the pattern stays anchored.
    let alt = parse("\n  -\n    headers:\n      type: serial\n      model: a|b");
    assert!(alt.may_sign_headers(&headers(&SERIAL.replace("foo-1", "b"))));
    assert!(!alt.may_sign_headers(&headers(&SERIAL.replace("foo-1", "ab"))));
    // `type` is part of the entry: a model is not a serial.
    assert!(!c.may_sign_headers(&headers(&SERIAL.replace("type: serial", "type: model"))));
    assert!(c.may_sign_headers(&headers("type: system-user\nauthority-id: acme")));
}

#[test]
fn lists_are_alternatives_and_list_values_need_every_element() {
    let c = parse(
        "\n  -\n    headers:\n      type: serial\n      model:\n        - foo-.*\n        - bar",
    );
    assert!(c.may_sign_headers(&headers(SERIAL)));
    assert!(c.may_sign_headers(&headers(&SERIAL.replace("foo-1", "bar"))));
    assert!(!c.may_sign_headers(&headers(&SERIAL.replace("foo-1", "baz"))));

    // A list value matches only if each element matches.
    let tags = parse("\n  -\n    headers:\n      type: serial\n      tags: t[0-9]");
    let with = |list: &str| headers(&format!("{SERIAL}\ntags:{list}"));
    assert!(tags.may_sign_headers(&with("\n  - t1\n  - t2")));
    assert!(!tags.may_sign_headers(&with("\n  - t1\n  - x")));
    // A map value does not match a regexp.
    assert!(!tags.may_sign_headers(&with("\n  k: t1")));
}

#[test]
fn constrained_headers_must_be_present_unless_missing_is_asked() {
    let c = parse("\n  -\n    headers:\n      type: serial\n      serial: SN-.*");
    assert!(c.may_sign_headers(&headers(SERIAL)));
    assert!(!c.may_sign_headers(&headers(&SERIAL.replace("serial: SN-7\n", ""))));
    let missing = parse("\n  -\n    headers:\n      type: serial\n      revision: $MISSING");
    assert!(missing.may_sign_headers(&headers(SERIAL)));
    assert!(!missing.may_sign_headers(&headers(&format!("{SERIAL}\nrevision: 2"))));
    // Unconstrained headers do not matter.
    let only_type = parse("\n  -\n    headers:\n      type: serial");
    assert!(only_type.may_sign_headers(&headers(&format!("{SERIAL}\nextra: anything"))));
}

#[test]
fn maps_constrain_map_values_entry_by_entry() {
    let c = parse("\n  -\n    headers:\n      type: serial\n      meta:\n        line: l[12]");
    let with = |v: &str| headers(&format!("{SERIAL}\nmeta:{v}"));
    assert!(c.may_sign_headers(&with("\n  line: l1\n  other: x")));
    assert!(!c.may_sign_headers(&with("\n  line: l3")));
    assert!(!c.may_sign_headers(&with("\n  other: x")));
    assert!(!c.may_sign_headers(&with(" l1")));
}

#[test]
fn partial_matching_treats_unknown_headers_as_possible() {
    let c =
        parse("\n  -\n    headers:\n      type: serial\n      model: foo-.*\n      serial: SN-.*");
    let known = headers("type: serial\nauthority-id: acme\nbrand-id: acme\nmodel: foo-1");
    assert!(!c.may_sign_headers(&known));
    assert!(c.may_sign_partial(&known, &["serial"]));
    let other = headers("type: serial\nauthority-id: acme\nbrand-id: acme\nmodel: bar");
    assert!(!c.may_sign_partial(&other, &["serial"]));
    // An unknown header may stay unset, and an unnamed absent one stays refused.
    let missing = parse("\n  -\n    headers:\n      type: serial\n      revision: $MISSING");
    assert!(missing.may_sign_partial(&known, &["revision"]));
    assert!(!c.may_sign_partial(&known, &[]));
}

#[test]
fn go_and_rust_regexp_syntax_agree_on_the_usual_forms() {
    for (pattern, yes, no) in [
        ("[a-z]+-[0-9]{2,3}", "abc-12", "abc-1"),
        ("(?i)FOO", "foo", "bar"),
        ("foo-(x|y)\\.bar", "foo-y.bar", "foo-yzbar"),
        ("[[:digit:]]+", "123", "12a"),
        ("\\pL+", "héllo", "h1"),
    ] {
        let c = parse(&format!(
            "\n  -\n    headers:\n      type: serial\n      model: {pattern}"
        ));
        assert!(
            c.may_sign_headers(&headers(&SERIAL.replace("foo-1", yes))),
            "{pattern} {yes}"
        );
        assert!(
            !c.may_sign_headers(&headers(&SERIAL.replace("foo-1", no))),
            "{pattern} {no}"
        );
    }
}
