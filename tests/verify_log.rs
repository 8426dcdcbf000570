//! The tamper-evident log end to end on a real SoftHSM token and a real Postgres: serials
//! issued over HTTP by the device listener, checkpoints signed on the token with an audit
//! key (imported next to the brand key), and what the offline verifier makes of the export.
//!
//! Run with `cargo nextest run --test verify_log` (one process per test: SoftHSM is
//! process-wide).

mod common;
#[path = "common/device.rs"]
mod device;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serialmint::admin_api::AdminApi;
use serialmint::admin_api::backend::HsmBackend;
use serialmint::assertion::RsaPublicKey;
use serialmint::checkpointer::{CheckpointPolicy, take_due};
use serialmint::domain::{ExportedIssuance, Role};
use serialmint::evidence::chain::{GENESIS, link, signing_row_bytes};
use serialmint::evidence::checkpoint::{Checkpoint, CheckpointError};
use serialmint::hsm::Hsm;
use serialmint::http::{self as shttp, Limits};
use serialmint::signer::SignBackend;
use serialmint::store::{Actor, Store};
use serialmint::wiring::LazyHsm;
use sqlx::PgPool;

use device::*;

/// A running vault with an audit key on its token: the device listener, the admin
/// listener (for the CLI's exports) and a place for the exported files.
struct Vault {
    token: Token,
    server: Server,
    backend: Arc<dyn SignBackend>,
    audit: RsaPublicKey,
    pool: PgPool,
    issued: usize,
    admin_url: String,
    admin_token: String,
    dir: tempfile::TempDir,
}

async fn vault(pool: PgPool) -> Vault {
    let token = Token::new();
    let key_file = softhsm::write_rsa_key(token.softhsm.dir.path(), 4096, true);
    let audit_id = token.softhsm.import_key(TOKEN, PIN, &key_file, "audit");
    let audit = serialmint::keyfile::parse(&std::fs::read(&key_file).unwrap())
        .unwrap()
        .public
        .clone();
    assert_eq!(audit.key_id(), audit_id);
    let store = Store::from_pool(pool.clone());
    provision(&store, &token.key_id).await;
    store
        .create_pending_audit_key("audit", BRAND, &admin())
        .await
        .unwrap();
    store
        .mark_key_ready("audit", &audit_id, &audit.encode(), &admin())
        .await
        .unwrap();
    let hsm = Arc::new(LazyHsm::open(
        Hsm::open(token.hsm_config()).await.expect("token opens"),
    ));
    let backend: Arc<dyn SignBackend> = hsm.clone();
    let config = config(&token);
    let server = start(config.clone(), store.clone(), backend.clone()).await;
    let admin_token = store
        .create_token("admin", Role::Admin, None, &Actor::bootstrap())
        .await
        .unwrap()
        .secret;
    let trust = serialmint::server::trusted_roots(&config).unwrap();
    let api = AdminApi::new(
        store,
        server.catalog.clone(),
        Arc::new(HsmBackend::new(hsm, trust)),
        None,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(shttp::serve(
        listener,
        api,
        Limits::default(),
        std::future::pending::<()>(),
    ));
    Vault {
        token,
        server,
        backend,
        audit,
        pool,
        issued: 0,
        admin_url,
        admin_token,
        dir: tempfile::tempdir().unwrap(),
    }
}

/// What `serialmint verify-log` said.
struct Verdict {
    ok: bool,
    stdout: String,
}

impl Verdict {
    /// The findings, as printed after `FOUND `.
    fn findings(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("FOUND "))
            .collect()
    }

    fn window(&self) -> i64 {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with("rows after the newest checkpoint: "))
            .expect("the window is reported");
        line["rows after the newest checkpoint: ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

fn policy(rows: u64) -> CheckpointPolicy {
    CheckpointPolicy {
        rows,
        every: Duration::from_secs(3600),
        instance: "test-instance".into(),
    }
}

impl Vault {
    /// Issues `n` serials over HTTP.
    async fn issue(&mut self, n: usize) {
        for _ in 0..n {
            let i = self.issued;
            self.issued += 1;
            // Off the test's (current-thread) runtime: on a fresh checkout the key is made
            // here, seconds of RSA-4096 key generation that would stall the in-process
            // server's tasks meanwhile (its Postgres watchdog's probe among them, which then
            // times out and marks the signing log down: seen once in CI as a 503).
            let name = format!("evlog-{i}");
            let dev = tokio::task::spawn_blocking(move || device_key(&name, 4096))
                .await
                .unwrap();
            let rid = self.server.request_id().await;
            let serial = format!("evlog-{i:04}");
            let mut spec = ReqSpec::new(&rid);
            spec.serial = Some(&serial);
            let a = self.server.post_serial(&body(&spec, &dev)).await;
            assert_eq!(a.status, 200, "{}", a.text());
        }
    }

    /// Runs the serialmint binary with the admin URL and token (and nothing else of this
    /// process' environment); returns success, stdout and stderr.
    async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_serialmint"));
        cmd.args(args)
            .env_clear()
            .env("SERIALMINT_ADMIN_URL", &self.admin_url)
            .env("SERIALMINT_ADMIN_TOKEN", &self.admin_token);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Exports the signing log, the checkpoints and the audit key with the CLI into files.
    async fn export(&self) {
        for (args, file) in [
            (&["export", "signing-log", "--json"][..], "export.json"),
            (&["export", "checkpoints"][..], "checkpoints.jsonl"),
            (&["export", "audit-key"][..], "audit.pem"),
            (&["export", "audit-log"][..], "audit-log.json"),
        ] {
            let (ok, out, err) = self.cli(args).await;
            assert!(ok, "{args:?}: {err}");
            std::fs::write(self.path(file), out).unwrap();
        }
    }

    /// Runs `serialmint verify-log` on the exported files (offline: no admin URL needed).
    async fn verify(&self, checkpoints: &str) -> Verdict {
        self.verify_with(checkpoints, &[]).await
    }

    /// `verify` with more arguments.
    async fn verify_with(&self, checkpoints: &str, more: &[&str]) -> Verdict {
        let export = self.path("export.json");
        let key = self.path("audit.pem");
        let cps = self.path(checkpoints);
        let audit = self.path("audit-log.json");
        let mut args = vec![
            "verify-log",
            "--export",
            export.to_str().unwrap(),
            "--audit-key",
            key.to_str().unwrap(),
            "--checkpoints",
            cps.to_str().unwrap(),
            "--audit-export",
            audit.to_str().unwrap(),
        ];
        args.extend_from_slice(more);
        let (ok, stdout, stderr) = self.cli(&args).await;
        if !ok {
            assert!(
                stderr.contains("the log does not verify"),
                "verify-log failed otherwise: {stderr}"
            );
        }
        Verdict { ok, stdout }
    }

    /// Exports and verifies with the database's own checkpoints.
    async fn export_and_verify(&self) -> Verdict {
        self.export().await;
        self.verify("checkpoints.jsonl").await
    }

    /// The signing log's rows in chain order, as the database holds them.
    async fn rows(&self) -> Vec<ExportedIssuance> {
        sqlx::query_as(
            "SELECT id, brand_id, model_id, model_name, serial, revision, device_key_id, \
             request_id, signing_key_id, instance, issued_at, serial_assertion, \
             original_serial, original_serial_id, chain_seq, chain_hash FROM signing_log \
             ORDER BY chain_seq",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// What an administrator who knows the algorithm does after editing rows: every link
    /// recomputed from the first row, so the chain is consistent again.
    async fn recompute_chain(&self) {
        let mut prev = GENESIS;
        for r in &self.rows().await {
            let seq = r.chain_seq.unwrap();
            let hash = link(
                &prev,
                &signing_row_bytes(seq, r.row.issued_at, &r.row.issuance),
            );
            sqlx::query("UPDATE signing_log SET chain_hash = $1 WHERE chain_seq = $2")
                .bind(hash.to_vec())
                .bind(seq)
                .execute(&self.pool)
                .await
                .unwrap();
            prev = hash;
        }
    }

    /// Runs SQL on the database as an administrator with write access would.
    async fn sql(&self, statements: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statements.to_owned()))
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// Starts the checkpointer with these thresholds.
    fn run_checkpointer(&self, rows: u64, every: Duration) -> Running {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let policy = CheckpointPolicy {
            rows,
            every,
            instance: "test-instance".into(),
        };
        let task = serialmint::checkpointer::spawn(
            self.server.store.clone(),
            self.backend.clone(),
            policy,
            async move {
                let _ = stopped.await;
            },
        );
        Running { stop, task }
    }

    async fn checkpoint(&self, rows: u64) -> Vec<Checkpoint> {
        take_due(
            &self.server.store,
            self.backend.as_ref(),
            &policy(rows),
            false,
        )
        .await
        .expect("checkpoints taken")
    }
}

#[sqlx::test]
async fn checkpoints_are_signed_on_the_token_with_the_audit_key(pool: PgPool) {
    let mut v = vault(pool).await;
    v.issue(3).await;
    // The first checkpoint of each chain is due at once.
    let taken = v.checkpoint(1000).await;
    let signing: Vec<&Checkpoint> = taken.iter().filter(|c| c.chain == "signing-log").collect();
    assert_eq!(taken.len(), 2, "both chains: {taken:?}");
    assert_eq!((signing[0].number, signing[0].seq), (1, 3));
    assert_eq!(signing[0].instance, "test-instance");
    assert_eq!(signing[0].key_id, v.audit.key_id());
    for cp in &taken {
        cp.verify(&v.audit).expect("the audit key signed it");
        assert!(matches!(
            cp.verify(&common::TestKey::root().public),
            Err(CheckpointError::BadSignature { .. })
        ));
    }
    assert_eq!(v.server.store.checkpoints().await.unwrap(), {
        let mut t = taken.clone();
        t.sort_by_key(|c| (c.chain != "signing-log", c.number));
        t
    });
    // Nothing new: nothing due. Two rows with checkpoint_rows = 2: due, numbered 2.
    assert!(v.checkpoint(1000).await.is_empty());
    v.issue(2).await;
    assert!(v.checkpoint(3).await.is_empty(), "2 rows < 3");
    let taken = v.checkpoint(2).await;
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].number, taken[0].seq), (2, 5));
    taken[0].verify(&v.audit).unwrap();
    // The checkpoint's hash is the chain's at its sequence number.
    let (hash,): (Vec<u8>,) =
        sqlx::query_as("SELECT chain_hash FROM signing_log WHERE chain_seq = 5")
            .fetch_one(&v.pool)
            .await
            .unwrap();
    assert_eq!(taken[0].chain_hash().unwrap().to_vec(), hash);
    // The audit key never signs an assertion.
    let audit = v.server.store.key("audit").await.unwrap();
    assert!(!audit.may_sign("serial", MODEL));
    assert!(audit.allowed_types.is_empty());
}

#[sqlx::test]
async fn an_untouched_log_verifies_offline(pool: PgPool) {
    let mut v = vault(pool).await;
    v.issue(4).await;
    v.checkpoint(1000).await;
    v.issue(2).await;
    let verdict = v.export_and_verify().await;
    assert!(verdict.ok, "{}", verdict.stdout);
    assert!(verdict.findings().is_empty(), "{}", verdict.stdout);
    assert!(
        verdict
            .stdout
            .contains("signing-log: 6 chained rows (newest seq 6)"),
        "{}",
        verdict.stdout
    );
    assert!(
        verdict
            .stdout
            .contains("\ncheckpoints: 1 valid, the newest at seq 4")
    );
    assert_eq!(verdict.window(), 2, "two rows after the newest checkpoint");
    // The audit log's chain (the provisioning's admin changes) and its checkpoint verify too.
    assert!(
        verdict.stdout.contains("audit-log: checkpoints: 1 valid"),
        "{}",
        verdict.stdout
    );
    // The export carries the chain fields; the audit key file is PEM.
    let export = std::fs::read_to_string(v.path("export.json")).unwrap();
    assert!(export.contains("\"chain-seq\":6") && export.contains("\"chain-hash\":\""));
    let pem = std::fs::read_to_string(v.path("audit.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    // The verifier needs no server: the same files verify with the admin API gone.
    drop(v.server);
    let _ = &v.token;
}

/// A vault with `before` serials under checkpoint 1 and `after` serials after it.
async fn vault_with(pool: PgPool, before: usize, after: usize) -> Vault {
    let mut v = vault(pool).await;
    v.issue(before).await;
    assert_eq!(
        v.checkpoint(1000).await.len(),
        2,
        "both chains' first checkpoints"
    );
    v.issue(after).await;
    v
}

/// How verify-log names the row issued `seq`-th (serials are numbered from 0).
fn label(seq: i64) -> String {
    format!("serial evlog-{:04} of {BRAND}/{MODEL}", seq - 1)
}

/// Runs `serialmint verify-log --live` against the running vault, with the audit key (and
/// optionally checkpoints) from files.
async fn verify_live(v: &Vault, checkpoints: Option<&str>) -> Verdict {
    let key = v.path("audit.pem");
    let mut args = vec![
        "verify-log".to_string(),
        "--live".into(),
        "--audit-key".into(),
        key.to_str().unwrap().into(),
    ];
    if let Some(file) = checkpoints {
        args.push("--checkpoints".into());
        args.push(v.path(file).to_str().unwrap().into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = v.cli(&args).await;
    if !ok {
        assert!(
            stderr.contains("the log does not verify"),
            "verify-log --live failed otherwise: {stderr}"
        );
    }
    Verdict { ok, stdout }
}

#[sqlx::test]
async fn verify_log_live_checks_what_the_admin_api_serves(pool: PgPool) {
    let mut v = vault(pool).await;
    v.issue(4).await;
    v.checkpoint(1000).await;
    v.issue(1).await;
    v.export().await;
    // Untouched: the chain, the audit log and the server's checkpoints verify, with the same
    // checkpoints also given from a file (copies count once).
    let verdict = verify_live(&v, Some("checkpoints.jsonl")).await;
    assert!(verdict.ok, "{}", verdict.stdout);
    assert!(
        verdict
            .stdout
            .contains("\ncheckpoints: 1 valid, the newest at seq 4"),
        "{}",
        verdict.stdout
    );
    assert_eq!(verdict.window(), 1);
    assert!(verdict.stdout.contains("audit-log: checkpoints: 1 valid"));
    // An edit in the database shows at once, and deleting the server's checkpoints does not
    // hide a truncation from the copy kept elsewhere.
    v.sql("UPDATE signing_log SET serial = 'forged-0001' WHERE chain_seq = 2")
        .await;
    let verdict = verify_live(&v, None).await;
    assert!(!verdict.ok);
    let found = verdict.findings();
    assert_eq!(found.len(), 1, "{}", verdict.stdout);
    assert!(found[0].starts_with("row changed: seq 2 "), "{}", found[0]);
    assert!(
        verdict.stdout.contains("\ncheckpoints: 1 valid"),
        "the server's own checkpoint, no file given: {}",
        verdict.stdout
    );
    v.sql(
        "UPDATE signing_log SET serial = 'evlog-0001' WHERE chain_seq = 2; \
         DELETE FROM signing_log WHERE chain_seq >= 4; DELETE FROM log_checkpoints;",
    )
    .await;
    let verdict = verify_live(&v, Some("checkpoints.jsonl")).await;
    assert!(!verdict.ok, "{}", verdict.stdout);
    assert!(
        verdict
            .findings()
            .iter()
            .any(|f| f.starts_with("log truncated: ")),
        "{}",
        verdict.stdout
    );
}

#[sqlx::test]
async fn an_updated_serial_is_named_as_a_changed_row(pool: PgPool) {
    let v = vault_with(pool, 5, 0).await;
    v.sql("UPDATE signing_log SET serial = 'forged-0002' WHERE chain_seq = 3")
        .await;
    let verdict = v.export_and_verify().await;
    assert!(!verdict.ok);
    let found = verdict.findings();
    assert_eq!(found.len(), 1, "{}", verdict.stdout);
    assert!(
        found[0].starts_with(&format!(
            "row changed: seq 3 (serial forged-0002 of {BRAND}/{MODEL}, id "
        )),
        "{}",
        found[0]
    );
    assert!(
        found[0].ends_with("does not match its hash"),
        "{}",
        found[0]
    );
}

#[sqlx::test]
async fn a_deleted_middle_row_is_named(pool: PgPool) {
    let v = vault_with(pool, 5, 0).await;
    v.sql("DELETE FROM signing_log WHERE chain_seq = 3").await;
    let verdict = v.export_and_verify().await;
    assert!(!verdict.ok);
    assert_eq!(
        verdict.findings(),
        ["row deleted: seq 3 is missing"],
        "{}",
        verdict.stdout
    );
}

#[sqlx::test]
async fn deleting_the_newest_rows_shows_before_a_checkpoint_and_is_counted_after_it(pool: PgPool) {
    let v = vault_with(pool, 5, 3).await;
    // After the newest checkpoint (seq 5): rows 6..8 are the window nothing can vouch for.
    v.sql("DELETE FROM signing_log WHERE chain_seq = 8").await;
    let verdict = v.export_and_verify().await;
    assert!(verdict.ok, "{}", verdict.stdout);
    assert_eq!(verdict.window(), 2, "{}", verdict.stdout);
    // Into what the checkpoint covers: a truncation.
    v.sql("DELETE FROM signing_log WHERE chain_seq >= 5").await;
    let verdict = v.export_and_verify().await;
    assert!(!verdict.ok);
    assert_eq!(
        verdict.findings(),
        ["log truncated: checkpoint 1 covers seq 5, the log ends at seq 4"],
        "{}",
        verdict.stdout
    );
}

#[sqlx::test]
async fn swapped_sequence_numbers_are_named_as_reordered(pool: PgPool) {
    let v = vault_with(pool, 5, 0).await;
    v.sql(
        "UPDATE signing_log SET chain_seq = 1000000 WHERE chain_seq = 2; \
         UPDATE signing_log SET chain_seq = 2 WHERE chain_seq = 3; \
         UPDATE signing_log SET chain_seq = 3 WHERE chain_seq = 1000000;",
    )
    .await;
    let verdict = v.export_and_verify().await;
    assert!(!verdict.ok);
    let found = verdict.findings();
    assert_eq!(found.len(), 2, "{}", verdict.stdout);
    assert!(
        found[0].starts_with(&format!("rows reordered: seq 2 ({}, id ", label(3)))
            && found[0].ends_with("was written as seq 3"),
        "{}",
        found[0]
    );
    assert!(
        found[1].starts_with(&format!("rows reordered: seq 3 ({}, id ", label(2)))
            && found[1].ends_with("was written as seq 2"),
        "{}",
        found[1]
    );
}

#[sqlx::test]
async fn a_checkpoint_signed_by_another_key_is_named_as_forged(pool: PgPool) {
    let mut v = vault_with(pool, 3, 1).await;
    // A database administrator inserts checkpoint 2 for the head, signed with a key of
    // their own (not the audit key on the token).
    let (hash,): (Vec<u8>,) =
        sqlx::query_as("SELECT chain_hash FROM signing_log WHERE chain_seq = 4")
            .fetch_one(&v.pool)
            .await
            .unwrap();
    let at = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let hex = serialmint::evidence::chain::hex(&hash);
    let text = Checkpoint::message("signing-log", 2, 4, &hex, at, "test-instance");
    let forger = common::TestKey::store();
    let sig = forger.raw_sign(&aws_lc_rs::signature::RSA_PKCS1_SHA512, text.as_bytes());
    sqlx::query(
        "INSERT INTO log_checkpoints (chain, number, seq, hash, at, instance, key_id, signature) \
         VALUES ('signing-log', 2, 4, $1, $2, 'test-instance', $3, $4)",
    )
    .bind(&hash)
    .bind(at)
    .bind(v.audit.key_id())
    .bind(&sig)
    .execute(&v.pool)
    .await
    .unwrap();
    let verdict = v.export_and_verify().await;
    assert!(!verdict.ok);
    assert_eq!(
        verdict.findings(),
        [
            "checkpoint forged: checkpoint 2 of the signing-log (seq 4) is not signed by the audit \
             key"
        ],
        "{}",
        verdict.stdout
    );
    // A checkpoint deleted from the middle of the copy is missing.
    v.sql("DELETE FROM log_checkpoints WHERE number = 2").await;
    v.issue(1).await;
    assert_eq!(v.checkpoint(1).await.len(), 1);
    v.sql("DELETE FROM log_checkpoints WHERE chain = 'signing-log' AND number = 1")
        .await;
    let verdict = v.export_and_verify().await;
    assert_eq!(
        verdict.findings(),
        ["checkpoint missing: number 1"],
        "{}",
        verdict.stdout
    );
}

/// A checkpointer running as `serve` runs it, until [`Running::stop`].
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

/// Waits (at most 10 s) until the metrics exposition contains `want`; returns it.
async fn metric_shows(
    metrics: &metrics_exporter_prometheus::PrometheusHandle,
    want: &str,
) -> String {
    let mut rendered = String::new();
    for _ in 0..100 {
        rendered = metrics.render();
        if rendered.contains(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rendered.contains(want), "{want} in {rendered}");
    rendered
}

#[sqlx::test]
async fn the_running_checkpointer_signs_by_rows_and_keeps_the_metrics(pool: PgPool) {
    let metrics = serialmint::server::metrics_handle().expect("a metrics recorder");
    let mut v = vault(pool).await;
    let running = v.run_checkpointer(2, Duration::from_secs(3600));
    let signing_seq = |cps: Vec<Checkpoint>| {
        cps.into_iter()
            .filter(|c| c.chain == "signing-log")
            .map(|c| c.seq)
            .max()
    };
    v.issue(3).await;
    let mut seen = None;
    for _ in 0..100 {
        seen = signing_seq(v.server.store.checkpoints().await.unwrap());
        if seen == Some(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, Some(3), "the checkpointer signed the head");
    // One more row is under checkpoint_rows: no checkpoint, but the head moves.
    v.issue(1).await;
    let rendered = metric_shows(&metrics, "evidence_chain_head_seq{chain=\"signing-log\"} 4").await;
    for m in [
        "evidence_checkpoint_seq{chain=\"signing-log\"} 3",
        "evidence_checkpoint_lag_rows{chain=\"signing-log\"} 1",
        "evidence_checkpoint_late{chain=\"signing-log\"} 0",
        "evidence_checkpoint_age_seconds{chain=\"signing-log\"}",
    ] {
        assert!(rendered.contains(m), "{m} in {rendered}");
    }
    assert_eq!(
        signing_seq(v.server.store.checkpoints().await.unwrap()),
        Some(3)
    );
    running.stop().await;
}

#[sqlx::test]
async fn a_late_checkpoint_raises_the_alert_metric_and_the_vault_stays_ready(pool: PgPool) {
    let metrics = serialmint::server::metrics_handle().expect("a metrics recorder");
    let mut v = vault(pool).await;
    // No usable audit key: checkpoints cannot be signed.
    v.server.store.disable_key("audit", &admin()).await.unwrap();
    let running = v.run_checkpointer(1000, Duration::from_secs(1));
    v.issue(1).await;
    metric_shows(
        &metrics,
        "evidence_checkpoint_late{chain=\"signing-log\"} 1",
    )
    .await;
    assert!(v.server.store.checkpoints().await.unwrap().is_empty());
    let port: u16 = v.admin_url.rsplit(':').next().unwrap().parse().unwrap();
    let (status, body) = tokio::task::spawn_blocking(move || common::http_get(port, "/readyz"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    running.stop().await;
}

#[sqlx::test]
async fn an_edited_audit_entry_is_named_in_the_audit_log(pool: PgPool) {
    let v = vault_with(pool, 2, 0).await;
    v.sql("UPDATE audit_log SET actor = 'nobody' WHERE chain_seq = 2")
        .await;
    let verdict = v.export_and_verify().await;
    assert!(!verdict.ok);
    let found = verdict.findings();
    assert_eq!(found.len(), 1, "{}", verdict.stdout);
    assert!(
        found[0].starts_with("audit-log: row changed: seq 2 (") && found[0].contains(" by nobody)"),
        "{}",
        found[0]
    );
}

#[sqlx::test]
async fn a_chain_recomputed_after_an_edit_contradicts_the_checkpoint(pool: PgPool) {
    let v = vault_with(pool, 5, 0).await;
    // An administrator who knows the algorithm edits row 3 and recomputes every link from
    // there, so the chain is consistent again; only the HSM-signed checkpoint disagrees.
    v.sql("UPDATE signing_log SET serial = 'forged-0002' WHERE chain_seq = 3")
        .await;
    v.recompute_chain().await;
    let verdict = v.export_and_verify().await;
    assert!(!verdict.ok);
    assert_eq!(
        verdict.findings(),
        ["checkpoint 1 does not match the chain at seq 5: the chain was rewritten after it"],
        "{}",
        verdict.stdout
    );
}

/// The `--check-serials` arguments: the test root as the trusted roots, the vault's held
/// account-keys (exported with the CLI) admitted under it.
fn check_serials_args(v: &Vault) -> Vec<String> {
    let trusted = trust_file(v.dir.path());
    vec![
        "--check-serials".into(),
        "--trusted".into(),
        trusted.to_str().unwrap().into(),
        "--assertions".into(),
        v.path("account-keys.assertions").to_str().unwrap().into(),
    ]
}

async fn export_account_keys(v: &Vault) {
    let (ok, out, err) = v.cli(&["export", "account-keys"]).await;
    assert!(ok, "{err}");
    assert!(
        out.starts_with("type: account\n") && out.contains("\ntype: account-key\n"),
        "{out}"
    );
    std::fs::write(v.path("account-keys.assertions"), out).unwrap();
}

#[sqlx::test]
async fn check_serials_reverifies_every_serial_against_the_account_key_chain(pool: PgPool) {
    let v = vault_with(pool, 3, 2).await;
    v.export().await;
    export_account_keys(&v).await;
    let args = check_serials_args(&v);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let verdict = v.verify_with("checkpoints.jsonl", &args).await;
    assert!(verdict.ok, "{}", verdict.stdout);
    assert!(
        verdict.stdout.contains(
            "serial assertions: 5 re-verified against the account-key chain, 0 rows without one"
        ),
        "{}",
        verdict.stdout
    );
    assert!(
        verdict.stdout.contains("and every serial assertion"),
        "{}",
        verdict.stdout
    );
    // Under Canonical's roots (the default) the test brand's account-key is not admitted:
    // said, not ignored.
    let assertions = v.path("account-keys.assertions");
    let (ok, _, err) = v
        .cli(&[
            "verify-log",
            "--export",
            v.path("export.json").to_str().unwrap(),
            "--audit-key",
            v.path("audit.pem").to_str().unwrap(),
            "--check-serials",
            "--assertions",
            assertions.to_str().unwrap(),
        ])
        .await;
    assert!(!ok);
    assert!(
        err.contains("the account-key assertions do not verify under the trusted roots"),
        "{err}"
    );
    // Live: the server's held account-keys, admitted only through the roots given here.
    let trusted = trust_file(v.dir.path());
    let (ok, out, err) = v
        .cli(&[
            "verify-log",
            "--live",
            "--audit-key",
            v.path("audit.pem").to_str().unwrap(),
            "--check-serials",
            "--trusted",
            trusted.to_str().unwrap(),
        ])
        .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("serial assertions: 5 re-verified"), "{out}");
}

#[sqlx::test]
async fn rows_forged_after_the_newest_checkpoint_are_named_by_check_serials(pool: PgPool) {
    let v = vault_with(pool, 3, 2).await;
    // An administrator with write access but no signing key, after the newest checkpoint:
    // renames the serial of row 5, and adds row 6, a copy of row 5 for another serial whose
    // assertion names the brand key but is signed by another key; then recomputes the chain.
    v.sql("UPDATE signing_log SET serial = 'renamed-0004' WHERE chain_seq = 5")
        .await;
    let last = v.rows().await.pop().unwrap();
    let text = last.row.issuance.serial_assertion.clone();
    let content = &text[..text.find("\n\n").unwrap()];
    let content = content.replace("\nserial: evlog-0004\n", "\nserial: forged-0005\n");
    let forged = String::from_utf8(common::TestKey::store().sign(content.as_bytes(), 1)).unwrap();
    sqlx::query(
        "INSERT INTO signing_log (brand_id, model_id, model_name, serial, revision, \
         device_key_id, request_id, signing_key_id, instance, issued_at, serial_assertion, \
         chain_seq, chain_hash) \
         SELECT brand_id, model_id, model_name, 'forged-0005', revision, device_key_id, \
         'forged-request', signing_key_id, instance, issued_at, $1, 6, chain_hash \
         FROM signing_log WHERE chain_seq = 5",
    )
    .bind(&forged)
    .execute(&v.pool)
    .await
    .unwrap();
    v.recompute_chain().await;
    v.export().await;
    export_account_keys(&v).await;
    // The chain alone cannot tell: both rows lie in the window after the newest checkpoint.
    let verdict = v.verify("checkpoints.jsonl").await;
    assert!(verdict.ok, "{}", verdict.stdout);
    assert_eq!(verdict.window(), 3);
    // The serial assertions can.
    let args = check_serials_args(&v);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let verdict = v.verify_with("checkpoints.jsonl", &args).await;
    assert!(!verdict.ok);
    let found = verdict.findings();
    assert_eq!(found.len(), 2, "{}", verdict.stdout);
    assert!(
        found[0].starts_with("serial assertion rejected: seq 5 (serial renamed-0004 of ")
            && found[0].ends_with("says serial \"evlog-0004\" where the row says \"renamed-0004\""),
        "{}",
        found[0]
    );
    assert!(
        found[1].starts_with("serial assertion rejected: seq 6 (serial forged-0005 of ")
            && found[1].contains("does not verify against the account-key chain: "),
        "{}",
        found[1]
    );
}
