//! The store on a real Postgres: one fresh database per test (`#[sqlx::test]`, migrations
//! applied), so constraints, triggers and NOTIFY are exercised for real.

use serialmint::store::{
    Actor, AssertionKind, Change, DuplicatePolicy, Issuance, KeyStatus, LogFilter,
    NewAccountAssertion, NewModel, RecordOutcome, Role, SerialGeneration, Store, StoreError,
};
use sqlx::PgPool;

fn admin() -> Actor {
    Actor("tester".into())
}

async fn setup(pool: PgPool) -> (Store, i64) {
    let store = Store::from_pool(pool);
    store.ensure_brand("acme", &admin()).await.unwrap();
    let m = store
        .create_model(
            &NewModel {
                brand_id: "acme".into(),
                name: "widget".into(),
                api_key: "k".repeat(32),
                rate_limit_per_sec: None,
                rate_limit_burst: None,
                duplicate_policy: DuplicatePolicy::Refuse,
                serial_generation: SerialGeneration::Uuid,
                serial_prefix: String::new(),
            },
            &admin(),
        )
        .await
        .unwrap();
    (store, m.id)
}

async fn ready_key(store: &Store, name: &str, id: &str) {
    store
        .create_pending_key(name, "acme", &[], "*", &admin())
        .await
        .unwrap();
    store
        .mark_key_ready(name, id, "PUBLICKEY", &admin())
        .await
        .unwrap();
}

fn issuance(model_id: i64, serial: &str, device: &str, request: &str) -> Issuance {
    Issuance {
        brand_id: "acme".into(),
        model_id,
        model_name: "widget".into(),
        serial: serial.into(),
        revision: 0,
        device_key_id: device.into(),
        request_id: request.into(),
        signing_key_id: "signkey".into(),
        instance: "test".into(),
        serial_assertion: format!("type: serial\nserial: {serial}\ndevice: {device}\n"),
        original_serial: None,
        original_serial_id: None,
    }
}

#[sqlx::test]
async fn duplicate_issuance_is_impossible_and_replays_are_recognised(pool: PgPool) {
    let (store, model) = setup(pool).await;
    let first = store
        .record_issuances(&[issuance(model, "S1", "dev-a", "req-1")])
        .await
        .unwrap();
    let RecordOutcome::Inserted(row) = &first[0] else {
        panic!("first issuance must insert: {first:?}")
    };
    assert_eq!(row.issuance.serial, "S1");

    let batch = vec![
        // the same request again (lost answer): the earlier serial comes back
        issuance(model, "S1-other", "dev-a", "req-1"),
        // the same request-id from another device key
        issuance(model, "S2", "dev-b", "req-1"),
        // the same serial for another device key
        issuance(model, "S1", "dev-c", "req-3"),
        // the same serial, same device, new request-id: idempotent
        issuance(model, "S1", "dev-a", "req-4"),
        // new
        issuance(model, "S5", "dev-e", "req-5"),
        // inside one batch: the second of two identical serials for different devices
        issuance(model, "S5", "dev-f", "req-6"),
    ];
    let out = store.record_issuances(&batch).await.unwrap();
    match &out[0] {
        RecordOutcome::Replay(existing) => {
            // matched by the request-id
            assert_eq!(existing.issuance.request_id, "req-1");
            assert_eq!(existing.issuance.serial, "S1");
            assert!(existing.issuance.serial_assertion.contains("serial: S1\n"));
        }
        o => panic!("expected a replay, got {o:?}"),
    }
    assert!(matches!(
        &out[1],
        RecordOutcome::RequestIdUsed(existing) if existing.issuance.device_key_id == "dev-a"
    ));
    assert!(matches!(
        &out[2],
        RecordOutcome::SerialTaken(existing) if existing.issuance.device_key_id == "dev-a"
    ));
    // matched by the serial, not by the request-id
    assert!(matches!(
        &out[3],
        RecordOutcome::Replay(existing)
            if existing.issuance.serial == "S1" && existing.issuance.request_id != "req-4"
    ));
    assert!(matches!(&out[4], RecordOutcome::Inserted(r) if r.issuance.serial == "S5"));
    assert!(matches!(&out[5], RecordOutcome::SerialTaken(_)));

    // Exactly two rows exist, whatever was asked.
    let all = store
        .signing_log_page(&LogFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        store
            .find_issuance_by_request_id("req-5")
            .await
            .unwrap()
            .unwrap()
            .issuance
            .serial,
        "S5"
    );
    assert!(
        store
            .find_issuance_by_request_id("req-6")
            .await
            .unwrap()
            .is_none()
    );
}

/// Two rows for one request-id in the same group commit (a device retrying while its first
/// request is still being signed): the first is recorded, the second gets the first's serial.
#[sqlx::test]
async fn a_replay_inside_one_batch_gets_the_first_serial(pool: PgPool) {
    let (store, model) = setup(pool).await;
    let out = store
        .record_issuances(&[
            issuance(model, "U1", "dev-g", "req-7"),
            issuance(model, "U2", "dev-g", "req-7"),
            issuance(model, "U3", "dev-h", "req-7"),
            issuance(model, "U4", "dev-i", "req-8"),
        ])
        .await
        .unwrap();
    assert!(matches!(&out[0], RecordOutcome::Inserted(r) if r.issuance.serial == "U1"));
    // a replay by the request-id
    assert!(matches!(
        &out[1],
        RecordOutcome::Replay(existing)
            if existing.issuance.serial == "U1" && existing.issuance.request_id == "req-7"
    ));
    assert!(matches!(
        &out[2],
        RecordOutcome::RequestIdUsed(existing) if existing.issuance.serial == "U1"
    ));
    assert!(matches!(
        &out[3],
        RecordOutcome::Inserted(r) if r.issuance.serial == "U4" && r.issuance.request_id == "req-8"
    ));
}

#[sqlx::test]
async fn the_database_itself_refuses_duplicates(pool: PgPool) {
    let (store, model) = setup(pool.clone()).await;
    store
        .record_issuances(&[issuance(model, "S1", "dev-a", "req-1")])
        .await
        .unwrap();
    // Bypassing the store: a plain INSERT of the same serial fails on the constraint.
    let err = sqlx::query(
        "INSERT INTO signing_log (brand_id, model_id, model_name, serial, revision, device_key_id, \
         request_id, signing_key_id, instance, serial_assertion) \
         VALUES ('acme', $1, 'widget', 'S1', 0, 'dev-z', 'req-z', 'k', 'i', 'x')",
    )
    .bind(model)
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("signing_log_serial_key"), "{err}");
    // A re-issue with a new revision is a different row.
    let mut again = issuance(model, "S1", "dev-z", "req-z");
    again.revision = 1;
    let out = store.record_issuances(&[again]).await.unwrap();
    assert!(matches!(&out[0], RecordOutcome::Inserted(r) if r.issuance.revision == 1));
    assert_eq!(
        store
            .latest_issuance("acme", "widget", "S1")
            .await
            .unwrap()
            .unwrap()
            .issuance
            .revision,
        1
    );
}

#[sqlx::test]
async fn concurrent_identical_requests_issue_once(pool: PgPool) {
    let (store, model) = setup(pool).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // Each task proposes a different serial (as generated UUIDs would be) for the
            // same request-id and device key.
            store
                .record_issuances(&[issuance(model, &format!("U{i}"), "dev-a", "req-same")])
                .await
                .unwrap()
        }));
    }
    let mut inserted = 0;
    let mut serials = std::collections::HashSet::new();
    for t in tasks {
        match t.await.unwrap().remove(0) {
            RecordOutcome::Inserted(r) => {
                inserted += 1;
                serials.insert(r.issuance.serial);
            }
            RecordOutcome::Replay(existing) => {
                serials.insert(existing.issuance.serial);
            }
            o => panic!("unexpected {o:?}"),
        }
    }
    assert_eq!(inserted, 1);
    assert_eq!(serials.len(), 1, "every caller sees the one serial issued");
}

#[sqlx::test]
async fn serial_policies_are_append_only_and_the_newest_is_active(pool: PgPool) {
    let (store, _) = setup(pool.clone()).await;
    ready_key(&store, "key-one", "ID1").await;
    ready_key(&store, "key-two", "ID2").await;
    let p1 = store
        .create_serial_policy("acme", "widget", "ID1", &admin())
        .await
        .unwrap();
    let p2 = store
        .create_serial_policy("acme", "widget", "key-two", &admin())
        .await
        .unwrap();
    assert_eq!((p1.revision, p2.revision), (1, 2));
    assert_eq!(p2.key_sha3_384, "ID2");
    let active = store.active_serial_policies().await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].revision, 2);
    assert_eq!(active[0].key_sha3_384, "ID2");
    let history = store
        .serial_policies(Some("acme"), Some("widget"))
        .await
        .unwrap();
    assert_eq!(
        history.iter().map(|p| p.revision).collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(history[0].created_by, "tester");

    // The database refuses rewriting history.
    let err = sqlx::query("UPDATE serial_policies SET key_id = key_id")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = sqlx::query("DELETE FROM serial_policies")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[sqlx::test]
async fn policies_refuse_keys_that_cannot_sign(pool: PgPool) {
    let (store, _) = setup(pool).await;
    store
        .create_pending_key("slow", "acme", &[], "*", &admin())
        .await
        .unwrap();
    let e = store
        .create_serial_policy("acme", "widget", "slow", &admin())
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Invalid(ref m) if m.contains("pending")),
        "{e}"
    );
    store
        .create_pending_key("scoped", "acme", &[], "other-*", &admin())
        .await
        .unwrap();
    store
        .mark_key_ready("scoped", "ID9", "PK", &admin())
        .await
        .unwrap();
    let e = store
        .create_serial_policy("acme", "widget", "scoped", &admin())
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Invalid(ref m) if m.contains("may not sign")),
        "{e}"
    );
    ready_key(&store, "gone", "ID8").await;
    store.disable_key("gone", &admin()).await.unwrap();
    let e = store
        .create_serial_policy("acme", "widget", "gone", &admin())
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Invalid(ref m) if m.contains("disabled")),
        "{e}"
    );
}

#[sqlx::test]
async fn models_can_be_deleted_only_while_nothing_was_issued(pool: PgPool) {
    let (store, model) = setup(pool).await;
    ready_key(&store, "key-one", "ID1").await;
    store
        .create_serial_policy("acme", "widget", "key-one", &admin())
        .await
        .unwrap();
    store
        .record_issuances(&[issuance(model, "S1", "dev-a", "req-1")])
        .await
        .unwrap();
    let e = store
        .delete_model("acme", "widget", &admin())
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Conflict(ref m) if m.contains("issued")),
        "{e}"
    );

    // A second model with a policy but no serials can go, policy history and all.
    let mut other = store.model("acme", "widget").await.unwrap();
    other.name = "gadget".into();
    store
        .create_model(
            &NewModel {
                brand_id: "acme".into(),
                name: "gadget".into(),
                api_key: other.api_key.clone(),
                rate_limit_per_sec: Some(10),
                rate_limit_burst: None,
                duplicate_policy: DuplicatePolicy::Reissue,
                serial_generation: SerialGeneration::PrefixCounter,
                serial_prefix: "G-".into(),
            },
            &admin(),
        )
        .await
        .unwrap();
    store
        .create_serial_policy("acme", "gadget", "key-one", &admin())
        .await
        .unwrap();
    store
        .delete_model("acme", "gadget", &admin())
        .await
        .unwrap();
    assert!(matches!(
        store.model("acme", "gadget").await,
        Err(StoreError::NotFound(_))
    ));
}

#[sqlx::test]
async fn counters_and_the_request_id_secret_are_atomic(pool: PgPool) {
    let (store, model) = setup(pool).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.next_serial_counter(model).await.unwrap()
        }));
    }
    let mut values = Vec::new();
    for t in tasks {
        values.push(t.await.unwrap());
    }
    values.sort();
    assert_eq!(values, (1..=10).collect::<Vec<i64>>());

    let mut secrets = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        secrets.push(tokio::spawn(async move {
            store.request_id_secret().await.unwrap()
        }));
    }
    let mut got = Vec::new();
    for s in secrets {
        got.push(s.await.unwrap());
    }
    assert!(got.windows(2).all(|w| w[0] == w[1]));
    assert_ne!(got[0], [0u8; 32]);
}

#[sqlx::test]
async fn every_admin_change_is_notified_and_audited(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let mut listener = store.listen_changes().await.unwrap();
    store.ensure_brand("acme", &admin()).await.unwrap();
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), listener.next())
        .await
        .expect("a notification within 5 s")
        .unwrap();
    assert_eq!(n, Change::Changed("brand.create acme".into()));
    ready_key(&store, "k", "ID1").await;
    let mut payloads = Vec::new();
    for _ in 0..2 {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), listener.next())
            .await
            .unwrap()
            .unwrap();
        let Change::Changed(payload) = n else {
            panic!("expected a change, got {n:?}")
        };
        payloads.push(payload);
    }
    assert_eq!(payloads, ["key.create k", "key.ready k"]);
    let audit = store.audit_log(None, 10).await.unwrap();
    assert_eq!(audit[0].action, "key.ready");
    assert_eq!(audit[0].actor, "tester");

    // A change that fails notifies nothing: the NOTIFY is in the same transaction.
    assert!(
        store
            .create_pending_key("k", "acme", &[], "*", &admin())
            .await
            .is_err()
    );
    store.ensure_brand("other", &admin()).await.unwrap();
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), listener.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, Change::Changed("brand.create other".into()));
}

#[sqlx::test]
async fn tokens_are_stored_hashed_and_expire(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let t = store
        .create_token("ops", Role::ReadOnly, None, &admin())
        .await
        .unwrap();
    let info = store.authenticate(&t.secret).await.unwrap().unwrap();
    assert_eq!(info.role, Role::ReadOnly);
    assert!(store.authenticate("smt_wrong").await.unwrap().is_none());
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_sha256 FROM admin_tokens")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .all(|h| h.len() == 32 && h != t.secret.as_bytes())
    );
    let used: Option<time::OffsetDateTime> =
        sqlx::query_scalar("SELECT last_used_at FROM admin_tokens")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(used.is_some());
    let expired = store
        .create_token(
            "old",
            Role::Admin,
            Some(time::OffsetDateTime::now_utc() - time::Duration::minutes(1)),
            &admin(),
        )
        .await
        .unwrap();
    assert!(store.authenticate(&expired.secret).await.unwrap().is_none());
    // Counted as working exactly when they authenticate: not the expired admin token, not a
    // revoked one, and only for their role.
    assert_eq!(store.working_tokens(Role::Admin).await.unwrap(), 0);
    assert_eq!(store.working_tokens(Role::ReadOnly).await.unwrap(), 1);
    let fresh = store
        .create_token("new", Role::Admin, None, &admin())
        .await
        .unwrap();
    assert_eq!(store.working_tokens(Role::Admin).await.unwrap(), 1);
    store.revoke_token(fresh.info.id, &admin()).await.unwrap();
    assert_eq!(store.working_tokens(Role::Admin).await.unwrap(), 0);
}

#[sqlx::test]
async fn account_assertions_keep_the_highest_revision(pool: PgPool) {
    let store = Store::from_pool(pool);
    let a = |rev: i32, text: &str| NewAccountAssertion {
        kind: AssertionKind::AccountKey,
        primary_key: "KEYID".into(),
        account_id: "acme".into(),
        revision: rev,
        text: text.into(),
    };
    assert_eq!(
        store
            .put_account_assertions(&[a(1, "one")], &admin())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .put_account_assertions(&[a(0, "zero")], &admin())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .put_account_assertions(&[a(2, "two")], &admin())
            .await
            .unwrap(),
        1
    );
    let all = store.account_assertions().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].text, "two");
}

#[sqlx::test]
async fn the_signing_log_pages_filters_and_streams(pool: PgPool) {
    let (store, model) = setup(pool).await;
    let rows: Vec<Issuance> = (0..25)
        .map(|i| {
            issuance(
                model,
                &format!("{}-{i:02}", if i % 2 == 0 { "EVEN" } else { "ODD" }),
                &format!("dev-{i}"),
                &format!("req-{i}"),
            )
        })
        .collect();
    store.record_issuances(&rows).await.unwrap();
    let even = LogFilter {
        serial_prefix: Some("EVEN".into()),
        ..LogFilter::default()
    };
    let page1 = store.signing_log_page(&even, None, 5).await.unwrap();
    assert_eq!(page1.len(), 5);
    assert!(page1.windows(2).all(|w| w[0].id > w[1].id));
    let page2 = store
        .signing_log_page(&even, Some(page1.last().unwrap().id), 100)
        .await
        .unwrap();
    assert_eq!(page1.len() + page2.len(), 13);
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let s2 = store.clone();
    tokio::spawn(async move { s2.export_signing_log(&LogFilter::default(), tx).await });
    let mut n = 0;
    while let Some(r) = rx.recv().await {
        r.unwrap();
        n += 1;
    }
    assert_eq!(n, 25);
    let future = LogFilter {
        since: Some(time::OffsetDateTime::now_utc() + time::Duration::hours(1)),
        ..LogFilter::default()
    };
    assert!(
        store
            .signing_log_page(&future, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[sqlx::test]
async fn only_abandoned_pending_keys_are_failed(pool: PgPool) {
    let (store, _) = setup(pool.clone()).await;
    store
        .create_pending_key("fresh", "acme", &[], "*", &admin())
        .await
        .unwrap();
    store
        .create_pending_key("old", "acme", &[], "*", &admin())
        .await
        .unwrap();
    sqlx::query(
        "UPDATE signing_keys SET created_at = now() - interval '1 hour' WHERE name = 'old'",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(store.fail_stale_pending_keys(360).await.unwrap(), 1);
    assert_eq!(store.key("fresh").await.unwrap().status, KeyStatus::Pending);
    let old = store.key("old").await.unwrap();
    assert_eq!(old.status, KeyStatus::Failed);
    assert!(old.error.unwrap().contains("interrupted"));
    // A failed name can be used again.
    let again = store
        .create_pending_key("old", "acme", &[], "*", &admin())
        .await
        .unwrap();
    assert_eq!(again.status, KeyStatus::Pending);
}

/// Constraint violations are told apart by the constraint's name, reworded for the caller,
/// and keep the database error as their source.
#[sqlx::test]
async fn violated_constraints_are_reworded_with_their_cause(pool: PgPool) {
    use std::error::Error as _;
    let (store, _) = setup(pool).await;
    ready_key(&store, "key-one", "ID1").await;
    let e = store
        .create_pending_key("key-one", "acme", &[], "*", &admin())
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Conflict(ref m) if m.contains("a key named \"key-one\" already exists")),
        "{e}"
    );
    assert!(e.source().is_some(), "the database error is kept: {e:?}");
    let e = store
        .create_pending_key("key-two", "nobody", &[], "*", &admin())
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::NotFound(ref m) if m.contains("no brand \"nobody\"")),
        "{e}"
    );
    let e = store
        .create_pending_key("Bad Name", "acme", &[], "*", &admin())
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Invalid(ref m) if m.contains("invalid key name")),
        "{e}"
    );

    let model = |brand: &str, name: &str, api_key: &str| NewModel {
        brand_id: brand.into(),
        name: name.into(),
        api_key: api_key.into(),
        rate_limit_per_sec: None,
        rate_limit_burst: None,
        duplicate_policy: DuplicatePolicy::Refuse,
        serial_generation: SerialGeneration::Uuid,
        serial_prefix: String::new(),
    };
    let long_key = "k".repeat(32);
    let e = store
        .create_model(&model("acme", "widget", &long_key), &admin())
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Conflict(ref m) if m.contains("already exists")),
        "{e}"
    );
    let e = store
        .create_model(&model("nobody", "gadget", &long_key), &admin())
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::NotFound(ref m) if m.contains("no brand")),
        "{e}"
    );
    let e = store
        .create_model(&model("acme", "gadget", "short"), &admin())
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Invalid(ref m) if m.contains("16 characters")),
        "{e}"
    );
    let e = store
        .create_model(&model("acme", "-gadget", &long_key), &admin())
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Invalid(ref m) if m.contains("invalid model name")),
        "{e}"
    );
    assert!(e.source().is_some(), "the database error is kept: {e:?}");
}

/// A text column holding a name the code does not know is a corrupt row, named by its
/// column, never read as a default.
#[sqlx::test]
async fn an_unknown_choice_in_a_row_is_a_corrupt_row(pool: PgPool) {
    let (store, _) = setup(pool.clone()).await;
    ready_key(&store, "key-one", "ID1").await;
    sqlx::query("ALTER TABLE signing_keys DROP CONSTRAINT signing_keys_status_check")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE signing_keys SET status = 'retired'")
        .execute(&pool)
        .await
        .unwrap();
    let e = store.keys().await.unwrap_err();
    assert!(
        matches!(e, StoreError::Database(ref m) if m.contains("corrupt row") && m.contains("status")),
        "{e}"
    );
    sqlx::query("ALTER TABLE models DROP CONSTRAINT models_duplicate_policy_check")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE models SET duplicate_policy = 'sometimes'")
        .execute(&pool)
        .await
        .unwrap();
    let e = store.model("acme", "widget").await.unwrap_err();
    assert!(
        matches!(e, StoreError::Database(ref m) if m.contains("duplicate_policy")),
        "{e}"
    );
}

#[sqlx::test]
async fn the_group_commit_connects_again_when_postgres_drops_its_connection(pool: PgPool) {
    // The common append runs on a connection of its own, outside the pool (no ping before
    // and after each statement). Postgres dropping it while it sits idle (a restart, a
    // terminated backend) must cost nothing: the statement runs again on a new connection.
    let (store, model) = setup(pool.clone()).await;
    for (serial, request) in [("S1", "req-1"), ("S2", "req-2")] {
        let out = store
            .record_issuances(&[issuance(model, serial, serial, request)])
            .await
            .unwrap();
        assert!(matches!(out[0], RecordOutcome::Inserted(_)), "{out:?}");
    }
    // The backend whose last statement was the append (the first went the locked way, to
    // learn the chain head; the second through the group commit's connection).
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
           AND state = 'idle' AND query LIKE 'WITH head AS (UPDATE log_chain_heads%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(terminated, [true], "one idle backend made the append");

    let out = store
        .record_issuances(&[issuance(model, "S3", "dev-3", "req-3")])
        .await
        .expect("the append runs again on a new connection");
    assert!(matches!(out[0], RecordOutcome::Inserted(_)), "{out:?}");
    for request in ["req-1", "req-2", "req-3"] {
        assert!(
            store
                .find_issuance_by_request_id(request)
                .await
                .unwrap()
                .is_some(),
            "{request} logged"
        );
    }
    // And again on the connection it made.
    let out = store
        .record_issuances(&[issuance(model, "S4", "dev-4", "req-4")])
        .await
        .unwrap();
    assert!(matches!(out[0], RecordOutcome::Inserted(_)), "{out:?}");
}
