//! The serial route end to end, in process: [`DeviceApi::route`] over a real
//! [`Registration`] (request-ids, checks, policy, serial build, pre-hash, signer queue,
//! software verification, group commit), with the HSM replaced by an in-memory RSA key
//! ([`super::soft_rsa::SoftRsa`], snapd's test root key, the brand key of `testrootorg`), the
//! catalog by a fixed set of models and the signing log by an in-memory table with the store's
//! uniqueness rules.
//!
//! # Input
//!
//! Up to [`MAX_REQUESTS`] requests separated by [`SEPARATOR`] lines, each written like
//! HTTP/1.1 with bare `\n`: `METHOD PATH`, header lines `name: value`, an empty line, then the
//! body (the rest). Requests that do not parse as HTTP are skipped. The signing log starts
//! empty for every input, so later requests of one input see the serials of earlier ones
//! (replays, duplicates, re-issues) and every input runs the same way each time.
//!
//! Request-ids are checked against a fixed secret with a lifetime of a century, so the
//! committed seeds (`fuzz/seeds/serial_route/`, written by [`seeds`]) keep valid request-ids.
//!
//! Signatures stop almost every mutation of a signed assertion at the self-signature check.
//! A request carrying the harness-only header [`RESIGN`] has every assertion of its body
//! that names one of the harness's keys signed again with that key before it is sent, so
//! mutated serial-request and model headers (proposed serials, bodies, odd values) reach
//! the serial build, the signer and the log. The server ignores the header.
//!
//! # Invariants (a violation panics)
//!
//! - Every answer is 200 or an error (4xx/5xx). Every error is `Content-Type:
//!   application/json` exactly, a JSON object with a non-empty `message` and
//!   `error_list[0].code` / `.message` strings, as snapd shows it; every 503 has
//!   `Retry-After`.
//! - A 200 to a serial request is an assertion stream whose first assertion is a serial that
//!   verifies with the in-memory key and, through the trust database, with the model sent; its
//!   device key is the request's. With `Snap-Device-Capabilities: serial-stream` the signing
//!   key's account-key and account follow, otherwise nothing does.
//! - A serial that was not answered before in the same input is new: its brand, model and
//!   proposed serial are the request's, its request-id did not issue to another device key,
//!   and its serial number at its revision was given to no other device key. A serial answered
//!   again (a replay) is byte for byte the earlier one, and for the model (and proposed
//!   serial) asked for.
//! - A 200 request-id verifies; the held-assertion route answers the assertion asked for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RsaPublicKeyComponents};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use serialmint::assertion::{
    Assertion, AssertionType, HeaderValue as AHeaderValue, Headers, Model, RsaPublicKey, Serial,
    SerialRequest, assemble_encoded, build_content, decode_stream, encode_stream, signing_input,
};
use serialmint::device_api::DeviceApi;
use serialmint::domain::{Issuance, LoggedIssuance, RecordOutcome};
use serialmint::registration::catalog::ct_eq;
use serialmint::registration::log::BoxFuture;
use serialmint::registration::{
    ASSERTION_MEDIA_TYPE, AssertionKind, DeviceCatalog, DeviceModel, DuplicatePolicy, GroupCommit,
    KeyRefusal, LogError, Registration, RequestIds, SerialKey, SerialScheme, SigningLog,
    proposed_serial,
};
use serialmint::signer::{Signer, SignerConfig};
use serialmint::trust::TrustDb;
use time::OffsetDateTime;

use super::soft_rsa::{SoftRsa, sign_raw_pkcs1};

/// The harness-only request header that has the body's assertions signed again.
pub const RESIGN: &str = "x-fuzz-resign";
/// Between two requests of one input.
pub const SEPARATOR: &[u8] = b"\n%%%%\n";
/// Requests after this many in one input are ignored.
pub const MAX_REQUESTS: usize = 4;
/// The body cap of the harness (production's is configurable; a small one lets the fuzzer
/// reach the streaming 413 with inputs of a few kilobytes).
pub const MAX_BODY: usize = 16 * 1024;
/// The brand of every model.
pub const BRAND: &str = "testrootorg";
/// `created` of the seeds' signatures, and when their request-ids were issued.
pub const T2024: u32 = 1_704_164_645; // 2024-01-02T03:04:05Z

const SECRET: [u8; 32] = *b"serialmint fuzz request-id key!!";
const LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

const BRAND_KEY: &[u8] = include_bytes!("../../tests/fixtures/testroot.pk8");
const DEVICE_KEY: &[u8] = include_bytes!("../../tests/fixtures/teststore.pk8");
const OTHER_DEVICE_KEY: &[u8] = include_bytes!("../../tests/fixtures/developer1.pk8");
const ACCOUNT: &str = include_str!("../../tests/fixtures/snapd/testrootorg.account");
const ACCOUNT_KEY: &str = include_str!("../../tests/fixtures/snapd/testrootorg.account-key");
const OLD_SERIAL: &[u8] = include_bytes!("../../tests/fixtures/snapd/happy-serial-uc20.serial");

/// The catalog's models: name, API key, enabled, duplicates, generation. `pc-nopolicy` has
/// no serial policy and `pc-nokey` a key that is unavailable.
fn models() -> Vec<DeviceModel> {
    let m = |id, name: &str, key: &str, enabled, dup, generation| DeviceModel {
        id,
        brand_id: BRAND.into(),
        name: name.into(),
        api_key: key.into(),
        enabled,
        rate_limit: None,
        duplicate_policy: dup,
        serial_scheme: generation,
    };
    use DuplicatePolicy::*;
    use SerialScheme::*;
    vec![
        m(1, "pc", "pc-api-key", true, Refuse, Uuid),
        m(
            2,
            "pc-counter",
            "counter-api-key",
            true,
            Reissue,
            PrefixCounter("pc-".into()),
        ),
        m(
            3,
            "pc-proposed",
            "proposed-api-key",
            true,
            Refuse,
            RequireProposed,
        ),
        m(4, "pc-disabled", "disabled-api-key", false, Refuse, Uuid),
        m(5, "pc-nopolicy", "nopolicy-api-key", true, Refuse, Uuid),
        m(6, "pc-nokey", "nokey-api-key", true, Refuse, Uuid),
    ]
}

/// The public half of a PKCS#8 RSA key, in snapd's form.
pub fn public_key(pkcs8: &[u8]) -> RsaPublicKey {
    let pair = RsaKeyPair::from_pkcs8(pkcs8).expect("fixture key parses");
    let c: RsaPublicKeyComponents<Vec<u8>> = pair.public_key().into();
    RsaPublicKey::new(&c.n, &c.e)
}

fn trust() -> TrustDb {
    TrustDb::from_assertions(format!("{ACCOUNT}\n{ACCOUNT_KEY}").as_bytes())
        .expect("snapd's test root assertions form a trust database")
}

// --- catalog ------------------------------------------------------------------------------

struct MemoryCatalog {
    models: Vec<Arc<DeviceModel>>,
    key: Arc<SerialKey>,
    trust: Arc<TrustDb>,
}

impl DeviceCatalog for MemoryCatalog {
    fn api_key_known(&self, api_key: &str) -> bool {
        self.models
            .iter()
            .fold(false, |found, m| found | ct_eq(&m.api_key, api_key))
    }

    fn model(&self, brand_id: &str, name: &str) -> Option<Arc<DeviceModel>> {
        self.models
            .iter()
            .find(|m| m.brand_id == brand_id && m.name == name)
            .cloned()
    }

    fn serial_key(&self, model: &DeviceModel) -> Result<Arc<SerialKey>, KeyRefusal> {
        match model.name.as_str() {
            "pc-nopolicy" => Err(KeyRefusal::NotAllowed(format!(
                "model {:?} has no serial policy",
                model.name
            ))),
            "pc-nokey" => Err(KeyRefusal::Unavailable(format!(
                "signing key {} is not available",
                self.key.key_id
            ))),
            _ => Ok(self.key.clone()),
        }
    }

    fn key_chain(&self, key_id: &str) -> Vec<String> {
        if key_id == self.key.key_id {
            vec![ACCOUNT_KEY.to_owned(), ACCOUNT.to_owned()]
        } else {
            Vec::new()
        }
    }

    fn held_assertion(&self, kind: AssertionKind, primary_key: &str) -> Option<String> {
        match kind {
            AssertionKind::Account if primary_key == BRAND => Some(ACCOUNT.to_owned()),
            AssertionKind::AccountKey if primary_key == self.key.key_id => {
                Some(ACCOUNT_KEY.to_owned())
            }
            _ => None,
        }
    }

    fn trust(&self) -> Arc<TrustDb> {
        self.trust.clone()
    }
}

// --- signing log --------------------------------------------------------------------------

/// The signing log in memory, deciding replays and conflicts as the store's unique
/// constraints do (one issuance per request-id; one per brand, model, serial and revision).
#[derive(Default)]
struct MemoryLog {
    state: Mutex<LogState>,
}

#[derive(Default)]
struct LogState {
    rows: Vec<LoggedIssuance>,
    counters: HashMap<i64, i64>,
}

impl MemoryLog {
    fn clear(&self) {
        *self.state.lock().unwrap() = LogState::default();
    }
}

impl SigningLog for MemoryLog {
    fn record<'a>(
        &'a self,
        rows: &'a [Issuance],
    ) -> BoxFuture<'a, Result<Vec<RecordOutcome>, LogError>> {
        Box::pin(async move {
            let mut st = self.state.lock().unwrap();
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let same_device = |e: &LoggedIssuance| e.issuance.device_key_id == r.device_key_id;
                let outcome = if let Some(e) = st
                    .rows
                    .iter()
                    .find(|e| e.issuance.request_id == r.request_id)
                {
                    if same_device(e) {
                        RecordOutcome::Replay(e.clone())
                    } else {
                        RecordOutcome::RequestIdUsed(e.clone())
                    }
                } else if let Some(e) = st.rows.iter().find(|e| {
                    e.issuance.brand_id == r.brand_id
                        && e.issuance.model_name == r.model_name
                        && e.issuance.serial == r.serial
                        && e.issuance.revision == r.revision
                }) {
                    if same_device(e) {
                        RecordOutcome::Replay(e.clone())
                    } else {
                        RecordOutcome::SerialTaken(e.clone())
                    }
                } else {
                    let logged = LoggedIssuance {
                        id: st.rows.len() as i64 + 1,
                        issued_at: OffsetDateTime::UNIX_EPOCH,
                        issuance: r.clone(),
                    };
                    st.rows.push(logged.clone());
                    RecordOutcome::Inserted(logged)
                };
                out.push(outcome);
            }
            Ok(out)
        })
    }

    fn latest<'a>(
        &'a self,
        brand_id: &'a str,
        model: &'a str,
        serial: &'a str,
    ) -> BoxFuture<'a, Result<Option<LoggedIssuance>, LogError>> {
        Box::pin(async move {
            let st = self.state.lock().unwrap();
            Ok(st
                .rows
                .iter()
                .filter(|e| {
                    let i = &e.issuance;
                    i.brand_id == brand_id && i.model_name == model && i.serial == serial
                })
                .max_by_key(|e| e.issuance.revision)
                .cloned())
        })
    }

    fn next_counter(&self, model_id: i64) -> BoxFuture<'_, Result<i64, LogError>> {
        Box::pin(async move {
            let mut st = self.state.lock().unwrap();
            let n = st.counters.entry(model_id).or_insert(0);
            *n += 1;
            Ok(*n)
        })
    }
}

// --- input --------------------------------------------------------------------------------

/// One request of an input, kept to check the answer against.
#[derive(Clone, Debug)]
pub struct FuzzRequest {
    /// The method.
    pub method: Method,
    /// The request target.
    pub uri: Uri,
    /// The headers that parsed.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

fn split<'a>(data: &'a [u8], sep: &[u8]) -> (&'a [u8], Option<&'a [u8]>) {
    match data.windows(sep.len()).position(|w| w == sep) {
        Some(i) => (&data[..i], Some(&data[i + sep.len()..])),
        None => (data, None),
    }
}

/// The requests of an input (at most [`MAX_REQUESTS`]; those that do not parse left out).
pub fn parse_input(data: &[u8]) -> Vec<FuzzRequest> {
    let mut out = Vec::new();
    let mut rest = Some(data);
    for _ in 0..MAX_REQUESTS {
        let Some(d) = rest else { break };
        let (one, next) = split(d, SEPARATOR);
        rest = next;
        out.extend(parse_request(one));
    }
    out
}

fn parse_request(raw: &[u8]) -> Option<FuzzRequest> {
    let (head, body) = split(raw, b"\n\n");
    let mut lines = head.split(|&b| b == b'\n');
    let first = lines.next()?;
    let (method, target) = split(first, b" ");
    let method = Method::from_bytes(method).ok()?;
    let uri = Uri::try_from(target?).ok()?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = split(line, b":");
        let (Ok(name), Some(Ok(value))) = (
            HeaderName::from_bytes(name.trim_ascii()),
            value.map(|v| HeaderValue::from_bytes(v.trim_ascii())),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    Some(FuzzRequest {
        method,
        uri,
        headers,
        body: Bytes::copy_from_slice(body.unwrap_or_default()),
    })
}

/// Writes a request in the input format.
pub fn format_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path}\n").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\n").as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// Joins requests into one input.
pub fn join_requests(requests: &[Vec<u8>]) -> Vec<u8> {
    requests.join(SEPARATOR)
}

// --- the harness --------------------------------------------------------------------------

/// What one request got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The request path.
    pub path: String,
    /// The status.
    pub status: u16,
    /// `error_list[0].code` of an error.
    pub code: Option<String>,
}

/// What earlier 200s of the same input gave out.
#[derive(Default)]
struct Issued {
    texts: Vec<String>,
    /// request-id -> device key id.
    by_request_id: HashMap<String, String>,
    /// (model, serial, revision) -> device key id.
    by_serial: HashMap<(String, String, u32), String>,
}

/// The device routes over in-memory parts, and the checks on their answers.
pub struct SerialRoute {
    rt: tokio::runtime::Runtime,
    /// The harness's private keys by snapd key id: the brand's and the two devices'.
    keys: Vec<(String, &'static [u8])>,
    api: DeviceApi,
    log: Arc<MemoryLog>,
    request_ids: Arc<RequestIds>,
    trust: Arc<TrustDb>,
    brand_key: RsaPublicKey,
}

impl SerialRoute {
    /// The harness, built once per process.
    pub fn shared() -> &'static SerialRoute {
        static SHARED: OnceLock<SerialRoute> = OnceLock::new();
        SHARED.get_or_init(SerialRoute::new)
    }

    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let brand_key = public_key(BRAND_KEY);
        let key_id = brand_key.key_id();
        let trust = Arc::new(trust());
        let log = Arc::new(MemoryLog::default());
        let request_ids = Arc::new(RequestIds::new(&SECRET, LIFETIME));
        let catalog = Arc::new(MemoryCatalog {
            models: models().into_iter().map(Arc::new).collect(),
            key: Arc::new(SerialKey {
                key_id: key_id.clone(),
                authority_id: BRAND.into(),
                public: brand_key.clone(),
                constraints: None,
            }),
            trust: trust.clone(),
        });
        let api = rt.block_on(async {
            let signer = Signer::start(
                Arc::new(SoftRsa::new(key_id, BRAND_KEY.to_vec())),
                SignerConfig {
                    workers: 1,
                    batch_max: 8,
                    queue_max: 64,
                    deadline: Duration::from_secs(60),
                    max_wait: serialmint::config::MaxWait::Off,
                    initial_service_time: Duration::from_millis(5),
                },
            );
            let group = GroupCommit::start(log.clone(), 16, Duration::from_secs(60));
            let reg = Registration::new(request_ids.clone(), catalog, signer, group, "fuzz");
            DeviceApi::new(Arc::new(reg), MAX_BODY)
        });
        let keys = [BRAND_KEY, DEVICE_KEY, OTHER_DEVICE_KEY]
            .into_iter()
            .map(|k| (public_key(k).key_id(), k))
            .collect();
        Self {
            rt,
            keys,
            api,
            log,
            request_ids,
            trust,
            brand_key,
        }
    }

    /// A request-id valid for a century, as the seeds carry.
    pub fn seed_request_id(&self) -> String {
        self.request_ids
            .issue_at(UNIX_EPOCH + Duration::from_secs(T2024.into()))
    }

    /// Runs every request of `data` against an empty signing log, checking each answer.
    pub fn run(&self, data: &[u8]) -> Vec<Outcome> {
        self.log.clear();
        let mut issued = Issued::default();
        let mut outcomes = Vec::new();
        for mut req in parse_input(data) {
            if req.headers.contains_key(RESIGN) {
                req.body = self.resign(&req.body);
            }
            let mut r = Request::new(Full::new(req.body.clone()));
            *r.method_mut() = req.method.clone();
            *r.uri_mut() = req.uri.clone();
            *r.headers_mut() = req.headers.clone();
            let (status, headers, body) = self.rt.block_on(async {
                let resp = self.api.route(r).await;
                let (parts, body) = resp.into_parts();
                let body = body.collect().await.expect("Full never fails").to_bytes();
                (parts.status.as_u16(), parts.headers, body)
            });
            outcomes.push(self.check(&req, status, &headers, &body, &mut issued));
        }
        outcomes
    }

    /// `body` with every assertion signed by one of the harness's keys signed again over its
    /// content as it stands; unchanged when it does not decode.
    fn resign(&self, body: &Bytes) -> Bytes {
        let Ok(all) = decode_stream(body) else {
            return body.clone();
        };
        let parts = all.iter().map(|a| {
            match self
                .keys
                .iter()
                .find(|(id, _)| id.as_str() == a.sign_key_id())
            {
                Some((_, key)) => sign(key, a.content()),
                None => a.encode(),
            }
        });
        Bytes::from(encode_stream(parts))
    }

    fn check(
        &self,
        req: &FuzzRequest,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
        issued: &mut Issued,
    ) -> Outcome {
        let path = req.uri.path().to_owned();
        let content_type = headers.get(CONTENT_TYPE).map(|v| v.as_bytes());
        if status != 200 {
            assert!(status >= 400, "{path}: status {status}");
            let code = check_error(status, content_type, headers, body);
            return Outcome {
                path,
                status,
                code: Some(code),
            };
        }
        match path.as_str() {
            "/v1/serial" | "/api/v1/snaps/auth/devices" => {
                assert_eq!(content_type, Some(ASSERTION_MEDIA_TYPE.as_bytes()));
                self.check_serial(req, body, issued);
            }
            "/v1/request-id" | "/api/v1/snaps/auth/request-id" => {
                assert_eq!(content_type, Some(&b"application/json"[..]));
                let j: serde_json::Value = serde_json::from_slice(body).expect("JSON request-id");
                let id = j["request-id"].as_str().expect("a request-id string");
                self.request_ids
                    .verify(id)
                    .expect("an issued request-id verifies");
            }
            "/v1/version" => {
                assert_eq!(content_type, Some(&b"application/json"[..]));
                let j: serde_json::Value = serde_json::from_slice(body).expect("JSON version");
                assert_eq!(j["name"], "serialmint");
            }
            p if p.starts_with("/v2/assertions/") => {
                assert_eq!(content_type, Some(ASSERTION_MEDIA_TYPE.as_bytes()));
                let all = decode_stream(body).expect("held assertions decode");
                let [a] = &all[..] else {
                    panic!("{p}: {} assertions", all.len())
                };
                let rest = &p["/v2/assertions/".len()..];
                let (kind, pk) = rest.split_once('/').expect("type/primary-key");
                match kind {
                    "account" => {
                        assert_eq!(a.kind(), AssertionType::Account);
                        assert_eq!(a.header_str("account-id"), Some(pk));
                    }
                    "account-key" => {
                        assert_eq!(a.kind(), AssertionType::AccountKey);
                        assert_eq!(a.header_str("public-key-sha3-384"), Some(pk));
                    }
                    _ => panic!("200 for {p}"),
                }
            }
            _ => panic!("200 for {path}"),
        }
        Outcome {
            path,
            status,
            code: None,
        }
    }

    fn check_serial(&self, req: &FuzzRequest, body: &[u8], issued: &mut Issued) {
        let sent = decode_stream(&req.body).expect("a stream that issued decodes");
        let request =
            SerialRequest::try_from(sent[0].clone()).expect("the stream opens with a request");
        let model = Model::try_from(sent[1].clone()).expect("the model follows");

        let answer = decode_stream(body).expect("the answer decodes");
        let serial = Serial::try_from(answer[0].clone()).expect("the answer opens with a serial");
        serial
            .verify_with(&self.brand_key)
            .expect("the serial verifies with the in-memory key");
        assert_eq!(serial.sign_key_id(), self.brand_key.key_id());
        assert_eq!(serial.authority_id(), Some(BRAND));
        self.trust
            .check_serial_with_model(&serial, &model, OffsetDateTime::now_utc())
            .expect("the serial verifies through the trust database with the model sent");
        assert_eq!(
            serial.device_key(),
            request.device_key(),
            "a serial for another device key"
        );
        let kinds: Vec<AssertionType> = answer.iter().map(Assertion::kind).collect();
        if wants_stream(&req.headers) {
            assert_eq!(
                kinds,
                [
                    AssertionType::Serial,
                    AssertionType::AccountKey,
                    AssertionType::Account
                ]
            );
        } else {
            assert_eq!(kinds, [AssertionType::Serial]);
        }

        // New or a replay: exactly what was asked for (a replay answering another model or
        // another proposed serial is a wrong serial).
        assert_eq!(serial.brand_id(), request.brand_id());
        assert_eq!(serial.model(), request.model());
        if let Some(p) = proposed_serial(&request) {
            assert_eq!(serial.serial(), p, "the proposed serial");
        }
        let text = String::from_utf8(serial.encode()).expect("UTF-8 serial");
        let device = request.device_key().key_id();
        if issued.texts.contains(&text) {
            return; // a replay, byte for byte
        }
        if let Some(other) = issued.by_request_id.get(request.request_id()) {
            panic!("request-id issued a second serial (first to {other}, now to {device})");
        }
        if request.model() == "pc-counter" && proposed_serial(&request).is_none() {
            let n = serial
                .serial()
                .strip_prefix("pc-")
                .expect("the counter prefix");
            assert!(
                n.parse::<u64>().is_ok(),
                "counter serial {:?}",
                serial.serial()
            );
        }
        let key = (
            serial.model().to_owned(),
            serial.serial().to_owned(),
            serial.revision(),
        );
        if let Some(other) = issued.by_serial.get(&key) {
            assert_eq!(
                other, &device,
                "one serial and revision for two device keys"
            );
        }
        issued
            .by_request_id
            .insert(request.request_id().to_owned(), device.clone());
        issued.by_serial.insert(key, device);
        issued.texts.push(text);
    }
}

/// The error shape snapd shows; returns the code.
fn check_error(
    status: u16,
    content_type: Option<&[u8]>,
    headers: &HeaderMap,
    body: &[u8],
) -> String {
    assert_eq!(
        content_type,
        Some(&b"application/json"[..]),
        "error {status} with another Content-Type"
    );
    let j: serde_json::Value = serde_json::from_slice(body).expect("an error body is JSON");
    assert!(
        j["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{status}: {j}"
    );
    let code = j["error_list"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{status}: no error code: {j}"));
    assert!(!code.is_empty(), "{status}: {j}");
    assert!(j["error_list"][0]["message"].is_string(), "{status}: {j}");
    if status == 503 {
        assert!(
            headers.contains_key("retry-after"),
            "503 without Retry-After"
        );
    }
    if status == 405 {
        assert!(headers.contains_key("allow"), "405 without Allow");
    }
    code.to_owned()
}

/// `Snap-Device-Capabilities: serial-stream`, read as snapd sends it.
fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all("snap-device-capabilities")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([' ', ',']))
        .any(|c| c.trim() == "serial-stream")
}

// --- seeds --------------------------------------------------------------------------------

/// Signs `content` with the PKCS#8 key, as snapd and the HSM path do.
fn sign(pkcs8: &[u8], content: &[u8]) -> Vec<u8> {
    let input = signing_input(content, T2024);
    let sig = sign_raw_pkcs1(pkcs8, input.digest_info()).expect("fixture key signs");
    assemble_encoded(content, &input.encode_signature(&sig))
}

/// A serial-request of `device` for `model`, self-signed.
fn serial_request(device: &[u8], model: &str, request_id: &str, serial: Option<&str>) -> Vec<u8> {
    let public = public_key(device);
    let mut h = Headers::new();
    h.insert("brand-id".into(), BRAND.into());
    h.insert("model".into(), model.into());
    h.insert("request-id".into(), request_id.into());
    if let Some(s) = serial {
        h.insert("serial".into(), s.into());
    }
    h.insert("device-key".into(), AHeaderValue::String(public.encode()));
    let body = if serial.is_none() && model == "pc-proposed" {
        "serial: from-the-body-0001"
    } else {
        ""
    };
    let content = build_content(AssertionType::SerialRequest, &h, body, &public.key_id())
        .expect("a valid serial-request");
    sign(device, &content)
}

/// The model assertion of `model`, signed by the brand.
fn model_assertion(model: &str) -> Vec<u8> {
    let mut h = Headers::new();
    h.insert("authority-id".into(), BRAND.into());
    h.insert("series".into(), "16".into());
    h.insert("brand-id".into(), BRAND.into());
    h.insert("model".into(), model.into());
    h.insert("architecture".into(), "amd64".into());
    h.insert("gadget".into(), "pc".into());
    h.insert("kernel".into(), "pc-kernel".into());
    h.insert("timestamp".into(), "2024-01-02T03:04:05Z".into());
    let content = build_content(
        AssertionType::Model,
        &h,
        "",
        &public_key(BRAND_KEY).key_id(),
    )
    .expect("a valid model");
    sign(BRAND_KEY, &content)
}

/// The seed corpus of `serial_route`: valid requests for every model and route, with replays,
/// conflicts and re-issues, as (file name, input).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let h = SerialRoute::shared();
    let ct = ("content-type", ASSERTION_MEDIA_TYPE);
    let stream_cap = ("snap-device-capabilities", "serial-stream");
    let serial_post = |api: &str, extra: &[(&str, &str)], body: &[u8]| {
        let mut headers = vec![("api-key", api), ct];
        headers.extend_from_slice(extra);
        format_request("POST", "/v1/serial", &headers, body)
    };
    let body = |device: &[u8], model: &str, rid: &str, serial: Option<&str>| {
        encode_stream([
            serial_request(device, model, rid, serial),
            model_assertion(model),
        ])
    };
    let (r1, r2, r3) = (
        h.seed_request_id(),
        h.seed_request_id(),
        h.seed_request_id(),
    );
    let pc = body(DEVICE_KEY, "pc", &r1, None);
    let other_same_rid = body(OTHER_DEVICE_KEY, "pc", &r1, None);
    let counter = body(DEVICE_KEY, "pc-counter", &r1, None);
    let reissue_a = body(DEVICE_KEY, "pc-counter", &r2, Some("fixed-serial-7"));
    let reissue_b = body(OTHER_DEVICE_KEY, "pc-counter", &r3, Some("fixed-serial-7"));
    let taken = body(OTHER_DEVICE_KEY, "pc", &r3, Some("fixed-serial-7"));
    let proposed = body(DEVICE_KEY, "pc", &r2, Some("fixed-serial-7"));
    let proposed_body = body(DEVICE_KEY, "pc-proposed", &r2, None);
    let same_rid_other_model = body(DEVICE_KEY, "pc-counter", &r1, None);
    let same_rid_other_serial = body(DEVICE_KEY, "pc", &r1, Some("not-the-first-serial"));
    let remodel = encode_stream([
        serial_request(DEVICE_KEY, "pc", &r1, None),
        model_assertion("pc"),
        OLD_SERIAL.to_vec(),
    ]);
    vec![
        ("pc_new", serial_post("pc-api-key", &[], &pc)),
        (
            "pc_stream_replay_conflict",
            join_requests(&[
                serial_post("pc-api-key", &[stream_cap], &pc),
                serial_post("pc-api-key", &[stream_cap], &pc),
                serial_post("pc-api-key", &[], &other_same_rid),
            ]),
        ),
        (
            "pc_request_id_reused_elsewhere",
            join_requests(&[
                serial_post("pc-api-key", &[], &pc),
                serial_post("counter-api-key", &[], &same_rid_other_model),
                serial_post("pc-api-key", &[], &same_rid_other_serial),
                serial_post("pc-api-key", &[], &pc),
            ]),
        ),
        (
            "pc_proposed_taken",
            join_requests(&[
                serial_post("pc-api-key", &[], &proposed),
                serial_post("pc-api-key", &[], &taken),
            ]),
        ),
        (
            "counter_and_reissue",
            join_requests(&[
                serial_post("counter-api-key", &[], &counter),
                serial_post("counter-api-key", &[], &reissue_a),
                serial_post("counter-api-key", &[stream_cap], &reissue_b),
            ]),
        ),
        (
            "proposed_in_body",
            format_request(
                "POST",
                "/api/v1/snaps/auth/devices",
                &[("api-key", "proposed-api-key"), ct],
                &proposed_body,
            ),
        ),
        ("remodel", serial_post("pc-api-key", &[], &remodel)),
        (
            "resigned",
            join_requests(&[
                serial_post("pc-api-key", &[(RESIGN, "1")], &pc),
                serial_post(
                    "proposed-api-key",
                    &[(RESIGN, "1"), stream_cap],
                    &proposed_body,
                ),
            ]),
        ),
        (
            "refusals",
            join_requests(&[
                serial_post(
                    "disabled-api-key",
                    &[],
                    &body(DEVICE_KEY, "pc-disabled", &r1, None),
                ),
                serial_post(
                    "nopolicy-api-key",
                    &[],
                    &body(DEVICE_KEY, "pc-nopolicy", &r1, None),
                ),
                serial_post(
                    "nokey-api-key",
                    &[],
                    &body(DEVICE_KEY, "pc-nokey", &r1, None),
                ),
                serial_post("pc-api-key", &[("content-length", "999999")], &pc),
            ]),
        ),
        (
            "other_routes",
            join_requests(&[
                format_request("POST", "/v1/request-id", &[("api-key", "pc-api-key")], b""),
                format_request("GET", "/v2/assertions/account/testrootorg", &[], b""),
                format_request(
                    "GET",
                    &format!(
                        "/v2/assertions/account-key/{}",
                        public_key(BRAND_KEY).key_id()
                    ),
                    &[],
                    b"",
                ),
                format_request("GET", "/v1/version", &[], b""),
            ]),
        ),
    ]
}
