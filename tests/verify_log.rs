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

use std::sync::Arc;
use std::time::Duration;

use serialmint::assertion::RsaPublicKey;
use serialmint::checkpointer::{CheckpointPolicy, take_due};
use serialmint::evidence::checkpoint::{Checkpoint, CheckpointError};
use serialmint::signer::SignBackend;
use serialmint::store::Store;
use sqlx::PgPool;

use device::*;

/// A running vault with an audit key on its token.
struct Vault {
    _token: Token,
    server: Server,
    backend: Arc<dyn SignBackend>,
    audit: RsaPublicKey,
    pool: PgPool,
    issued: usize,
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
    let backend = token.backend().await;
    let server = start(config(&token), store, backend.clone()).await;
    Vault {
        _token: token,
        server,
        backend,
        audit,
        pool,
        issued: 0,
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
            let dev = device_key(&format!("evlog-{i}"), 4096);
            let rid = self.server.request_id().await;
            let serial = format!("evlog-{i:04}");
            let mut spec = ReqSpec::new(&rid);
            spec.serial = Some(&serial);
            let a = self.server.post_serial(&body(&spec, &dev)).await;
            assert_eq!(a.status, 200, "{}", a.text());
        }
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
