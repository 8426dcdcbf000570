//! Raw RSA-4096 sign rate (CKM_RSA_PKCS over a SHA-512 DigestInfo) on a SoftHSM token:
//! bare threads each owning a session vs the `Hsm` pool with 1..N sessions, directly and
//! through `p11-kit server` (one connection per pool slot vs one shared connection).
//!
//! After the criterion groups, an interleaved A/B run prints the done criterion from
//! the same process: pool with 2 sessions / 2 bare threads (target >= 0.95).
//! `cargo bench --bench hsm_sign` (set `HSM_BENCH_QUICK=1` for a short run,
//! `HSM_BENCH_RATIO_ONLY=1` for the A/B ratios alone). On a shared machine, compare only
//! figures from the same run.

#[path = "../tests/common/softhsm.rs"]
mod softhsm;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use secrecy::SecretString;
use serialmint::hsm::{Hsm, HsmConfig};
use softhsm::{P11KitServer, SoftHsm, digest_info_of, p11_kit_client_module, softhsm_module};

const LABEL: &str = "bench";
const PIN: &str = "1234";

fn context(module: &Path) -> Pkcs11 {
    let ctx = Pkcs11::new(module).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => ctx,
        Err(e) => panic!("initialize: {e}"),
    }
}

fn session(ctx: &Pkcs11, id: &[u8]) -> (Session, ObjectHandle) {
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == LABEL)
        .unwrap();
    let s = ctx.open_ro_session(slot).unwrap();
    match s.login(UserType::User, Some(&AuthPin::new(PIN.into()))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("login: {e}"),
    }
    let key = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(id.to_vec()),
        ])
        .unwrap()[0];
    (s, key)
}

/// Bare threads, each owning one session, signing `total` digests between them.
struct Bare {
    sessions: Vec<(Session, ObjectHandle)>,
    // Keeps per-thread instances alive.
    _ctxs: Vec<Pkcs11>,
}

impl Bare {
    /// `own_instances`: one module instance per session (p11-kit: a connection each).
    fn new(module: &Path, n: usize, id: &[u8], own_instances: bool) -> Bare {
        let mut ctxs = Vec::new();
        let mut sessions = Vec::new();
        for i in 0..n {
            if own_instances || i == 0 {
                ctxs.push(context(module));
            }
            sessions.push(session(ctxs.last().unwrap(), id));
        }
        Bare {
            sessions,
            _ctxs: ctxs,
        }
    }

    fn run(&mut self, total: u64) -> Duration {
        let n = self.sessions.len() as u64;
        let di = digest_info_of(b"bench");
        let start = Instant::now();
        std::thread::scope(|sc| {
            for (i, (s, key)) in self.sessions.iter_mut().enumerate() {
                let count = total / n + u64::from((i as u64) < total % n);
                let (s, key): (&mut Session, _) = (s, *key);
                sc.spawn(move || {
                    for _ in 0..count {
                        s.sign(&Mechanism::RsaPkcs, key, &di).unwrap();
                    }
                });
            }
        });
        start.elapsed()
    }
}

/// `total` signatures through the pool from `tasks` concurrent tasks, `batch` DigestInfos per
/// sign call (the signer's workers sign up to `sign.batch_max` back to back per call).
async fn pool_run(hsm: &Hsm, key_id: &str, total: u64, tasks: u64, batch: u64) -> Duration {
    let di = digest_info_of(b"bench");
    let left = Arc::new(AtomicU64::new(total));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (hsm, key_id, left) = (hsm.clone(), key_id.to_string(), left.clone());
        handles.push(tokio::spawn(async move {
            // Take up to `batch` of what is left; stop when nothing is.
            while let Ok(v) = left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v > 0).then(|| v - v.min(batch))
            }) {
                let n = v.min(batch);
                let dis = vec![di; n as usize];
                hsm.sign(&key_id, &dis).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed()
}

async fn open_pool(module: &Path, sessions: usize) -> Hsm {
    let mut c = HsmConfig::new(module, LABEL, SecretString::from(PIN));
    c.sessions = sessions;
    Hsm::open(c).await.unwrap()
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let quick = std::env::var_os("HSM_BENCH_QUICK").is_some();
    let s = SoftHsm::new();
    s.init_token(LABEL, PIN);
    let key_file = softhsm::write_rsa_key(s.dir.path(), 4096, false);
    let key_id = s.import_key(LABEL, PIN, &key_file, "bench-key");
    let id = serialmint::hsm::decode_key_id(&key_id).unwrap().to_vec();
    let client = p11_kit_client_module();
    let server = client.as_ref().map(|_| {
        let srv = P11KitServer::start(&s, LABEL, s.path("bench.sock"));
        srv.export_address();
        srv
    });
    let rt = softhsm::runtime();
    let direct = softhsm_module();
    let max_sessions = 4usize;

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(if quick { 2 } else { 4 }))
        .configure_from_args();

    // HSM_BENCH_RATIO_ONLY=1: skip the criterion groups, print only the A/B ratios.
    let groups = std::env::var_os("HSM_BENCH_RATIO_ONLY").is_none();
    if groups {
        let mut g = c.benchmark_group("direct");
        g.throughput(Throughput::Elements(1));
        for n in [1usize, 2] {
            let mut bare = Bare::new(&direct, n, &id, false);
            g.bench_function(format!("bare_threads/{n}"), |b| {
                b.iter_custom(|iters| bare.run(iters))
            });
        }
        for n in 1..=max_sessions {
            let hsm = rt.block_on(open_pool(&direct, n));
            g.bench_function(format!("pool/{n}"), |b| {
                b.to_async(&rt)
                    .iter_custom(|iters| pool_run(&hsm, &key_id, iters, 2 * n as u64, 1))
            });
        }
        g.finish();
    }
    if let Some(client) = client.as_ref().filter(|_| groups) {
        let mut g = c.benchmark_group("p11kit");
        g.throughput(Throughput::Elements(1));
        for n in [1usize, 2] {
            let mut bare = Bare::new(client, n, &id, true);
            g.bench_function(format!("bare_threads_own_connection/{n}"), |b| {
                b.iter_custom(|iters| bare.run(iters))
            });
        }
        let mut shared = Bare::new(client, 2, &id, false);
        g.bench_function("bare_threads_shared_connection/2", |b| {
            b.iter_custom(|iters| shared.run(iters))
        });
        for n in [1usize, 2] {
            let hsm = rt.block_on(open_pool(client, n));
            g.bench_function(format!("pool_connection_per_slot/{n}"), |b| {
                b.to_async(&rt)
                    .iter_custom(|iters| pool_run(&hsm, &key_id, iters, 2 * n as u64, 1))
            });
        }
        g.finish();
    }

    // The done criterion, A/B interleaved in one process: pool(2) vs 2 bare threads, with one
    // signature per call from 2 callers (one per session, like the signer's two workers at
    // low load), from 4 callers (two always waiting for a session: every call pays the
    // pool's hand-offs), and with the signer's default batch of 8 from 4 callers (how the
    // server drives the pool once requests queue up).
    let rounds = if quick { 3 } else { 5 };
    let per_round = if quick { 320 } else { 800 };
    let mut bare = Bare::new(&direct, 2, &id, false);
    let hsm = rt.block_on(open_pool(&direct, 2));
    let mut t = [Duration::ZERO; 4];
    for _ in 0..rounds {
        t[0] += bare.run(per_round);
        t[1] += rt.block_on(pool_run(&hsm, &key_id, per_round, 2, 1));
        t[2] += rt.block_on(pool_run(&hsm, &key_id, per_round, 4, 1));
        t[3] += rt.block_on(pool_run(&hsm, &key_id, per_round, 4, 8));
    }
    let total = per_round * rounds;
    let [b, p12, p14, p84] = t.map(|d| rate(total, d));
    println!(
        "\nRATIO direct: 2 bare threads {b:.1}/s; pool with 2 sessions, 1 per call from 2 callers {p12:.1}/s = {:.3}, from 4 callers {p14:.1}/s = {:.3}; 8 per call from 4 callers {p84:.1}/s = {:.3} of bare (target >= 0.95)",
        p12 / b,
        p14 / b,
        p84 / b
    );
    if let Some(client) = &client {
        let mut own = Bare::new(client, 2, &id, true);
        let mut shared = Bare::new(client, 2, &id, false);
        let hsm = rt.block_on(open_pool(client, 2));
        let n = per_round / 2;
        let (mut o, mut sh, mut pl) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for _ in 0..rounds {
            o += own.run(n);
            sh += shared.run(n);
            pl += rt.block_on(pool_run(&hsm, &key_id, n, 4, 1));
        }
        let total = n * rounds;
        println!(
            "RATIO p11-kit: 2 threads own connections {:.1}/s, 2 threads one shared connection {:.1}/s, pool(2, connection per slot) {:.1}/s, pool/bare = {:.3}",
            rate(total, o),
            rate(total, sh),
            rate(total, pl),
            rate(total, pl) / rate(total, o)
        );
    }
    drop(server);
    c.final_summary();
}
