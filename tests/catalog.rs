//! The catalog over a real Postgres: pushed account/account-key assertions join the trusted
//! roots in the snapshot (the device plane checks model assertions against it), stored public
//! keys are parsed, and one that no longer verifies is left out.

mod common;

use common::{TestKey, fixture, test_trust};
use serialmint::assertion::headers::Headers;
use serialmint::assertion::{AssertionType, build_content};
use serialmint::catalog::Catalog;
use serialmint::store::{Actor, AssertionKind, NewAccountAssertion, Store};
use sqlx::PgPool;

fn now() -> String {
    serialmint::assertion::time::format_utc(time::OffsetDateTime::now_utc())
}

fn account(signer: &TestKey, id: &str) -> String {
    let mut h = Headers::new();
    h.insert("authority-id".into(), "testrootorg".into());
    h.insert("account-id".into(), id.into());
    h.insert("display-name".into(), "Acme".into());
    h.insert("validation".into(), "verified".into());
    h.insert("timestamp".into(), now().into());
    let content = build_content(
        AssertionType::Account,
        &h,
        "",
        &TestKey::root().public.key_id(),
    )
    .unwrap();
    String::from_utf8(signer.sign(&content, 1_763_900_000)).unwrap()
}

fn account_key(signer: &TestKey, id: &str, key: &TestKey) -> String {
    let mut h = Headers::new();
    h.insert("authority-id".into(), "testrootorg".into());
    h.insert("account-id".into(), id.into());
    h.insert("name".into(), "models".into());
    h.insert("public-key-sha3-384".into(), key.public.key_id().into());
    h.insert("since".into(), now().into());
    let content = build_content(
        AssertionType::AccountKey,
        &h,
        &key.public.encode(),
        &TestKey::root().public.key_id(),
    )
    .unwrap();
    String::from_utf8(signer.sign(&content, 1_763_900_000)).unwrap()
}

#[sqlx::test]
async fn pushed_assertions_extend_the_trust_and_keys_are_parsed(pool: PgPool) {
    let _ = fixture("snapd/testrootorg.account");
    let store = Store::from_pool(pool);
    let actor = Actor("t".into());
    store.ensure_brand("acme", &actor).await.unwrap();
    let brand_key = TestKey::load("developer1.pk8");
    let forged_key = TestKey::store();
    let pushed = |kind, pk: &str, text: String| NewAccountAssertion {
        kind,
        primary_key: pk.into(),
        account_id: "acme".into(),
        revision: 0,
        text,
    };
    store
        .put_account_assertions(
            &[
                pushed(
                    AssertionKind::Account,
                    "acme",
                    account(&TestKey::root(), "acme"),
                ),
                pushed(
                    AssertionKind::AccountKey,
                    &brand_key.public.key_id(),
                    account_key(&TestKey::root(), "acme", &brand_key),
                ),
                // Stored by some bypass, but not signed by the root: never trusted.
                pushed(
                    AssertionKind::AccountKey,
                    &forged_key.public.key_id(),
                    account_key(&forged_key, "acme", &forged_key),
                ),
            ],
            &actor,
        )
        .await
        .unwrap();
    store
        .create_pending_key("serial-key", "acme", &[], "*", &actor)
        .await
        .unwrap();
    store
        .mark_key_ready(
            "serial-key",
            &brand_key.public.key_id(),
            &brand_key.public.encode(),
            &actor,
        )
        .await
        .unwrap();

    let catalog = Catalog::with_trust(store.clone(), test_trust());
    catalog.reload().await.unwrap();
    let snap = catalog.snapshot();
    assert!(snap.trust().account("acme").is_some());
    assert!(
        snap.trust()
            .account_key(&brand_key.public.key_id())
            .is_some()
    );
    assert!(
        snap.trust()
            .account_key(&forged_key.public.key_id())
            .is_none()
    );
    assert_eq!(
        snap.public_key(&brand_key.public.key_id()),
        Some(&brand_key.public)
    );
    let (key, acct) = snap.account_assertions_for_key(&brand_key.public.key_id());
    assert!(key.unwrap().text.contains("type: account-key"));
    assert!(acct.unwrap().text.contains("type: account"));

    // Without the pushed account, nothing of acme is trusted.
    let bare = Catalog::new(store);
    bare.reload().await.unwrap();
    assert!(bare.snapshot().trust().account("acme").is_none());
}
