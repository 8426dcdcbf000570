//! snapd as the oracle: a serial issued by the real device plane (SoftHSM token holding
//! snapd's TestRootPrivKey as testrootorg's brand key, real Postgres) is fed, exactly as
//! served, to snapd 2.57's own Go code (`tests/snapd/accept_serial.go`): its assertion
//! decoder, `asserts.Batch` committed with `Precheck: true` to an `asserts.Database`
//! trusting `systestkeys.Trusted`, and devicestate's `getSerial` post-checks. A tampered
//! serial and a foreign device key must be refused by the same code, so the oracle can fail.
//!
//! Needs Go and snapd's Go source (golang-go, golang-github-snapcore-snapd-dev and its
//! dependencies), which `scripts/test` installs. Without them these tests fail, not skip.
//!
//! Run with `cargo nextest run --test snapd_accepts`.

#[path = "common/admin.rs"]
mod admin;
mod common;
#[path = "common/device.rs"]
mod device;
#[path = "common/keyfiles.rs"]
mod keyfiles;
#[path = "common/oracle.rs"]
mod oracle;
#[path = "common/remodel.rs"]
mod remodel;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::ffi::OsStr;
use std::path::Path;

use serialmint::assertion::{AssertionType, encode_stream};
use sqlx::PgPool;

use common::TestKey;
use device::*;
use oracle::Verdict;

/// Writes the answer and the model to `dir` and runs `accept_serial.go` on them.
fn snapd_verdict(dir: &Path, name: &str, answer: &[u8], model: &[u8], key_id: &str) -> Verdict {
    let answer_path = oracle::file(dir, &format!("{name}.answer"), answer);
    let model_path = oracle::file(dir, &format!("{name}.model"), model);
    let args = [
        answer_path.as_os_str(),
        model_path.as_os_str(),
        OsStr::new(key_id),
    ];
    oracle::run(dir, "accept_serial.go", &args, false)
}

/// A serial stream from the real device plane for a fresh RSA-4096 device key.
async fn issue(server: &Server, dev: &TestKey, serial: &str) -> Answer {
    let rid = server.request_id().await;
    let mut spec = ReqSpec::new(&rid);
    spec.serial = Some(serial);
    spec.body = "mac: 00:11:22:33:44:55";
    let a = server.post_serial(&body(&spec, dev)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.header("content-type"),
        Some("application/x.ubuntu.assertion")
    );
    let kinds: Vec<AssertionType> = a.assertions().iter().map(|x| x.kind()).collect();
    assert_eq!(
        kinds,
        [
            AssertionType::Serial,
            AssertionType::AccountKey,
            AssertionType::Account
        ]
    );
    a
}

#[sqlx::test]
async fn snapd_accepts_a_served_serial_stream(pool: PgPool) {
    let (_token, server) = setup(pool).await;
    let dev = device_key("snapd-oracle", 4096);
    let a = issue(&server, &dev, "pc-snapd-0001").await;
    let dir = tempfile::tempdir().unwrap();
    // The answer exactly as served, and the model exactly as the device sent it.
    let v = snapd_verdict(
        dir.path(),
        "served",
        &a.body,
        &model_assertion(MODEL),
        &dev.public.key_id(),
    );
    assert!(v.accepted, "snapd refused our serial: {}", v.out);
    assert_eq!(v.out, "snapd accepted serial pc-snapd-0001\n");
    println!("{}", v.out.trim_end());
}

#[sqlx::test]
async fn snapd_rejects_tampered_serials(pool: PgPool) {
    let (_token, server) = setup(pool).await;
    let dev = device_key("snapd-oracle", 4096);
    let a = issue(&server, &dev, "pc-snapd-0002").await;
    let model = model_assertion(MODEL);
    let key_id = dev.public.key_id();
    let dir = tempfile::tempdir().unwrap();
    let all = a.assertions();
    let (serial, chain) = (&all[0], &all[1..]);
    let restream = |serial: Vec<u8>| {
        encode_stream(std::iter::once(serial).chain(chain.iter().map(|x| x.encode())))
    };

    // Control: the served stream taken apart and put back together is still accepted.
    let v = snapd_verdict(
        dir.path(),
        "control",
        &restream(serial.encode()),
        &model,
        &key_id,
    );
    assert!(v.accepted, "{}", v.out);

    // One base64 character of the RSA signature changed (well inside the signature value,
    // away from the packet headers): snapd's signature check refuses it.
    let mut sig = serial.signature().to_vec();
    let mut i = sig.len() - 120;
    while !sig[i].is_ascii_alphanumeric() {
        i -= 1;
    }
    sig[i] = if sig[i] == b'A' { b'B' } else { b'A' };
    let mut tampered = serial.content().to_vec();
    tampered.extend_from_slice(b"\n\n");
    tampered.extend_from_slice(&sig);
    let v = snapd_verdict(dir.path(), "bad-sig", &restream(tampered), &model, &key_id);
    assert!(!v.accepted, "snapd accepted a flipped signature: {}", v.out);
    assert!(v.out.contains("failed signature verification"), "{}", v.out);
    println!("flipped signature byte: {}", v.out.trim_end());

    // A header changed under the brand's signature (another serial number).
    let content = String::from_utf8(serial.content().to_vec()).unwrap();
    let changed = content.replace("\nserial: pc-snapd-0002\n", "\nserial: pc-snapd-9999\n");
    assert_ne!(changed, content);
    let mut tampered = changed.into_bytes();
    tampered.extend_from_slice(b"\n\n");
    tampered.extend_from_slice(serial.signature());
    let v = snapd_verdict(
        dir.path(),
        "bad-header",
        &restream(tampered),
        &model,
        &key_id,
    );
    assert!(!v.accepted, "snapd accepted a changed header: {}", v.out);
    assert!(v.out.contains("failed signature verification"), "{}", v.out);
    println!("changed serial header: {}", v.out.trim_end());

    // A valid serial for another device key: getSerial's identity check refuses it.
    let other = device_key("b", 4096).public.key_id();
    assert_ne!(other, key_id);
    let v = snapd_verdict(dir.path(), "other-key", &a.body, &model, &other);
    assert!(
        !v.accepted,
        "snapd accepted another key's serial: {}",
        v.out
    );
    assert!(
        v.out
            .contains("does not match provided device identity information"),
        "{}",
        v.out
    );
}

/// The `account-key` of testrootorg for `public`, named `name`, signed by the test root (as
/// the store answers the key's `account-key-request`).
fn account_key_for(public: &serialmint::assertion::RsaPublicKey, name: &str) -> String {
    use serialmint::assertion::{Headers, build_content};
    let root = TestKey::root();
    let now = time::OffsetDateTime::now_utc();
    let mut h = Headers::new();
    h.insert("authority-id".into(), BRAND.into());
    h.insert("account-id".into(), BRAND.into());
    h.insert("name".into(), name.into());
    h.insert("public-key-sha3-384".into(), public.key_id().into());
    h.insert(
        "since".into(),
        serialmint::assertion::time::format_utc(now).into(),
    );
    let content = build_content(
        AssertionType::AccountKey,
        &h,
        &public.encode(),
        &root.public.key_id(),
    )
    .unwrap();
    String::from_utf8(root.sign(&content, now.unix_timestamp() as u32)).unwrap()
}

#[sqlx::test]
async fn snapd_accepts_a_serial_signed_by_an_imported_gpg_key(pool: PgPool) {
    use serialmint::store::NewAccountAssertion;

    let (token, server) = setup(pool).await;
    // The admin API over the same token, as `serve` runs it.
    let admin_api = admin::Admin::start(&server, &token).await;
    let store = server.store.clone();

    // A passwordless RSA-4096 key made by gpg, imported through POST /v1/keys/import.
    let armored = keyfiles::gpg_rsa4096();
    let public = serialmint::keyfile::parse(armored.as_bytes())
        .unwrap()
        .public;
    let key_id = public.key_id();
    assert_ne!(key_id, token.key_id);
    let a = admin_api
        .post(
            "/v1/keys/import",
            &serde_json::json!({"name": "gpg-serials", "private-key": armored}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(a.json()["sha3-384"], key_id.as_str());

    // The brand store's account-key for it, and a policy revision making it the model's key.
    store
        .put_account_assertions(
            &[NewAccountAssertion {
                kind: serialmint::store::AssertionKind::AccountKey,
                primary_key: key_id.clone(),
                account_id: BRAND.into(),
                revision: 0,
                text: account_key_for(&public, "gpg-serials"),
            }],
            &admin(),
        )
        .await
        .unwrap();
    store
        .create_serial_policy(BRAND, MODEL, "gpg-serials", &admin())
        .await
        .unwrap();
    server.catalog.reload().await.unwrap();

    let dev = device_key("snapd-oracle", 4096);
    let a = issue(&server, &dev, "pc-imported-0001").await;
    let all = a.assertions();
    assert_eq!(
        all[0].header_str("sign-key-sha3-384"),
        Some(key_id.as_str())
    );
    assert_eq!(
        all[1].header_str("public-key-sha3-384"),
        Some(key_id.as_str())
    );
    let dir = tempfile::tempdir().unwrap();
    let v = snapd_verdict(
        dir.path(),
        "imported",
        &a.body,
        &model_assertion(MODEL),
        &dev.public.key_id(),
    );
    assert!(
        v.accepted,
        "snapd refused the imported key's serial: {}",
        v.out
    );
    assert_eq!(v.out, "snapd accepted serial pc-imported-0001\n");
    println!("{}", v.out.trim_end());
}

/// The stream snapd 2.57 sends on a re-registration remodel, made by snapd's own asserts code
/// (`tests/snapd/rereg_request.go`) with the cached device key `key_name`.
fn snapd_rereg_request(
    dir: &Path,
    key_name: &str,
    request_id: &str,
    new_model: &[u8],
    current: &[u8],
    proposed: &str,
) -> Vec<u8> {
    let key =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("device-keys/{key_name}-4096.pk8"));
    let model_path = oracle::file(dir, "rereg.model", new_model);
    let serial_path = oracle::file(dir, "rereg.serial", current);
    let args = [
        key.as_os_str(),
        OsStr::new(request_id),
        model_path.as_os_str(),
        serial_path.as_os_str(),
        OsStr::new(proposed),
    ];
    let out = oracle::go_run(dir, "rereg_request.go", &args, false);
    assert!(
        out.status.success(),
        "rereg_request.go failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[sqlx::test]
async fn snapd_accepts_a_re_registered_serial(pool: PgPool) {
    use remodel::*;
    let (_token, server) = setup(pool).await;
    provision_model_b(&server).await;
    allow_remodel(&server, Some("pc-snapd-[0-9]+")).await;
    let dev = device_key("snapd-oracle", 4096);
    let dir = tempfile::tempdir().unwrap();

    // Registered as pc; snapd accepts that serial with its chain.
    let first = issue(&server, &dev, "pc-snapd-0003").await;
    let v = snapd_verdict(
        dir.path(),
        "first",
        &first.body,
        &model_assertion(MODEL),
        &dev.public.key_id(),
    );
    assert!(v.accepted, "{}", v.out);
    let current = first.assertions()[0].encode();

    // Remodel to pc-b: the request exactly as snapd makes it, with the original api-key.
    let rid = server.request_id().await;
    let model_b = model_assertion(MODEL_B);
    let body = snapd_rereg_request(
        dir.path(),
        "snapd-oracle",
        &rid,
        &model_b,
        &current,
        "pc-snapd-0003",
    );
    let kinds: Vec<AssertionType> = serialmint::assertion::decode_stream(&body)
        .unwrap()
        .iter()
        .map(|a| a.kind())
        .collect();
    assert_eq!(
        kinds,
        [
            AssertionType::SerialRequest,
            AssertionType::Model,
            AssertionType::Serial
        ]
    );
    let a = server.post_serial_with_key(&body, API_KEY).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = snapd_verdict(dir.path(), "rereg", &a.body, &model_b, &dev.public.key_id());
    assert!(
        v.accepted,
        "snapd refused the re-registered serial: {}",
        v.out
    );
    assert_eq!(v.out, "snapd accepted serial pc-snapd-0003\n");
    // For the new model, not the old one: snapd's identity check refuses it against pc.
    let v = snapd_verdict(
        dir.path(),
        "rereg-old-model",
        &a.body,
        &model_assertion(MODEL),
        &dev.public.key_id(),
    );
    assert!(!v.accepted, "{}", v.out);
    assert!(
        v.out
            .contains("does not match provided device identity information"),
        "{}",
        v.out
    );
    println!("re-registered: {}", v.out.trim_end());
}
