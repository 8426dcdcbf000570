//! Process-level faults on the real `serialmint serve` binary, with a real SoftHSM token
//! (snapd's TestRootPrivKey as the brand key of testrootorg) and a real Postgres (a fresh
//! database per test):
//!
//! - SIGKILL under load: every serial a client received is in the signing log, the server
//!   restarted on the same database and token serves again with no manual step, and the
//!   signing log is one hash chain that verifies.
//! - SIGTERM under load: requests in flight when the signal comes get their answer (a valid
//!   serial, or a clean 503 when the signer or the log cannot finish them in time), new
//!   connections are refused, and the process exits 0 within a bound. "In flight" includes
//!   a request sent whole before the signal that the server had not read yet (the listener's
//!   queue is taken over, and an idle connection gets a moment for its request before it is
//!   closed); the load clients never see a partial answer, and a request whose head was read
//!   before the signal (the slow-body one here) is answered.
//! - Slowloris: connections that send nothing, or their head a byte at a time, are closed by
//!   the header-read timeout while a normal device is served; a body that stops coming gets
//!   408 from the body-read timeout.
//!
//! - Two processes on one database and one token: request-ids are accepted across them, an
//!   identical request sent to both issues once, both under load at once append to one hash
//!   chain that verifies, and a change made in the database reaches both.
//!
//! Run with `cargo nextest run` (one process per test: SoftHSM is process-wide).

mod common;
#[path = "common/device.rs"]
mod device;
#[path = "common/serve.rs"]
mod serve;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serialmint::store::{Actor, Role, Store};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::TestKey;
use device::*;
use serve::Serve;

/// Device requests in flight at once.
const CLIENTS: usize = 12;

/// Cached RSA-4096 device keys shared by the clients (generating one is slow).
const DEVICE_KEYS: [&str; 4] = ["a", "b", "c", "d"];

/// A served serial as the device saw it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Received {
    serial: String,
    device_key: String,
}

/// What the load clients saw.
#[derive(Default)]
struct Outcomes {
    received: Mutex<Vec<Received>>,
    unavailable: AtomicUsize,
    refused: AtomicUsize,
    /// When each request that got no answer at all had been sent whole (`None`: it could
    /// not be).
    no_answer: Mutex<Vec<Option<Instant>>>,
}

/// A token and a database provisioned with the brand, its key, the `pc` model and its
/// policy; the environment of a server on both with `log` as its log filter.
async fn provisioned(pool: &PgPool, log: &str) -> (Token, Vec<(String, String)>) {
    let token = Token::new();
    provision(&Store::from_pool(pool.clone()), &token.key_id).await;
    let trusted = trust_file(token.softhsm.dir.path());
    let env = serve::env(pool, &token.softhsm, TOKEN, PIN, Some(&trusted), log);
    (token, env)
}

/// Starts a `p11-kit server` in front of `token` and sets `env` to serve through it with
/// `sessions` sessions (each its own client instance). `None`, and the test skips, when
/// p11-kit's client module is not installed.
fn over_p11kit(
    token: &Token,
    env: &mut Vec<(String, String)>,
    sessions: usize,
) -> Option<softhsm::P11KitServer> {
    let Some(client) = softhsm::p11_kit_client_module() else {
        eprintln!("skipped: p11-kit-client.so is not installed");
        return None;
    };
    let p11kit =
        softhsm::P11KitServer::start(&token.softhsm, TOKEN, token.softhsm.path("p11.sock"));
    serve::set(
        env,
        "SERIALMINT_PKCS11_MODULE",
        &client.display().to_string(),
    );
    serve::set(env, "P11_KIT_SERVER_ADDRESS", &p11kit.address());
    serve::set(env, "SERIALMINT_HSM_SESSIONS", &sessions.to_string());
    Some(p11kit)
}

fn keys() -> Vec<Arc<TestKey>> {
    DEVICE_KEYS
        .iter()
        .map(|n| Arc::new(device_key(n, 4096)))
        .collect()
}

/// One request on a fresh connection, as [`try_request`], also saying when the request had
/// been sent whole (`None` when it could not be).
async fn exchange(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (Option<Instant>, Result<Answer, NoAnswer>) {
    let mut s = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return (None, Err(NoAnswer::Refused));
        }
        Err(e) => return (None, Err(NoAnswer::Nothing(e.to_string()))),
    };
    let head = request_head(addr, "POST", path, headers, body.len());
    let sent = async {
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await
    };
    if let Err(e) = sent.await {
        return (None, Err(NoAnswer::Nothing(e.to_string())));
    }
    let sent = Instant::now();
    (Some(sent), read_answer(&mut s).await)
}

/// How one device registration ended.
enum Registration {
    /// A served serial (checked as snapd would).
    Served(Received),
    /// A clean 503.
    Unavailable,
    /// No whole answer to a request; when it had been sent whole.
    NoAnswer(NoAnswer, Option<Instant>),
}

/// One device registration: a fresh request-id, then a serial for `dev`.
async fn register(addr: SocketAddr, dev: &TestKey) -> Registration {
    let (sent, rid) = exchange(addr, "/v1/request-id", &[("api-key", API_KEY)], b"").await;
    let rid = match rid {
        Ok(a) if a.status == 200 => a.json()["request-id"].as_str().unwrap().to_owned(),
        Ok(a) => panic!("request-id: {}", a.text()),
        Err(e) => return Registration::NoAnswer(e, sent),
    };
    let body = body(&ReqSpec::new(&rid), dev);
    let headers = [
        ("api-key", API_KEY),
        ("content-type", "application/x.ubuntu.assertion"),
        ("snap-device-capabilities", "serial-stream"),
    ];
    match exchange(addr, "/v1/serial", &headers, &body).await {
        (_, Ok(a)) => match served(&a, dev) {
            Some(r) => Registration::Served(r),
            None => Registration::Unavailable,
        },
        (sent, Err(e)) => Registration::NoAnswer(e, sent),
    }
}

/// A serial answer: the serial (checked) on 200, `None` on a clean 503; any other answer
/// fails the test.
#[track_caller]
fn served(a: &Answer, dev: &TestKey) -> Option<Received> {
    if a.status == 503 {
        let code = a.json()["error_list"][0]["code"]
            .as_str()
            .unwrap()
            .to_owned();
        a.assert_error(503, &code);
        return None;
    }
    let serial = check_serial(a, dev, MODEL, true);
    Some(Received {
        serial: serial.serial().to_owned(),
        device_key: dev.public.key_id(),
    })
}

/// `CLIENTS` devices registering in a loop until `stop`, each on its own connection per
/// request. After `stop` they finish the request at hand. A refused connection, or one that
/// breaks before any byte of an answer, is recorded for the test to judge (the server may be
/// gone); a partial answer fails the test.
fn load(
    addr: SocketAddr,
    keys: &[Arc<TestKey>],
    stop: Arc<AtomicBool>,
    out: Arc<Outcomes>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|i| {
            let dev = keys[i % keys.len()].clone();
            let (stop, out) = (stop.clone(), out.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match register(addr, &dev).await {
                        Registration::Served(r) => out.received.lock().push(r),
                        Registration::Unavailable => {
                            out.unavailable.fetch_add(1, Ordering::SeqCst);
                        }
                        Registration::NoAnswer(NoAnswer::Refused, _) => {
                            out.refused.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Registration::NoAnswer(NoAnswer::Nothing(_), sent) => {
                            out.no_answer.lock().push(sent);
                        }
                        Registration::NoAnswer(e @ NoAnswer::Partial(_), _) => {
                            panic!("client {i}: {e}")
                        }
                    }
                }
            })
        })
        .collect()
}

/// Waits (at most `timeout`) until the clients hold `n` serials.
async fn wait_for_serials(out: &Outcomes, n: usize, timeout: Duration, serve: &Serve) {
    let deadline = Instant::now() + timeout;
    while out.received.lock().len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} serials in {timeout:?}; server log:\n{}",
            out.received.lock().len(),
            serve.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The signing log as (serial, device key) pairs.
async fn signing_log(pool: &PgPool) -> HashSet<Received> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT serial, device_key_id FROM signing_log")
            .fetch_all(pool)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(serial, device_key)| Received { serial, device_key })
        .collect()
}

/// The whole signing log is one hash chain that verifies (the offline verifier over the rows
/// as Postgres holds them): no gap, no row out of order, every link recomputes.
async fn assert_one_chain(pool: &PgPool) {
    use serialmint::domain::ExportedIssuance;
    use serialmint::evidence::chain::signing_row_bytes;
    use serialmint::evidence::verify::{Entry, verify};
    let rows: Vec<ExportedIssuance> = sqlx::query_as(
        "SELECT id, brand_id, model_id, model_name, serial, revision, device_key_id, \
         request_id, signing_key_id, instance, issued_at, serial_assertion, original_serial, \
         original_serial_id, chain_seq, chain_hash FROM signing_log",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let n = rows.len();
    let entries: Vec<Entry> = rows
        .into_iter()
        .map(|e| {
            let (at, issuance) = (e.row.issued_at, e.row.issuance);
            Entry {
                seq: e.chain_seq,
                hash: e.chain_hash.and_then(|h| h.try_into().ok()),
                label: issuance.serial.clone(),
                bytes_at: Box::new(move |seq| signing_row_bytes(seq, at, &issuance)),
            }
        })
        .collect();
    let report = verify(&entries, &[], None);
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!((report.chained_rows, report.last_seq), (n, n as i64));
}

#[track_caller]
fn assert_all_logged(received: &[Received], logged: &HashSet<Received>) {
    let missing: Vec<&Received> = received.iter().filter(|r| !logged.contains(r)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} served serials are not in the signing log: {missing:?}",
        missing.len(),
        received.len()
    );
}

#[sqlx::test]
async fn sigkill_under_load_loses_no_logged_serial_and_restarts(pool: PgPool) {
    let (_token, env) = provisioned(&pool, "info").await;
    let keys = keys();
    let mut server = Serve::start(env.clone());
    let (device_port, admin_port) = (server.device.port(), server.admin.port());

    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Outcomes::default());
    let clients = load(server.device, &keys, stop.clone(), out.clone());
    wait_for_serials(&out, 2 * CLIENTS, Duration::from_secs(90), &server).await;

    // Mid-run: the clients keep sending while the process dies.
    server.sigkill();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("a client failed");
    }
    let received = out.received.lock().clone();
    eprintln!(
        "before SIGKILL: {} serials served, {} clean 503; after: {} requests unanswered, {} refused",
        received.len(),
        out.unavailable.load(Ordering::SeqCst),
        out.no_answer.lock().len(),
        out.refused.load(Ordering::SeqCst),
    );
    let distinct: HashSet<&Received> = received.iter().collect();
    assert_eq!(distinct.len(), received.len(), "a serial was served twice");

    // Never a serial without its log row.
    let logged = signing_log(&pool).await;
    assert_all_logged(&received, &logged);
    assert!(logged.len() >= received.len());

    // Restarted on the same database, token and ports, with no manual step: serves anew.
    let server = Serve::start_on(env, device_port, admin_port);
    let dev = &keys[0];
    let fresh = loop {
        match register(server.device, dev).await {
            Registration::Served(r) => break r,
            // The HSM or the log may need a moment after start-up: snapd retries a 503.
            Registration::Unavailable => tokio::time::sleep(Duration::from_millis(200)).await,
            Registration::NoAnswer(e, _) => panic!("restarted server: {e}\n{}", server.logs()),
        }
    };
    assert!(!logged.contains(&fresh), "a new serial, not an old one");
    assert!(signing_log(&pool).await.contains(&fresh));
    let (status, body) = common::http_get(server.admin.port(), "/readyz");
    assert_eq!(status, 200, "{body}");
    // The chain written before the kill and after the restart is one, and verifies.
    assert_one_chain(&pool).await;
}

#[sqlx::test]
async fn sigterm_under_load_drains_refuses_new_connections_and_exits_zero(pool: PgPool) {
    let (_token, mut env) = provisioned(&pool, "info").await;
    serve::set(&mut env, "SERIALMINT_DRAIN_TIMEOUT_SECS", "30");
    let keys = keys();
    let mut server = Serve::start(env);

    // A request deterministically in flight at SIGTERM: its head and half its body are sent
    // before the signal, the rest after the listeners have closed.
    let slow_dev = keys[0].clone();
    let rid = server_request_id(server.device).await;
    let slow_body = body(&ReqSpec::new(&rid), &slow_dev);
    let mut slow = TcpStream::connect(server.device).await.unwrap();
    let head = request_head(
        server.device,
        "POST",
        "/v1/serial",
        &[
            ("api-key", API_KEY),
            ("content-type", "application/x.ubuntu.assertion"),
            ("snap-device-capabilities", "serial-stream"),
        ],
        slow_body.len(),
    );
    let half = slow_body.len() / 2;
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&slow_body[..half]).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Outcomes::default());
    let clients = load(server.device, &keys, stop.clone(), out.clone());
    wait_for_serials(&out, CLIENTS, Duration::from_secs(90), &server).await;

    server.sigterm();
    // Both listeners say they stopped accepting; from then on connections are refused.
    assert!(
        server
            .wait_for_log("stopped accepting", 2, Duration::from_secs(30))
            .await,
        "no 'stopped accepting' after SIGTERM:\n{}",
        server.logs()
    );
    let closed = Instant::now();
    for addr in [server.device, server.admin] {
        let e = TcpStream::connect(addr).await.err();
        assert_eq!(
            e.map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionRefused),
            "a new connection to {addr} after SIGTERM was not refused"
        );
    }
    stop.store(true, Ordering::SeqCst);

    // The request in flight finishes with its serial.
    slow.write_all(&slow_body[half..]).await.unwrap();
    let answer = read_answer(&mut slow)
        .await
        .unwrap_or_else(|e| panic!("in-flight request: {e}\n{}", server.logs()));
    let slow_served = served(&answer, &slow_dev);

    for c in clients {
        c.await.expect("a client failed");
    }
    let status = server
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("still running 60 s after SIGTERM:\n{}", server.logs()));
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        server.logs()
    );
    // Every request the server had started on was answered within the drain period.
    assert!(
        !server.logs().contains("drain timed out"),
        "{}",
        server.logs()
    );

    let mut received = out.received.lock().clone();
    let unanswered = out.no_answer.lock().clone();
    eprintln!(
        "served {} (+ the slow one: {}), clean 503 {}, unanswered {}, refused {}",
        received.len(),
        slow_served.is_some(),
        out.unavailable.load(Ordering::SeqCst),
        unanswered.len(),
        out.refused.load(Ordering::SeqCst),
    );
    // A request sent whole on a connection the server had (sending implies connecting before
    // the listener closed) by the time the listeners were closed is answered, even when the
    // server had not read it yet. Only a connection whose request came later than the
    // shutdown grace may be closed bare.
    let cut = unanswered
        .iter()
        .filter(|sent| sent.is_some_and(|t| t < closed))
        .count();
    assert_eq!(
        cut,
        0,
        "{cut} requests sent before the listeners closed got no answer:\n{}",
        server.logs()
    );
    received.extend(slow_served);
    assert_all_logged(&received, &signing_log(&pool).await);
}

/// Over p11-kit's client (a module instance and a connection of its own per session), SIGTERM
/// closes every session and finalizes every instance before the process exits. The signer's
/// threads used to drop the HSM, closing the sessions, while `main` had already returned:
/// p11-kit-client's library destructor ran under them, their closes failed ("'bound != NULL'
/// not true"), and one stop in five hung for good in that destructor on a lock left taken
/// (32 sessions behind a network-like module).
#[sqlx::test]
async fn sigterm_over_p11kit_closes_every_session_before_the_process_exits(pool: PgPool) {
    let (token, mut env) = provisioned(&pool, "info").await;
    let Some(_p11kit) = over_p11kit(&token, &mut env, 16) else {
        return;
    };
    let mut server = Serve::start(env);
    let dev = device_key("a", 4096);
    assert!(
        matches!(register(server.device, &dev).await, Registration::Served(_)),
        "no serial through p11-kit:\n{}",
        server.logs()
    );

    server.sigterm();
    let status = server
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("still running 30 s after SIGTERM:\n{}", server.logs()));
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        server.logs()
    );
    let logs = server.logs();
    // The 16 pooled sessions and the login anchor, each on an instance of its own.
    assert!(
        logs.contains("HSM sessions closed sessions=17"),
        "the sessions were not closed before the exit:\n{logs}"
    );
    for sign in ["Failed to close session", "not true", "p11-kit:"] {
        assert!(!logs.contains(sign), "{sign:?} at shutdown:\n{logs}");
    }
}

/// A PKCS#11 call abandoned past the call timeout stays on `/metrics` as
/// `hsm_calls_stuck{token}` for as long as its thread is inside the module (with p11-kit 0.24's
/// client such a thread may spin, so the rules alert on it), and leaves it when the call
/// returns. Here the p11-kit server is stopped (SIGSTOP) with every connection killed:
/// recovery's calls into it hang and are abandoned; resuming the server lets them return.
#[sqlx::test]
async fn calls_stuck_in_the_module_are_on_metrics_until_they_return(pool: PgPool) {
    let (token, mut env) = provisioned(&pool, "info").await;
    let Some(p11kit) = over_p11kit(&token, &mut env, 2) else {
        return;
    };
    serve::set(&mut env, "SERIALMINT_HSM_CALL_TIMEOUT_SECS", "1");
    let scraper = Store::from_pool(pool.clone())
        .create_token("scraper", Role::ReadOnly, None, &Actor::bootstrap())
        .await
        .unwrap()
        .secret;
    let server = Serve::start(env);
    let bearer = format!("Bearer {scraper}");
    let stuck = || async {
        let a = request(
            server.admin,
            "GET",
            "/metrics",
            &[("authorization", bearer.as_str())],
            b"",
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text());
        let prefix = format!("hsm_calls_stuck{{token=\"{TOKEN}\"}} ");
        let text = a.text();
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no `{prefix}` on /metrics:\n{text}"));
        value.trim().parse::<f64>().unwrap()
    };
    let dev = device_key("a", 4096);
    assert!(
        matches!(register(server.device, &dev).await, Registration::Served(_)),
        "no serial through p11-kit:\n{}",
        server.logs()
    );
    assert_eq!(stuck().await, 0.0, "a stuck call before anything stalled");

    p11kit.stop();
    p11kit.kill_connections();
    let start = Instant::now();
    while stuck().await < 1.0 {
        // Each request meets the broken connections or the token out of rotation.
        let r = register(server.device, &dev).await;
        assert!(
            !matches!(r, Registration::NoAnswer(..)),
            "a request got no answer while the HSM was stalled"
        );
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "no stuck call within 40 s of the stall:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        server
            .wait_for_log(
                "PKCS#11 call gave no answer in time",
                1,
                Duration::from_secs(5)
            )
            .await
    );

    p11kit.resume();
    let start = Instant::now();
    loop {
        let served = matches!(
            register(server.device, &device_key("b", 4096)).await,
            Registration::Served(_)
        );
        if served && stuck().await == 0.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "40 s after the p11-kit server resumed: served {served}, stuck {}:\n{}",
            stuck().await,
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(server.logs().contains("an abandoned PKCS#11 call returned"));
}

async fn server_request_id(addr: SocketAddr) -> String {
    let a = request(addr, "POST", "/v1/request-id", &[("api-key", API_KEY)], b"").await;
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()["request-id"].as_str().unwrap().to_owned()
}

/// How a slow connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Slow {
    /// The server closed it (EOF or reset).
    Closed,
    /// Still open at the test's bound.
    StillOpen,
}

/// A client that connects and sends nothing until the server closes the connection.
async fn silent(addr: SocketAddr, bound: Duration) -> Slow {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 256];
    match tokio::time::timeout(bound, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    {
        Ok(()) => Slow::Closed,
        Err(_) => Slow::StillOpen,
    }
}

/// A client that sends a request head one byte every `every`, a head that never ends.
async fn trickle(addr: SocketAddr, every: Duration, bound: Duration) -> Slow {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/request-id HTTP/1.1\r\nHost: {addr}\r\napi-key: {API_KEY}\r\nX-Pad: {}",
        "a".repeat(100_000)
    );
    let deadline = tokio::time::Instant::now() + bound;
    let mut buf = [0u8; 256];
    for byte in head.bytes() {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Slow::Closed,
                Ok(_) => {}
            },
            () = tokio::time::sleep(every) => {
                if s.write_all(&[byte]).await.is_err() {
                    return Slow::Closed;
                }
            }
            () = tokio::time::sleep_until(deadline) => return Slow::StillOpen,
        }
    }
    panic!("the whole padded head was sent");
}

#[sqlx::test]
async fn slowloris_connections_are_cut_while_a_device_is_served(pool: PgPool) {
    let (_token, mut env) = provisioned(&pool, "info").await;
    serve::set(&mut env, "SERIALMINT_HEADER_READ_TIMEOUT_MS", "1000");
    // Fewer slots than slow connections: a device gets in only because the timeout frees
    // them.
    serve::set(&mut env, "SERIALMINT_MAX_CONNECTIONS", "16");
    let server = Serve::start(env);
    let dev = device_key(DEVICE_KEYS[1], 4096);
    // The slow connections are closed within 15 s of their start: far more than the 1 s
    // configured (the second half waits ~1 s for a slot first), less than the default 10 s
    // timeout would take for two rounds and than hyper's own 30 s. Being served has a
    // looser bound: it only must not hang.
    let cut_within = Duration::from_secs(15);
    let bound = Duration::from_secs(60);

    let mut slow = tokio::task::JoinSet::new();
    for i in 0..24 {
        let addr = server.device;
        if i % 2 == 0 {
            slow.spawn(silent(addr, cut_within));
        } else {
            slow.spawn(trickle(addr, Duration::from_millis(100), cut_within));
        }
    }
    // Let the slow connections take every slot first.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let served = tokio::time::timeout(bound, async {
        let rid = server_request_id(server.device).await;
        let a = server_post_serial(server.device, &body(&ReqSpec::new(&rid), &dev)).await;
        check_serial(&a, &dev, MODEL, true)
    })
    .await
    .unwrap_or_else(|_| panic!("no serial within {bound:?}:\n{}", server.logs()));
    assert_eq!(served.device_key().key_id(), dev.public.key_id());

    let mut closed = 0;
    while let Some(r) = slow.join_next().await {
        assert_eq!(
            r.unwrap(),
            Slow::Closed,
            "a slow connection was never closed"
        );
        closed += 1;
    }
    assert_eq!(closed, 24);
    // And the listener still serves afterwards.
    let (status, body) = common::http_get(server.device.port(), "/v1/version");
    assert_eq!(status, 200, "{body}");
}

async fn server_post_serial(addr: SocketAddr, body: &[u8]) -> Answer {
    request(
        addr,
        "POST",
        "/v1/serial",
        &[
            ("api-key", API_KEY),
            ("content-type", "application/x.ubuntu.assertion"),
            ("snap-device-capabilities", "serial-stream"),
        ],
        body,
    )
    .await
}

#[sqlx::test]
async fn a_body_that_stops_coming_gets_408_and_frees_its_connection(pool: PgPool) {
    let (_token, mut env) = provisioned(&pool, "info").await;
    serve::set(&mut env, "SERIALMINT_BODY_READ_TIMEOUT_MS", "500");
    let server = Serve::start(env);
    let dev = device_key(DEVICE_KEYS[2], 4096);
    let rid = server_request_id(server.device).await;
    let whole = body(&ReqSpec::new(&rid), &dev);
    let mut s = TcpStream::connect(server.device).await.unwrap();
    let head = request_head(
        server.device,
        "POST",
        "/v1/serial",
        &[
            ("api-key", API_KEY),
            ("content-type", "application/x.ubuntu.assertion"),
        ],
        whole.len(),
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&whole[..100]).await.unwrap();
    // Nothing more is sent: the server answers on its own, within 20 s: 40 times the 500 ms
    // configured, less than the 30 s default would take.
    let a = tokio::time::timeout(Duration::from_secs(20), read_answer(&mut s))
        .await
        .expect("no answer to a stalled body")
        .unwrap();
    a.assert_error(408, "body-timeout");
    // The whole body, sent in time, is served.
    let a = server_post_serial(server.device, &whole).await;
    check_serial(&a, &dev, MODEL, true);
}

/// Two `serialmint serve` processes on one database and one token, as a factory runs them
/// behind a load balancer: a request-id from one is accepted by the other; the same request
/// sent to both at once issues one serial, answered by both; a model disabled in the database
/// is refused by both once their catalogs follow the change (printed: how long that took).
#[sqlx::test]
async fn two_processes_share_request_ids_changes_and_issue_once(pool: PgPool) {
    let (_token, env) = provisioned(&pool, "info").await;
    let a = Serve::start(env.clone());
    let b = Serve::start(env);
    let keys = keys();
    let dev = &keys[0];

    // Cross-instance request-ids, both ways.
    for (from, to) in [(&a, &b), (&b, &a)] {
        let rid = server_request_id(from.device).await;
        let answer = server_post_serial(to.device, &body(&ReqSpec::new(&rid), dev)).await;
        assert!(served(&answer, dev).is_some(), "{}", answer.text());
    }

    // The same request to both at once: one row, the same serial twice.
    for _ in 0..3 {
        let rid = server_request_id(a.device).await;
        let req = body(&ReqSpec::new(&rid), &keys[1]);
        let (x, y) = tokio::join!(
            server_post_serial(a.device, &req),
            server_post_serial(b.device, &req)
        );
        let (sx, sy) = (served(&x, &keys[1]), served(&y, &keys[1]));
        assert!(sx.is_some() && sx == sy, "{} / {}", x.text(), y.text());
    }
    assert_eq!(signing_log(&pool).await.len(), 5);

    // Both processes under load at once: their group commits append to one chain.
    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Outcomes::default());
    let mut clients = load(a.device, &keys, stop.clone(), out.clone());
    clients.extend(load(b.device, &keys, stop.clone(), out.clone()));
    wait_for_serials(&out, 4 * CLIENTS, Duration::from_secs(90), &a).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("a client failed");
    }
    assert_one_chain(&pool).await;
    let loaded = signing_log(&pool).await.len() - 5;

    // An admin change, made in the database: both catalogs follow it (LISTEN/NOTIFY).
    let store = Store::from_pool(pool.clone());
    let change = serialmint::store::ModelChange {
        enabled: Some(false),
        ..Default::default()
    };
    store
        .update_model(BRAND, MODEL, &change, &admin())
        .await
        .unwrap();
    let changed = Instant::now();
    // Serials answered before an instance saw the change: each must be logged too.
    let mut before_seen = 0;
    for s in [&a, &b] {
        loop {
            let rid = server_request_id(s.device).await;
            let answer = server_post_serial(s.device, &body(&ReqSpec::new(&rid), dev)).await;
            if answer.status == 403 {
                answer.assert_error(403, "model-not-allowed");
                break;
            }
            assert!(served(&answer, dev).is_some(), "{}", answer.text());
            before_seen += 1;
            assert!(
                changed.elapsed() < Duration::from_secs(30),
                "instance on {} still serves the disabled model: {}",
                s.device,
                answer.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!(
        "both instances refused the disabled model {:?} after the change ({before_seen} served before)",
        changed.elapsed()
    );
    assert_eq!(signing_log(&pool).await.len(), 5 + loaded + before_seen);
    assert_one_chain(&pool).await;
}
