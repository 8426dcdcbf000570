//! The snapshot's look-ups and the views it builds for registration.

use super::*;
use crate::store::{DuplicatePolicy, SerialGeneration};
use time::OffsetDateTime;

fn model(id: i64, name: &str, key: &str) -> Model {
    Model {
        id,
        brand_id: "acme".into(),
        name: name.into(),
        api_key: key.into(),
        rate_limit_per_sec: None,
        rate_limit_burst: None,
        duplicate_policy: DuplicatePolicy::Refuse,
        serial_generation: SerialGeneration::Uuid,
        serial_prefix: String::new(),
        enabled: true,
        created_at: OffsetDateTime::UNIX_EPOCH,
    }
}

fn key(id: i64, sha: &str, pattern: &str, active: bool) -> SigningKey {
    SigningKey {
        id,
        name: format!("k{id}"),
        brand_id: "acme".into(),
        sha3_384: Some(sha.into()),
        public_key: Some("PK".into()),
        allowed_types: vec!["serial".into()],
        model_pattern: pattern.into(),
        active,
        status: KeyStatus::Ready,
        error: None,
        created_at: OffsetDateTime::UNIX_EPOCH,
        origin: Default::default(),
        purpose: Default::default(),
    }
}

fn policy(model_id: i64, model: &str, revision: i32, key_id: i64, sha: &str) -> SerialPolicy {
    SerialPolicy {
        brand_id: "acme".into(),
        model: model.into(),
        model_id,
        revision,
        key_id,
        key_name: format!("k{key_id}"),
        key_sha3_384: sha.into(),
        created_at: OffsetDateTime::UNIX_EPOCH,
        created_by: "t".into(),
    }
}

fn assertion(kind: AssertionKind, pk: &str, account: &str) -> AccountAssertion {
    AccountAssertion {
        kind,
        primary_key: pk.into(),
        account_id: account.into(),
        revision: 0,
        text: format!("type: {}\n", kind.as_str()),
        pushed_at: OffsetDateTime::UNIX_EPOCH,
    }
}

#[test]
fn lookups_and_policy_checks() {
    let snap = Snapshot::build(
        vec!["acme".into()],
        vec![
            model(1, "widget", "shared-key-0123456"),
            model(2, "gadget", "shared-key-0123456"),
            model(3, "orphan", "other-key-01234567"),
            model(4, "limited", "other-key-01234567"),
        ],
        vec![
            policy(1, "widget", 2, 10, "K10"),
            policy(2, "gadget", 1, 11, "K11"),
            policy(4, "limited", 1, 12, "K12"),
        ],
        vec![
            key(10, "K10", "*", true),
            key(11, "K11", "*", false),
            key(12, "K12", "pc-*", true),
        ],
        vec![
            assertion(AssertionKind::AccountKey, "K10", "acme"),
            assertion(AssertionKind::Account, "acme", "acme"),
        ],
        &TrustDb::builtin(),
        7,
    );
    assert_eq!(snap.generation(), 7);
    assert!(snap.has_brand("acme"));
    assert_eq!(snap.models_by_api_key("shared-key-0123456").len(), 2);
    assert!(snap.models_by_api_key("nope").is_empty());
    assert_eq!(
        snap.model_by_api_key("shared-key-0123456", "acme", "gadget")
            .map(|m| m.id),
        Some(2)
    );
    assert!(
        snap.model_by_api_key("other-key-01234567", "acme", "widget")
            .is_none()
    );

    let widget = snap.model("acme", "widget").unwrap().clone();
    assert_eq!(snap.serial_signing_key(&widget).unwrap().id, 10);
    let gadget = snap.model_by_id(2).unwrap().clone();
    assert!(matches!(
        snap.serial_signing_key(&gadget),
        Err(PolicyError::KeyNotAllowed(..))
    ));
    let orphan = snap.model_by_id(3).unwrap().clone();
    assert!(matches!(
        snap.serial_signing_key(&orphan),
        Err(PolicyError::NoPolicy(_))
    ));
    let limited = snap.model_by_id(4).unwrap().clone();
    assert!(matches!(
        snap.serial_signing_key(&limited),
        Err(PolicyError::KeyNotAllowed(..))
    ));

    // Registration's views are built with the snapshot.
    let dm = snap.device_model("acme", "widget").unwrap();
    assert_eq!((dm.id, dm.api_key.as_str()), (1, "shared-key-0123456"));
    assert_eq!(snap.device_models().count(), 4);
    assert!(matches!(snap.serial_key(2), Err(KeyRefusal::NotAllowed(_))));
    assert!(matches!(snap.serial_key(3), Err(KeyRefusal::NotAllowed(_))));
    // K10's stored public key ("PK") does not decode: in scope, but not usable.
    assert!(matches!(
        snap.serial_key(1),
        Err(KeyRefusal::Unavailable(_))
    ));
    assert!(matches!(
        snap.serial_key(99),
        Err(KeyRefusal::NotAllowed(_))
    ));

    let (ak, acct) = snap.account_assertions_for_key("K10");
    assert_eq!(ak.unwrap().text, "type: account-key\n");
    assert_eq!(acct.unwrap().text, "type: account\n");
    assert_eq!(snap.account_assertions_for_key("K11"), (None, None));
}
