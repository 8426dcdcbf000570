//! Queue, batching, deadline and admission logic against an in-memory backend (the HSM path
//! itself is tested on a real SoftHSM token in `tests/`).

use super::*;
use std::sync::atomic::AtomicUsize;

/// Signs by echoing `key || digest`, taking `per_sig` per signature, recording batch sizes.
struct FakeBackend {
    per_sig: Duration,
    batches: Mutex<Vec<(String, usize)>>,
    calls: AtomicUsize,
    fail: Mutex<Option<BackendError>>,
}

impl FakeBackend {
    fn new(per_sig: Duration) -> Arc<Self> {
        Arc::new(Self {
            per_sig,
            batches: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
            fail: Mutex::new(None),
        })
    }
}

impl SignBackend for FakeBackend {
    fn sign<'a>(&'a self, key_id: &'a str, digest_infos: &'a [DigestInfo]) -> SignFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.batches
                .lock()
                .push((key_id.to_owned(), digest_infos.len()));
            tokio::time::sleep(self.per_sig * digest_infos.len() as u32).await;
            if let Some(e) = self.fail.lock().clone() {
                return Err(e);
            }
            Ok(digest_infos
                .iter()
                .map(|d| {
                    let mut s = key_id.as_bytes().to_vec();
                    s.extend_from_slice(d);
                    s
                })
                .collect())
        })
    }
}

fn digest(n: u8) -> DigestInfo {
    let mut d = [0u8; 83];
    d[82] = n;
    d
}

fn cfg(workers: usize, batch_max: usize, deadline_ms: u64) -> SignerConfig {
    SignerConfig {
        workers,
        batch_max,
        queue_max: 1000,
        deadline: Duration::from_millis(deadline_ms),
        max_wait: MaxWait::Off,
        initial_service_time: Duration::from_millis(1),
    }
}

#[tokio::test]
async fn signs_and_returns_the_matching_signature() {
    let backend = FakeBackend::new(Duration::from_millis(1));
    let signer = Signer::start(backend.clone(), cfg(2, 8, 1000));
    let sig = signer.sign("k1", digest(7)).await.unwrap();
    assert_eq!(&sig[..2], b"k1");
    assert_eq!(sig[2..], digest(7));
}

#[tokio::test]
async fn batches_same_key_up_to_batch_max_and_never_mixes_keys() {
    let backend = FakeBackend::new(Duration::from_millis(5));
    let signer = Signer::start(backend.clone(), cfg(1, 4, 5000));
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let s = signer.clone();
        let key = if i % 2 == 0 { "even" } else { "odd" };
        tasks.push(tokio::spawn(async move {
            (i, key, s.sign(key, digest(i)).await)
        }));
    }
    for t in tasks {
        let (i, key, sig) = t.await.unwrap();
        let sig = sig.unwrap();
        assert_eq!(&sig[..key.len()], key.as_bytes());
        assert_eq!(
            sig[key.len()..],
            digest(i),
            "answers go to their own waiter"
        );
    }
    let batches = backend.batches.lock().clone();
    assert!(batches.iter().all(|(_, n)| *n <= 4), "{batches:?}");
    assert!(
        batches.iter().any(|(_, n)| *n > 1),
        "a busy worker batches: {batches:?}"
    );
    assert_eq!(batches.iter().map(|(_, n)| n).sum::<usize>(), 20);
    assert!(backend.calls.load(Ordering::SeqCst) < 20);
}

#[tokio::test]
async fn idle_signer_signs_alone_without_waiting_for_a_batch() {
    let backend = FakeBackend::new(Duration::from_millis(1));
    let signer = Signer::start(backend.clone(), cfg(1, 8, 1000));
    let t = Instant::now();
    signer.sign("k", digest(1)).await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(200));
    assert_eq!(backend.batches.lock().clone(), vec![("k".to_owned(), 1)]);
}

#[tokio::test]
async fn admission_refuses_at_once_when_the_deadline_cannot_be_met() {
    // 50 ms per signature, one worker, 300 ms deadline: about 6 fit.
    let backend = FakeBackend::new(Duration::from_millis(50));
    let mut c = cfg(1, 1, 300);
    c.initial_service_time = Duration::from_millis(50);
    let signer = Signer::start(backend.clone(), c);
    let mut tasks = Vec::new();
    for i in 0..30u8 {
        let s = signer.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            (s.sign("k", digest(i)).await, t.elapsed())
        }));
    }
    let (mut ok, mut refused, mut late) = (0, 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            (Ok(_), _) => ok += 1,
            (Err(SignError::Overloaded { retry_after }), took) => {
                refused += 1;
                assert!(retry_after >= Duration::from_secs(1));
                assert!(
                    took < Duration::from_millis(20),
                    "refused at once: {took:?}"
                );
            }
            // Scheduling noise on a loaded machine may make the last admitted one late.
            (Err(SignError::DeadlineExceeded), _) => late += 1,
            (Err(e), _) => panic!("unexpected {e:?}"),
        }
    }
    assert!((3..=7).contains(&ok), "ok={ok}");
    assert!(late <= 1, "late={late}");
    assert_eq!(ok + refused + late, 30);
}

#[tokio::test]
async fn a_target_wait_admits_only_what_it_can_sign_in_time() {
    // 50 ms per signature, one worker, a 60 s deadline but a 120 ms target wait: about 2 fit,
    // where the deadline alone would admit all 30.
    let backend = FakeBackend::new(Duration::from_millis(50));
    let mut c = cfg(1, 1, 60_000);
    c.initial_service_time = Duration::from_millis(50);
    c.max_wait = MaxWait::Fixed(Duration::from_millis(120));
    let signer = Signer::start(backend.clone(), c);
    let ok = burst(&signer, 30).await;
    assert!((1..=4).contains(&ok), "ok={ok}");
}

/// Asks for `n` signatures at once; every answer is a signature or an `Overloaded` refusal.
/// Returns how many were signed.
async fn burst(signer: &Signer, n: u8) -> usize {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let s = signer.clone();
            tokio::spawn(async move { s.sign("k", digest(i)).await })
        })
        .collect();
    let results: Vec<_> = futures_join(tasks).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(SignError::Overloaded { .. })))
        .count();
    assert_eq!(ok + refused, usize::from(n), "{results:?}");
    ok
}

#[tokio::test]
async fn the_automatic_target_wait_admits_half_a_batch_per_worker() {
    // 2 workers, batches of 8, 50 ms per signature, a 60 s deadline: the automatic target
    // (4 x 50 ms) admits about 8 of 40 (4 signatures per worker), where the deadline alone
    // would admit them all.
    let backend = FakeBackend::new(Duration::from_millis(50));
    let mut c = cfg(2, 8, 60_000);
    c.initial_service_time = Duration::from_millis(50);
    c.max_wait = MaxWait::Auto;
    let signer = Signer::start(backend.clone(), c);
    let ok = burst(&signer, 40).await;
    assert!((8..=12).contains(&ok), "ok={ok}");
}

#[tokio::test]
async fn queue_full_is_refused() {
    let backend = FakeBackend::new(Duration::from_millis(100));
    let mut c = cfg(1, 1, 60_000);
    c.queue_max = 2;
    let signer = Signer::start(backend, c);
    let mut tasks = Vec::new();
    for i in 0..6u8 {
        let s = signer.clone();
        tasks.push(tokio::spawn(async move { s.sign("k", digest(i)).await }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let results: Vec<_> = futures_join(tasks).await;
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(SignError::Overloaded { .. })))
        .count();
    // One in flight, two queued, the rest refused.
    assert_eq!(refused, 3, "{results:?}");
}

#[tokio::test]
async fn admission_can_be_asked_before_any_work_is_done() {
    let backend = FakeBackend::new(Duration::from_millis(500));
    let mut c = cfg(1, 1, 60_000);
    c.queue_max = 2;
    let signer = Signer::start(backend, c);
    signer.check_admission().unwrap();
    let mut tasks = Vec::new();
    // One in flight, then two queued: the queue is full.
    for (i, until) in [(0u8, (0, 1)), (1, (1, 1)), (2, (2, 1))] {
        let s = signer.clone();
        tasks.push(tokio::spawn(async move { s.sign("k", digest(i)).await }));
        for _ in 0..400 {
            let st = signer.stats();
            if (st.queued, st.in_flight) == until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert_eq!(signer.stats().queued, 2, "one sign in flight, two queued");
    assert!(matches!(
        signer.check_admission(),
        Err(SignError::Overloaded { .. })
    ));
    for r in futures_join(tasks).await {
        r.unwrap();
    }
    assert_eq!(signer.stats().queued, 0);
    signer.check_admission().unwrap();
}

async fn futures_join<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn admitted_requests_past_their_deadline_fail_and_skip_the_hsm() {
    // The estimate is optimistic (1 ms) but the backend takes 200 ms: the second request,
    // admitted behind the first, misses its 100 ms deadline.
    let backend = FakeBackend::new(Duration::from_millis(200));
    let signer = Signer::start(backend.clone(), cfg(1, 1, 100));
    let a = tokio::spawn({
        let s = signer.clone();
        async move { s.sign("k", digest(1)).await }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b = signer.sign("k", digest(2)).await;
    assert_eq!(b, Err(SignError::DeadlineExceeded));
    assert_eq!(a.await.unwrap(), Err(SignError::DeadlineExceeded));
    tokio::time::sleep(Duration::from_millis(250)).await;
    // The second digest was never sent: its waiter had left.
    assert_eq!(backend.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn service_time_is_measured() {
    let backend = FakeBackend::new(Duration::from_millis(20));
    let signer = Signer::start(backend, cfg(1, 1, 5000));
    for i in 0..10 {
        signer.sign("k", digest(i)).await.unwrap();
    }
    let t = signer.stats().service_time;
    assert!(
        t >= Duration::from_millis(12) && t < Duration::from_millis(60),
        "{t:?}"
    );
}

#[tokio::test]
async fn backend_errors_reach_every_waiter_typed() {
    let backend = FakeBackend::new(Duration::from_millis(1));
    *backend.fail.lock() = Some(BackendError::Unavailable("token gone".into()));
    let signer = Signer::start(backend.clone(), cfg(1, 8, 1000));
    let e = signer.sign("k", digest(1)).await.unwrap_err();
    assert_eq!(
        e,
        SignError::Unavailable("HSM unavailable: token gone".into())
    );
    assert_eq!(e.code(), "hsm-unavailable");
    assert!(e.retry_after().is_some());
    *backend.fail.lock() = Some(BackendError::KeyNotFound("abc".into()));
    let e = signer.sign("k", digest(1)).await.unwrap_err();
    assert!(matches!(e, SignError::KeyNotFound(_)));
    assert!(e.retry_after().is_none());
    *backend.fail.lock() = None;
    assert!(signer.sign("k", digest(1)).await.is_ok(), "recovers");
}

#[tokio::test]
async fn rate_limits_are_per_model_and_typed() {
    let backend = FakeBackend::new(Duration::from_millis(1));
    let signer = Signer::start(backend, cfg(1, 8, 1000));
    let limit = RateLimit {
        per_second: std::num::NonZeroU32::new(1).unwrap(),
        burst: std::num::NonZeroU32::new(2).unwrap(),
    };
    assert!(signer.check_rate("m", Some(limit)).is_ok());
    assert!(signer.check_rate("m", Some(limit)).is_ok());
    let e = signer.check_rate("m", Some(limit)).unwrap_err();
    assert_eq!(
        e,
        SignError::RateLimited {
            retry_after: Duration::from_secs(1)
        }
    );
    assert!(signer.check_rate("n", Some(limit)).is_ok());
    assert!(signer.check_rate("m", None).is_ok());
}

#[tokio::test]
async fn shutdown_drains_then_refuses() {
    let backend = FakeBackend::new(Duration::from_millis(20));
    let signer = Signer::start(backend, cfg(1, 1, 5000));
    let pending: Vec<_> = (0..3u8)
        .map(|i| {
            let s = signer.clone();
            tokio::spawn(async move { s.sign("k", digest(i)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    signer.shutdown();
    for p in pending {
        assert!(p.await.unwrap().is_ok(), "queued work is finished");
    }
    assert_eq!(signer.sign("k", digest(9)).await, Err(SignError::Stopped));
}

#[tokio::test]
async fn stopped_resolves_when_every_worker_has_ended_and_let_go_of_the_backend() {
    let backend = FakeBackend::new(Duration::from_millis(5));
    let held = Arc::downgrade(&backend);
    let signer = Signer::start(backend, cfg(3, 1, 5000));
    assert!(signer.sign("k", digest(1)).await.is_ok());
    let stopped = signer.stopped();
    signer.shutdown();
    drop(signer);
    tokio::time::timeout(Duration::from_secs(30), stopped)
        .await
        .expect("the workers end after shutdown");
    assert!(
        held.upgrade().is_none(),
        "the backend is still held after the workers ended"
    );
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    assert_eq!(round_up_secs(Duration::ZERO), Duration::from_secs(1));
    assert_eq!(
        round_up_secs(Duration::from_millis(1001)),
        Duration::from_secs(2)
    );
    assert_eq!(
        round_up_secs(Duration::from_secs(3)),
        Duration::from_secs(3)
    );
}

/// Hands signatures over one by one, each only when the test lets one more through; fails the
/// batch instead of signing its digest number `fail_at`.
struct GatedBackend {
    gate: tokio::sync::Semaphore,
    batches: Mutex<Vec<usize>>,
    fail_at: Option<usize>,
}

impl GatedBackend {
    fn new(fail_at: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            gate: tokio::sync::Semaphore::new(0),
            batches: Mutex::new(Vec::new()),
            fail_at,
        })
    }
}

impl SignBackend for GatedBackend {
    fn sign<'a>(&'a self, _: &'a str, _: &'a [DigestInfo]) -> SignFuture<'a> {
        unreachable!("the signer hands signatures over one by one")
    }

    fn sign_each<'a>(
        &'a self,
        _: &'a str,
        digest_infos: &'a [DigestInfo],
        on_signed: OnSigned,
    ) -> EachFuture<'a> {
        Box::pin(async move {
            self.batches.lock().push(digest_infos.len());
            for (i, d) in digest_infos.iter().enumerate() {
                self.gate.acquire().await.expect("gate open").forget();
                if self.fail_at == Some(i) {
                    return Err(BackendError::Unavailable("token removed".into()));
                }
                on_signed(i, d.to_vec());
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn each_waiter_is_answered_when_its_own_signature_is_made_not_when_the_batch_ends() {
    let backend = GatedBackend::new(None);
    let signer = Signer::start(backend.clone(), cfg(1, 8, 60_000));
    let sign = |n: u8| {
        let s = signer.clone();
        tokio::spawn(async move { s.sign("k", digest(n)).await })
    };
    // The one worker is busy with a first digest while three more queue behind it.
    let first = sign(0);
    while backend.batches.lock().is_empty() {
        tokio::task::yield_now().await;
    }
    let rest: Vec<_> = (1..=3).map(sign).collect();
    while signer.stats().queued < 3 {
        tokio::task::yield_now().await;
    }
    backend.gate.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap(), digest(0));
    // The three go as one batch; one signature made: its waiter has its answer while the
    // other two are still unsigned.
    backend.gate.add_permits(1);
    let mut rest = rest.into_iter();
    let second = rest.next().unwrap();
    assert_eq!(second.await.unwrap().unwrap(), digest(1));
    assert_eq!(backend.batches.lock().clone(), vec![1, 3]);
    let (third, fourth) = (rest.next().unwrap(), rest.next().unwrap());
    assert!(!third.is_finished() && !fourth.is_finished());
    assert_eq!(signer.stats().in_flight, 2);
    backend.gate.add_permits(2);
    assert_eq!(third.await.unwrap().unwrap(), digest(2));
    assert_eq!(fourth.await.unwrap().unwrap(), digest(3));
    assert_eq!(signer.stats().in_flight, 0);
}

#[tokio::test]
async fn when_a_batch_fails_midway_those_signed_keep_their_signature_and_the_rest_get_the_error() {
    let backend = GatedBackend::new(Some(1));
    let signer = Signer::start(backend.clone(), cfg(1, 8, 60_000));
    let sign = |n: u8| {
        let s = signer.clone();
        tokio::spawn(async move { s.sign("k", digest(n)).await })
    };
    // A first digest keeps the one worker busy while three queue: then they go as one batch.
    let first = sign(9);
    while backend.batches.lock().is_empty() {
        tokio::task::yield_now().await;
    }
    let rest: Vec<_> = (0..3).map(sign).collect();
    while signer.stats().queued < 3 {
        tokio::task::yield_now().await;
    }
    // The first; then the batch's first signature; then the batch fails at its second.
    backend.gate.add_permits(3);
    assert_eq!(first.await.unwrap(), Ok(digest(9).to_vec()));
    let mut answers = Vec::new();
    for t in rest {
        answers.push(t.await.unwrap());
    }
    assert_eq!(backend.batches.lock().clone(), vec![1, 3]);
    assert_eq!(answers[0], Ok(digest(0).to_vec()));
    for a in &answers[1..] {
        assert!(
            matches!(a, Err(SignError::Unavailable(m)) if m.contains("token removed")),
            "{a:?}"
        );
    }
    assert_eq!(signer.stats().in_flight, 0);
}

#[tokio::test]
async fn a_worker_takes_its_share_of_the_queue_among_all_workers() {
    // The batching rule alone, on a signer state with no workers running.
    let shared = Shared {
        backend: FakeBackend::new(Duration::from_millis(1)),
        cfg: cfg(4, 8, 60_000),
        queue: Mutex::new(VecDeque::new()),
        notify: Notify::new(),
        in_flight: AtomicUsize::new(0),
        service_ns: AtomicU64::new(1_000_000),
        closed: AtomicBool::new(false),
        rates: ModelRateLimits::new(),
    };
    let mut waiters = Vec::new();
    let push = |n: u8, waiters: &mut Vec<_>| {
        let (reply, rx) = oneshot::channel();
        waiters.push(rx);
        shared.queue.lock().push_back(Job {
            key_id: Arc::from("k"),
            digest: digest(n),
            enqueued: Instant::now(),
            deadline: Instant::now() + Duration::from_secs(60),
            reply,
        });
    };
    for n in 0..12 {
        push(n, &mut waiters);
    }
    let size = |shared: &Shared| shared.take_batch().map(|(_, b)| b.len());
    // 12 queued, 4 workers: 3; then 9 -> 3, 6 -> 2, 4 -> 1, ...
    assert_eq!(size(&shared), Some(3));
    assert_eq!(size(&shared), Some(3));
    assert_eq!(size(&shared), Some(2));
    assert_eq!(size(&shared), Some(1));
    assert_eq!(size(&shared), Some(1));
    assert_eq!(size(&shared), Some(1));
    assert_eq!(size(&shared), Some(1));
    assert_eq!(size(&shared), None);
    // A long queue: batch_max at most.
    for n in 0..40 {
        push(n, &mut waiters);
    }
    assert_eq!(size(&shared), Some(8));
}

#[tokio::test]
async fn a_target_shorter_than_one_signature_still_admits_what_a_free_worker_can_take() {
    let backend = FakeBackend::new(Duration::from_millis(20));
    let mut c = cfg(1, 8, 60_000);
    c.initial_service_time = Duration::from_millis(50);
    c.max_wait = MaxWait::Fixed(Duration::from_millis(1));
    let signer = Signer::start(backend, c);
    for n in 0..3 {
        assert!(
            signer.sign("k", digest(n)).await.is_ok(),
            "one at a time: admitted"
        );
    }
}
