//! Tests across the module: whole assertions decoded, checked and read through their typed
//! views (the per-type checks' values and snapd's messages).

use super::openpgp::RsaPublicKey;
use super::{Account, AccountKey, Assertion, DecodeError, Model, decode};

const SIGN_KEY: &str =
    "sign-key-sha3-384: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Decodes `headers` (and `body`) with a placeholder signature: the checks do not verify it.
fn decode_text(headers: &str, body: &str) -> Result<Assertion, DecodeError> {
    let text = if body.is_empty() {
        format!("{headers}\n{SIGN_KEY}\n\nSIG")
    } else {
        format!(
            "{headers}\nbody-length: {}\n{SIGN_KEY}\n\n{body}\n\nSIG",
            body.len()
        )
    };
    decode(text.as_bytes())
}

const MODEL: &str = "type: model\nauthority-id: brand\nseries: 16\nbrand-id: brand\nmodel: pc\narchitecture: amd64\ngadget: pc\nkernel: pc-kernel\ntimestamp: 2024-01-01T00:00:00Z";

#[test]
fn model_values_and_messages() {
    let m = Model::try_from(decode_text(MODEL, "").unwrap()).unwrap();
    assert_eq!((m.brand_id(), m.model(), m.series()), ("brand", "pc", "16"));
    assert_eq!(m.serial_authority(), ["brand"]);
    assert_eq!(m.system_user_authority(), Some(&["brand".to_owned()][..]));
    assert!(!m.is_extended() && !m.classic() && m.grade().is_none());
    assert_eq!(m.timestamp().unix_timestamp(), 1_704_067_200);

    let other = MODEL.replace("authority-id: brand", "authority-id: other");
    assert_eq!(
        decode_text(&other, "").unwrap_err().to_string(),
        "assertion model: authority-id and brand-id must match, model assertions are \
         expected to be signed by the brand: \"other\" != \"brand\""
    );
    let upper = MODEL.replace("model: pc", "model: PC");
    assert_eq!(
        decode_text(&upper, "").unwrap_err().to_string(),
        "assertion model: \"model\" header cannot contain uppercase letters"
    );
    let bad_time = MODEL.replace("2024-01-01T00:00:00Z", "2024-01-01");
    assert_eq!(
        decode_text(&bad_time, "").unwrap_err().to_string(),
        "assertion model: \"timestamp\" header is not a RFC3339 date: parsing time \
         \"2024-01-01\" as \"2006-01-02T15:04:05Z07:00\""
    );
}

#[test]
fn account_maps_certified_to_verified() {
    let text = "type: account\nauthority-id: canonical\naccount-id: brand\ndisplay-name: Brand\nvalidation: certified\ntimestamp: 2024-01-01T00:00:00Z";
    let a = Account::try_from(decode_text(text, "").unwrap()).unwrap();
    assert_eq!((a.account_id(), a.display_name()), ("brand", "Brand"));
    assert_eq!(a.validation(), "verified");
    assert!(Model::try_from(a.into_inner()).is_err());
}

#[test]
fn account_key_values_and_messages() {
    let key = RsaPublicKey::new(&[0xC5; 256], &[1, 0, 1]);
    let text = format!(
        "type: account-key\nauthority-id: canonical\naccount-id: brand\nname: main\npublic-key-sha3-384: {}\nsince: 2024-01-01T00:00:00Z\nuntil: 2025-01-01T00:00:00Z",
        key.key_id()
    );
    let k = AccountKey::try_from(decode_text(&text, &key.encode()).unwrap()).unwrap();
    assert_eq!(k.public_key(), &key);
    assert_eq!(k.name(), Some("main"));
    assert!(k.constraints().is_none());

    let reversed = text.replace("until: 2025", "until: 2023");
    assert_eq!(
        decode_text(&reversed, &key.encode())
            .unwrap_err()
            .to_string(),
        "assertion account-key: 'until' time cannot be before 'since' time"
    );
    assert_eq!(
        decode_text(&text, "AQ==").unwrap_err().to_string(),
        "assertion account-key: cannot decode public key: openpgp: EOF"
    );
}
