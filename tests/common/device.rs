//! Device-plane test harness: a serialmint device listener in this process on a real SoftHSM
//! token (snapd's `TestRootPrivKey` imported as the brand key of `testrootorg`) and a real
//! Postgres database (the per-test database of `#[sqlx::test]`), plus the device side built
//! with the project's codec: RSA-4096 device keys, self-signed serial-requests, a model
//! assertion signed by the test root key, and a small HTTP/1.1 client.
//!
//! Needs `common` and `softhsm` as sibling modules of the test crate.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::RsaKeyPair;
use secrecy::SecretString;
use serialmint::assertion::{
    self, Assertion, AssertionType, HeaderValue, Headers, Model, Serial, build_content,
    decode_stream,
};
use serialmint::catalog::Catalog;
use serialmint::config::Config;
use serialmint::hsm::{Hsm, HsmConfig};
use serialmint::http::{self, Limits};
use serialmint::signer::SignBackend;
use serialmint::store::{
    Actor, AssertionKind, DuplicatePolicy, NewAccountAssertion, NewModel, SerialGeneration, Store,
};
use serialmint::wiring::LazyHsm;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{FIX, T2024, TestKey, fixture_str, test_trust};
use crate::softhsm::{SoftHsm, softhsm_module};

pub const BRAND: &str = "testrootorg";
pub const MODEL: &str = "pc";
pub const API_KEY: &str = "pc-api-key-0123456789abcdef";
pub const KEY_NAME: &str = "brand-root";
pub const TOKEN: &str = "device-test";
pub const PIN: &str = "device-test-pin-1234";

pub fn admin() -> Actor {
    Actor("tester".into())
}

// --- device keys ------------------------------------------------------------------------

/// A software RSA key of `bits`, generated once and cached under the target's temp dir
/// (nextest runs every test in its own process; RSA-4096 generation is not free).
pub fn device_key(name: &str, bits: usize) -> TestKey {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("device-keys");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{bits}.pk8"));
    if let Ok(der) = std::fs::read(&path) {
        return TestKey::from_pkcs8(&der);
    }
    let size = match bits {
        2048 => KeySize::Rsa2048,
        4096 => KeySize::Rsa4096,
        _ => panic!("unsupported size {bits}"),
    };
    let pair = RsaKeyPair::generate(size).unwrap();
    let der = pair.as_der().unwrap();
    let der = der.as_ref().to_vec();
    // Written aside and renamed: a concurrent test process sees the whole file or none.
    let tmp = dir.join(format!("{name}-{bits}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, &der).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    TestKey::from_pkcs8(&der)
}

fn now_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

/// What goes into a serial-request.
#[derive(Clone, Debug)]
pub struct ReqSpec<'a> {
    pub brand: &'a str,
    pub model: &'a str,
    pub request_id: &'a str,
    pub serial: Option<&'a str>,
    pub body: &'a str,
}

impl<'a> ReqSpec<'a> {
    pub fn new(request_id: &'a str) -> Self {
        ReqSpec {
            brand: BRAND,
            model: MODEL,
            request_id,
            serial: None,
            body: "",
        }
    }
}

/// A serial-request for `spec`, with `device`'s public key, signed by `signer`.
pub fn serial_request_signed_by(spec: &ReqSpec, device: &TestKey, signer: &TestKey) -> Vec<u8> {
    let mut h = Headers::new();
    h.insert("brand-id".into(), spec.brand.into());
    h.insert("model".into(), spec.model.into());
    h.insert("request-id".into(), spec.request_id.into());
    if let Some(s) = spec.serial {
        h.insert("serial".into(), s.into());
    }
    h.insert(
        "device-key".into(),
        HeaderValue::String(device.public.encode()),
    );
    let content = build_content(
        AssertionType::SerialRequest,
        &h,
        spec.body,
        &device.public.key_id(),
    )
    .unwrap();
    signer.sign(&content, now_secs())
}

/// A serial-request self-signed by `device`.
pub fn serial_request(spec: &ReqSpec, device: &TestKey) -> Vec<u8> {
    serial_request_signed_by(spec, device, device)
}

/// A model assertion of `brand`/`model` signed by `signer` (which claims to be the brand).
pub fn model_assertion_signed_by(brand: &str, model: &str, signer: &TestKey) -> Vec<u8> {
    let mut h = Headers::new();
    h.insert("authority-id".into(), brand.into());
    h.insert("series".into(), "16".into());
    h.insert("brand-id".into(), brand.into());
    h.insert("model".into(), model.into());
    h.insert("architecture".into(), "amd64".into());
    h.insert("gadget".into(), "pc".into());
    h.insert("kernel".into(), "pc-kernel".into());
    h.insert("timestamp".into(), "2024-01-02T03:04:05Z".into());
    let content = build_content(AssertionType::Model, &h, "", &signer.public.key_id()).unwrap();
    signer.sign(&content, T2024)
}

/// The model assertion of `model` signed by the brand (the test root key).
pub fn model_assertion(model: &str) -> Vec<u8> {
    model_assertion_signed_by(BRAND, model, &TestKey::root())
}

/// The stream `parts` joined as snapd's encoder does.
pub fn stream(parts: &[&[u8]]) -> Vec<u8> {
    assertion::encode_stream(parts.iter().map(|p| p.to_vec()))
}

/// The usual body: a serial-request for `spec` by `device`, then the brand's model.
pub fn body(spec: &ReqSpec, device: &TestKey) -> Vec<u8> {
    stream(&[&serial_request(spec, device), &model_assertion(spec.model)])
}

/// Checks a 200 answer as snapd would: one serial, for this device key, brand and model,
/// followed (when `with_chain`) by the brand key's account-key and account, verifying
/// against the testrootorg root with the model at hand; returns it.
#[track_caller]
pub fn check_serial(a: &Answer, device: &TestKey, model: &str, with_chain: bool) -> Serial {
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.header("content-type"),
        Some("application/x.ubuntu.assertion")
    );
    let all = a.assertions();
    let kinds: Vec<AssertionType> = all.iter().map(|x| x.kind()).collect();
    if with_chain {
        assert_eq!(
            kinds,
            [
                AssertionType::Serial,
                AssertionType::AccountKey,
                AssertionType::Account
            ]
        );
        assert_eq!(
            all[1].header_str("public-key-sha3-384"),
            Some(TestKey::root().public.key_id().as_str())
        );
        assert_eq!(all[2].header_str("account-id"), Some(BRAND));
    } else {
        assert_eq!(kinds, [AssertionType::Serial]);
    }
    let model_a = Model::try_from(assertion::decode(&model_assertion(model)).unwrap()).unwrap();
    let serial_a = all.into_iter().next().unwrap();
    test_trust()
        .check_serial_with_model(&serial_a, &model_a, OffsetDateTime::now_utc())
        .expect("the serial verifies against the testrootorg root");
    let serial = Serial::try_from(serial_a).unwrap();
    assert_eq!(serial.brand_id(), BRAND);
    assert_eq!(serial.model(), model);
    assert_eq!(serial.device_key().key_id(), device.public.key_id());
    assert_eq!(
        serial.header_str("device-key-sha3-384"),
        Some(device.public.key_id().as_str())
    );
    assert_eq!(serial.authority_id(), Some(BRAND));
    serial
}

// --- HTTP client ------------------------------------------------------------------------

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// The assertions of a 200 answer.
    pub fn assertions(&self) -> Vec<Assertion> {
        decode_stream(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// Asserts a JSON error answer as snapd shows it, with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}",
            self.text()
        );
        let j = self.json();
        assert!(j["message"].as_str().is_some_and(|m| !m.is_empty()), "{j}");
        assert_eq!(j["error_list"][0]["code"], code, "{j}");
        assert!(j["error_list"][0]["message"].is_string(), "{j}");
        if status == 503 {
            assert!(
                self.header("retry-after").is_some(),
                "503 without Retry-After"
            );
        }
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    try_request(addr, method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// The head of a request as [`request`] sends it (`Connection: close`, `Content-Length` for
/// POST).
pub fn request_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body_len: usize,
) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        head.push_str(&format!("Content-Length: {body_len}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Why a request got no whole HTTP answer.
#[derive(Debug)]
pub enum NoAnswer {
    /// The connection was refused (nothing listens).
    Refused,
    /// The connection broke before any byte of an answer arrived.
    Nothing(String),
    /// Some bytes arrived, but not a whole answer (a head and the body its
    /// `Content-Length` announces).
    Partial(Vec<u8>),
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoAnswer::Refused => f.write_str("connection refused"),
            NoAnswer::Nothing(e) => write!(f, "no answer: {e}"),
            NoAnswer::Partial(b) => write!(f, "partial answer: {:?}", String::from_utf8_lossy(b)),
        }
    }
}

/// [`request`] that reports a refused, broken or truncated exchange instead of panicking.
pub async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Answer, NoAnswer> {
    let mut s = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(NoAnswer::Refused);
        }
        Err(e) => return Err(NoAnswer::Nothing(e.to_string())),
    };
    let head = request_head(addr, method, path, headers, body.len());
    if let Err(e) = s.write_all(head.as_bytes()).await {
        return Err(NoAnswer::Nothing(e.to_string()));
    }
    // The server may answer (413) before reading the whole body.
    let _ = s.write_all(body).await;
    read_answer(&mut s).await
}

/// Reads an answer to the end of the connection: a whole one (head, and as much body as its
/// `Content-Length` says), or why not.
pub async fn read_answer(s: &mut TcpStream) -> Result<Answer, NoAnswer> {
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw).await;
    if raw.is_empty() {
        return Err(NoAnswer::Nothing(match read {
            Ok(_) => "connection closed".into(),
            Err(e) => e.to_string(),
        }));
    }
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(NoAnswer::Partial(raw));
    };
    let answer = parse_answer(&raw);
    let declared = answer
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| raw.len() - split - 4 < n) {
        return Err(NoAnswer::Partial(raw));
    }
    Ok(answer)
}

fn parse_answer(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

// --- the server -------------------------------------------------------------------------

/// A SoftHSM token holding the brand key (TestRootPrivKey).
pub struct Token {
    pub softhsm: SoftHsm,
    pub key_id: String,
}

impl Token {
    /// A fresh token in a temp dir (sets `SOFTHSM2_CONF` for this process: call first).
    pub fn new() -> Token {
        let softhsm = SoftHsm::new();
        softhsm.init_token(TOKEN, PIN);
        let key_id = softhsm.import_key(
            TOKEN,
            PIN,
            Path::new(&format!("{FIX}/testroot.pk8")),
            KEY_NAME,
        );
        assert_eq!(key_id, TestKey::root().public.key_id());
        Token { softhsm, key_id }
    }

    pub fn hsm_config(&self) -> HsmConfig {
        let mut cfg = HsmConfig::new(softhsm_module(), TOKEN, SecretString::from(PIN));
        cfg.sessions = 2;
        cfg
    }

    /// The token opened directly with the SoftHSM module.
    pub async fn backend(&self) -> Arc<dyn SignBackend> {
        Arc::new(LazyHsm::open(
            Hsm::open(self.hsm_config()).await.expect("token opens"),
        ))
    }
}

/// The brand, its key, the `pc` model with its policy, and the held account/account-key
/// assertions, written to the store.
pub async fn provision(store: &Store, key_id: &str) {
    store.ensure_brand(BRAND, &admin()).await.unwrap();
    store
        .create_pending_key(KEY_NAME, BRAND, &[], "*", &admin())
        .await
        .unwrap();
    store
        .mark_key_ready(KEY_NAME, key_id, &TestKey::root().public.encode(), &admin())
        .await
        .unwrap();
    create_model(store, MODEL, API_KEY).await;
    store
        .create_serial_policy(BRAND, MODEL, KEY_NAME, &admin())
        .await
        .unwrap();
    store
        .put_account_assertions(
            &[
                NewAccountAssertion {
                    kind: AssertionKind::Account,
                    primary_key: BRAND.into(),
                    account_id: BRAND.into(),
                    revision: 0,
                    text: fixture_str("snapd/testrootorg.account"),
                },
                NewAccountAssertion {
                    kind: AssertionKind::AccountKey,
                    primary_key: key_id.into(),
                    account_id: BRAND.into(),
                    revision: 0,
                    text: fixture_str("snapd/testrootorg.account-key"),
                },
            ],
            &admin(),
        )
        .await
        .unwrap();
}

pub async fn create_model(store: &Store, name: &str, api_key: &str) -> i64 {
    store
        .create_model(
            &NewModel {
                brand_id: BRAND.into(),
                name: name.into(),
                api_key: api_key.into(),
                rate_limit_per_sec: None,
                rate_limit_burst: None,
                duplicate_policy: DuplicatePolicy::Refuse,
                serial_generation: SerialGeneration::Uuid,
                serial_prefix: String::new(),
            },
            &admin(),
        )
        .await
        .unwrap()
        .id
}

/// The trusted roots file: testrootorg's account and root account-key.
pub fn trust_file(dir: &Path) -> PathBuf {
    let path = dir.join("trusted.assertions");
    let mut b = fixture_str("snapd/testrootorg.account");
    b.push('\n');
    b.push_str(&fixture_str("snapd/testrootorg.account-key"));
    std::fs::write(&path, b).unwrap();
    path
}

/// A running device listener.
pub struct Server {
    pub addr: SocketAddr,
    pub store: Store,
    pub catalog: Arc<Catalog>,
    pub config: Config,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The configuration of a test server trusting the testrootorg root.
pub fn config(token: &Token) -> Config {
    Config {
        trusted_assertions: Some(trust_file(token.softhsm.dir.path())),
        hsm_sessions: 2,
        max_body_bytes: 64 * 1024,
        ..Config::default()
    }
}

/// Starts the device listener on 127.0.0.1 over `store` (already provisioned) and `backend`.
pub async fn start(config: Config, store: Store, backend: Arc<dyn SignBackend>) -> Server {
    let roots = serialmint::server::trusted_roots(&config).expect("trusted roots load");
    let catalog = Catalog::with_trust(store.clone(), roots);
    catalog.reload().await.expect("catalog loads");
    let api = serialmint::server::device_api(&config, &store, catalog.clone(), backend)
        .await
        .expect("device api builds");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(http::serve(
        listener,
        api,
        Limits::default(),
        std::future::pending::<()>(),
    ));
    Server {
        addr,
        store,
        catalog,
        config,
        task,
    }
}

/// A provisioned store on `pool`, a token, and a server on both.
pub async fn setup(pool: PgPool) -> (Token, Server) {
    let token = Token::new();
    let store = Store::from_pool(pool);
    provision(&store, &token.key_id).await;
    let backend = token.backend().await;
    let server = start(config(&token), store, backend).await;
    (token, server)
}

impl Server {
    pub async fn request_id_at(&self, path: &str) -> String {
        let a = request(self.addr, "POST", path, &[("api-key", API_KEY)], b"").await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(a.header("content-type"), Some("application/json"));
        a.json()["request-id"].as_str().unwrap().to_owned()
    }

    pub async fn request_id(&self) -> String {
        self.request_id_at("/v1/request-id").await
    }

    /// POSTs `body` to `path` with the API key, the assertion media type and, when
    /// `serial_stream`, `Snap-Device-Capabilities: serial-stream`.
    pub async fn post_serial_at(&self, path: &str, body: &[u8], serial_stream: bool) -> Answer {
        let mut headers = vec![
            ("api-key", API_KEY),
            ("content-type", "application/x.ubuntu.assertion"),
        ];
        if serial_stream {
            headers.push(("snap-device-capabilities", "serial-stream"));
        }
        request(self.addr, "POST", path, &headers, body).await
    }

    pub async fn post_serial(&self, body: &[u8]) -> Answer {
        self.post_serial_at("/v1/serial", body, true).await
    }

    /// How many serials the signing log holds.
    pub async fn logged(&self) -> i64 {
        self.store.issued_total().await.unwrap()
    }
}

/// A TCP proxy in front of Postgres that can be cut (every connection dropped, new ones
/// refused), as when the database goes away.
pub struct PgProxy {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl PgProxy {
    pub async fn start(target: SocketAddr) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, target)
    }

    /// A proxy again on the port of one that was cut (Postgres is back where it was).
    #[allow(dead_code)]
    pub async fn restart(cut: PgProxy, target: SocketAddr) -> PgProxy {
        let port = cut.port;
        drop(cut);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(listener) => return Self::serve(listener, target),
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("port {port} not free yet ({e})");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("port {port} stays taken: {e}"),
            }
        }
    }

    fn serve(listener: TcpListener, target: SocketAddr) -> PgProxy {
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        PgProxy { port, task }
    }

    /// Drops the listener and every proxied connection.
    pub fn cut(&self) {
        self.task.abort();
    }
}

/// A pool of the same database as `pool`, through `proxy`.
pub async fn pool_via(pool: &PgPool, proxy: &PgProxy) -> PgPool {
    let opts = (*pool.connect_options())
        .clone()
        .host("127.0.0.1")
        .port(proxy.port);
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect_with(opts)
        .await
        .unwrap()
}

/// Postgres' address as the pool connects to it.
pub fn pg_addr(pool: &PgPool) -> SocketAddr {
    let o = pool.connect_options();
    let host = match o.get_host() {
        "localhost" => "127.0.0.1",
        h => h,
    };
    format!("{host}:{}", o.get_port()).parse().unwrap()
}
