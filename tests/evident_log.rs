//! The tamper-evident log on a real Postgres: the chain written by group commits (including
//! the rare path where some rows of a batch are not inserted) and by audited admin changes
//! links every row, in order, to the one before.

use serialmint::evidence::chain::{self, ChainHash, GENESIS};
use serialmint::store::{Actor, DuplicatePolicy, Issuance, NewModel, SerialGeneration, Store};
use sqlx::PgPool;
use time::OffsetDateTime;

fn admin() -> Actor {
    Actor("tester".into())
}

/// A model of brand `acme` named `name`; its id.
async fn create_model(store: &Store, name: &str) -> i64 {
    let m = store
        .create_model(
            &NewModel {
                brand_id: "acme".into(),
                name: name.into(),
                api_key: format!("{name:k<32}"),
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
    m.id
}

async fn setup(pool: PgPool) -> (Store, i64) {
    let store = Store::from_pool(pool);
    store.ensure_brand("acme", &admin()).await.unwrap();
    let model = create_model(&store, "widget").await;
    (store, model)
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

type SigningRow = (
    i64,
    Vec<u8>,
    OffsetDateTime,
    String,
    i64,
    String,
    String,
    i32,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
);

/// Recomputes the signing-log chain from the table; returns the head.
async fn check_signing_chain(pool: &PgPool) -> (i64, ChainHash) {
    let rows: Vec<SigningRow> = sqlx::query_as(
        "SELECT chain_seq, chain_hash, issued_at, brand_id, model_id, model_name, serial, \
         revision, device_key_id, request_id, signing_key_id, instance, serial_assertion, \
         original_serial, original_serial_id FROM signing_log ORDER BY chain_seq",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut prev = GENESIS;
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.0, i as i64 + 1, "sequence numbers have no gaps");
        let row = Issuance {
            brand_id: r.3.clone(),
            model_id: r.4,
            model_name: r.5.clone(),
            serial: r.6.clone(),
            revision: r.7 as u32,
            device_key_id: r.8.clone(),
            request_id: r.9.clone(),
            signing_key_id: r.10.clone(),
            instance: r.11.clone(),
            serial_assertion: r.12.clone(),
            original_serial: r.13.clone(),
            original_serial_id: r.14,
        };
        let h = chain::link(&prev, &chain::signing_row_bytes(r.0, r.2, &row));
        assert_eq!(r.1, h.to_vec(), "row {} links to the one before", r.0);
        prev = h;
    }
    let head: (i64, Vec<u8>) =
        sqlx::query_as("SELECT seq, hash FROM log_chain_heads WHERE chain = 'signing-log'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(
        head,
        (rows.len() as i64, prev.to_vec()),
        "the head is the newest row"
    );
    (head.0, prev)
}

#[sqlx::test]
async fn group_commits_chain_every_row_even_when_some_are_not_inserted(pool: PgPool) {
    let (store, model) = setup(pool.clone()).await;
    let batch: Vec<Issuance> = (0..5)
        .map(|i| issuance(model, &format!("S{i}"), &format!("d{i}"), &format!("r{i}")))
        .collect();
    store.record_issuances(&batch).await.unwrap();
    assert_eq!(check_signing_chain(&pool).await.0, 5);
    // A batch with a replay, a conflict and a duplicate inside the batch: the rows that are
    // inserted still get consecutive numbers.
    let batch = vec![
        issuance(model, "T1", "e1", "q1"),
        issuance(model, "S0", "d0", "r0"),
        issuance(model, "T2", "e2", "q2"),
        issuance(model, "S1", "other", "q3"),
        issuance(model, "T3", "e3", "q4"),
        issuance(model, "T3", "e3", "q4"),
    ];
    store.record_issuances(&batch).await.unwrap();
    assert_eq!(check_signing_chain(&pool).await.0, 8);
}

#[sqlx::test]
async fn a_re_registration_is_chained_with_the_serial_it_replaces(pool: PgPool) {
    let (store, model) = setup(pool.clone()).await;
    let first = store
        .record_issuances(&[issuance(model, "S0", "d0", "r0")])
        .await
        .unwrap();
    let Some(serialmint::store::RecordOutcome::Inserted(first)) = first.into_iter().next() else {
        panic!("the first serial is inserted");
    };
    let mut rereg = issuance(model, "S1", "d0", "r1");
    rereg.original_serial = Some("acme/widget/S0".into());
    rereg.original_serial_id = Some(first.id);
    store.record_issuances(&[rereg]).await.unwrap();
    assert_eq!(check_signing_chain(&pool).await.0, 2);
    // The replaced serial is part of the hashed row: changing it breaks the link.
    sqlx::query("UPDATE signing_log SET original_serial = 'acme/widget/S9' WHERE chain_seq = 2")
        .execute(&pool)
        .await
        .unwrap();
    let broken = tokio::spawn(async move { check_signing_chain(&pool).await }).await;
    assert!(broken.is_err(), "a changed original serial no longer links");
}

#[sqlx::test]
async fn two_instances_writing_concurrently_make_one_chain(pool: PgPool) {
    let (a, model) = setup(pool.clone()).await;
    // A second instance: its own connection pool to the same database.
    let b = Store::from_pool(
        PgPool::connect_with(pool.connect_options().as_ref().clone())
            .await
            .unwrap(),
    );
    let write = |store: Store, who: &'static str| async move {
        for n in 0..20 {
            let batch: Vec<Issuance> = (0..5)
                .map(|i| {
                    let id = format!("{who}-{n}-{i}");
                    issuance(model, &id, &id, &id)
                })
                .collect();
            store.record_issuances(&batch).await.unwrap();
        }
    };
    tokio::join!(write(a, "a"), write(b, "b"));
    assert_eq!(check_signing_chain(&pool).await.0, 200);
}

/// How many group commits took each path (`signing_log_appends_total{path=...}`), read from
/// a recorder local to this test's thread.
fn appends(handle: &metrics_exporter_prometheus::PrometheusHandle) -> (u64, u64) {
    let text = handle.render();
    let count = |path: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("signing_log_appends_total{{path=\"{path}\"}} ")))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    (count("known-head"), count("locked"))
}

#[sqlx::test]
async fn an_instance_appends_at_the_head_it_wrote_until_another_moves_it(pool: PgPool) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let (a, model) = setup(pool.clone()).await;
    let b = Store::from_pool(
        PgPool::connect_with(pool.connect_options().as_ref().clone())
            .await
            .unwrap(),
    );
    let batch = |who: &str| -> Vec<Issuance> {
        (0..3)
            .map(|i| {
                let id = format!("{who}-{i}");
                issuance(model, &id, &id, &id)
            })
            .collect()
    };
    let inserted = |out: Vec<serialmint::store::RecordOutcome>| {
        out.iter()
            .all(|o| matches!(o, serialmint::store::RecordOutcome::Inserted(_)))
    };
    // The first commit learns the head under the lock; the next appends at it.
    assert!(inserted(a.record_issuances(&batch("a0")).await.unwrap()));
    assert_eq!(appends(&handle), (0, 1));
    assert!(inserted(a.record_issuances(&batch("a1")).await.unwrap()));
    assert_eq!(appends(&handle), (1, 1));
    // Another instance appends: the head `a` knows is stale, its next commit takes the lock
    // (and learns the head again).
    assert!(inserted(b.record_issuances(&batch("b0")).await.unwrap()));
    assert!(inserted(a.record_issuances(&batch("a2")).await.unwrap()));
    assert_eq!(appends(&handle), (1, 3));
    assert!(inserted(a.record_issuances(&batch("a3")).await.unwrap()));
    assert_eq!(appends(&handle), (2, 3));
    assert_eq!(check_signing_chain(&pool).await.0, 15);

    // A batch with a replay: the one-statement append fails as a whole (nothing kept), the
    // locked path sorts it out. A batch with a row whose model is gone: the same.
    let mut rows = batch("a4");
    rows.push(issuance(model, "a0-1", "a0-1", "a0-1"));
    let out = a.record_issuances(&rows).await.unwrap();
    assert!(matches!(
        out[3],
        serialmint::store::RecordOutcome::Replay(_)
    ));
    assert!(inserted(out[..3].to_vec()));
    let gone = create_model(&a, "gone").await;
    a.delete_model("acme", "gone", &admin()).await.unwrap();
    let mut rows = batch("a5");
    let mut orphan = issuance(gone, "G1", "g1", "g1");
    orphan.model_name = "gone".into();
    rows.push(orphan);
    let out = a.record_issuances(&rows).await.unwrap();
    assert_eq!(out[3], serialmint::store::RecordOutcome::ModelGone);
    assert!(inserted(out[..3].to_vec()));
    // Both fell back to the lock (the delete is an audited change: it moved the audit
    // chain, not this one).
    assert_eq!(appends(&handle), (2, 5));
    assert_eq!(check_signing_chain(&pool).await.0, 21);
    // And the head is known again.
    assert!(inserted(a.record_issuances(&batch("a6")).await.unwrap()));
    assert_eq!(appends(&handle), (3, 5));
    assert_eq!(check_signing_chain(&pool).await.0, 24);
}

type AuditRowT = (
    i64,
    Vec<u8>,
    OffsetDateTime,
    String,
    String,
    String,
    serde_json::Value,
);

#[sqlx::test]
async fn audited_changes_chain_the_audit_log(pool: PgPool) {
    let _ = setup(pool.clone()).await;
    let rows: Vec<AuditRowT> = sqlx::query_as(
        "SELECT chain_seq, chain_hash, at, actor, action, target, detail FROM audit_log \
             ORDER BY chain_seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(rows.len() >= 2, "the brand and the model were audited");
    let mut prev = GENESIS;
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.0, i as i64 + 1);
        let detail = chain::canonical_json(&r.6);
        let row = chain::AuditRow {
            at: r.2,
            actor: &r.3,
            action: &r.4,
            target: &r.5,
            detail: &detail,
        };
        let h = chain::link(&prev, &chain::audit_row_bytes(r.0, &row));
        assert_eq!(r.1, h.to_vec(), "audit row {} links to the one before", r.0);
        prev = h;
    }
}
