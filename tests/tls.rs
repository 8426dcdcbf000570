//! TLS on both listeners of the real `serialmint serve`, with a CA and certificates made in
//! the test (rcgen): the device listener answers `/v1/version` over https; a SIGHUP swaps its
//! certificate (a new connection sees the new one while a connection opened before keeps
//! working, and a broken certificate file keeps the old one); the CLI lists keys over https
//! trusting a private CA through `SERIALMINT_ADMIN_CA` (and fails without it); with
//! `admin.tls_client_ca` a client without a certificate, or with one from another CA, is
//! refused and one with a certificate from the client CA gets through; a SIGHUP after the
//! client CA file changed makes new connections need the new CA's certificates.
//!
//! Run with `cargo nextest run` (one process per test: SoftHSM is process-wide).

mod common;
#[path = "common/serve.rs"]
mod serve;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use serve::Serve;
use softhsm::SoftHsm;

const LABEL: &str = "tls-test";
const PIN: &str = "Pin-tls-4Rt8";

/// A test CA.
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// Writes the CA certificate to `dir/name`.
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.0.pem()).unwrap();
        path
    }

    /// A leaf for `localhost` and 127.0.0.1 (server) or a client certificate, written to
    /// `dir/name.pem` and `dir/name.key` (0600); its DER, to recognise it.
    fn leaf(&self, dir: &Path, name: &str, client: bool) -> (PathBuf, PathBuf, Vec<u8>) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        write_leaf(&cert_path, &key_path, &cert.pem(), &key.serialize_pem());
        (cert_path, key_path, cert.der().to_vec())
    }
}

fn write_leaf(cert_path: &Path, key_path: &Path, cert: &str, key: &str) {
    std::fs::write(cert_path, cert).unwrap();
    std::fs::write(key_path, key).unwrap();
    std::fs::set_permissions(key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A TLS connection to 127.0.0.1:`port` as `localhost`, trusting `ca`.
async fn connect(
    port: u16,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let config = serialmint::tls::client_config(Some(ca), client).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
}

/// The DER of the certificate the server presented.
fn server_cert(s: &TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// One keep-alive GET on `s`: the status and the body.
async fn get(s: &mut TlsStream<TcpStream>, path: &str) -> (u16, String) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    let head_end = loop {
        let mut byte = [0u8; 1];
        let n = s.read(&mut byte).await.unwrap();
        assert_eq!(
            n,
            1,
            "connection closed mid-answer: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.push(byte[0]);
        if raw.ends_with(b"\r\n\r\n") {
            break raw.len();
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (status, String::from_utf8(body).unwrap())
}

/// Whether a new connection presenting `client` gets `/healthz` 200 (a refused client
/// certificate fails the handshake or, under TLS 1.3, the first read).
async fn healthz_over_mtls(port: u16, ca: &Path, client: (&Path, &Path)) -> bool {
    let Ok(mut s) = connect(port, ca, Some(client)).await else {
        return false;
    };
    let ask = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if s.write_all(ask).await.is_err() {
        return false;
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    raw.starts_with(b"HTTP/1.1 200")
}

fn sighup(s: &Serve) {
    assert!(
        Command::new("kill")
            .args(["-HUP", &s.pid().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[sqlx::test]
async fn device_listener_serves_https_and_swaps_its_certificate_on_sighup(pool: PgPool) {
    let hsm = SoftHsm::new();
    hsm.init_token(LABEL, PIN);
    let dir = hsm.dir.path();
    let ca = Ca::new("serialmint test CA");
    let ca_file = ca.write(dir, "ca.pem");
    let (cert, key, first) = ca.leaf(dir, "device-1", false);
    let mut env = serve::env(&pool, &hsm, LABEL, PIN, None, "info");
    serve::set(
        &mut env,
        "SERIALMINT_DEVICE_TLS_CERT",
        cert.to_str().unwrap(),
    );
    serve::set(&mut env, "SERIALMINT_DEVICE_TLS_KEY", key.to_str().unwrap());
    let mut s = Serve::start(env);
    let port = s.device.port();

    let mut old = connect(port, &ca_file, None)
        .await
        .expect("TLS to the device listener");
    assert_eq!(server_cert(&old), first);
    let (status, body) = get(&mut old, "/v1/version").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"serialmint\""), "{body}");
    // A client that does not trust the CA is refused.
    let other = Ca::new("another CA");
    let other_file = other.write(dir, "other-ca.pem");
    assert!(connect(port, &other_file, None).await.is_err());

    // New files, SIGHUP: a new connection gets the new certificate; the old one goes on.
    let (new_cert, new_key, second) = ca.leaf(dir, "device-2", false);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    sighup(&s);
    assert!(
        s.wait_for_log("TLS certificate reloaded", 1, Duration::from_secs(30))
            .await,
        "{}",
        s.logs()
    );
    let mut fresh = connect(port, &ca_file, None).await.unwrap();
    assert_eq!(
        server_cert(&fresh),
        second,
        "the new connection sees the new certificate"
    );
    assert_eq!(get(&mut fresh, "/v1/version").await.0, 200);
    assert_eq!(server_cert(&old), first);
    let (status, _) = get(&mut old, "/v1/version").await;
    assert_eq!(
        status, 200,
        "the connection opened before the reload keeps working"
    );

    // A broken key file: the reload fails, says so, and the certificate served stays.
    std::fs::write(&key, "not a key").unwrap();
    sighup(&s);
    assert!(
        s.wait_for_log("TLS certificate not reloaded", 1, Duration::from_secs(30))
            .await,
        "{}",
        s.logs()
    );
    let mut after = connect(port, &ca_file, None).await.unwrap();
    assert_eq!(server_cert(&after), second);
    assert_eq!(get(&mut after, "/v1/version").await.0, 200);

    s.sigterm();
    let status = s.wait_exit(Duration::from_secs(60)).expect("serve exits");
    assert!(status.success(), "{status}\n{}", s.logs());

    // At start, a key that is not the certificate's is refused, naming both files.
    let (_, other_key, _) = ca.leaf(dir, "device-3", false);
    let out = Command::new(env!("CARGO_BIN_EXE_serialmint"))
        .arg("serve")
        .env_clear()
        .envs(s.env.iter().cloned())
        .env("SERIALMINT_DEVICE_TLS_CERT", &new_cert)
        .env("SERIALMINT_DEVICE_TLS_KEY", &other_key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("device TLS") && err.contains("device-3.key") && err.contains("device-2.pem"),
        "{err}"
    );
}

#[sqlx::test]
async fn the_cli_talks_https_to_the_admin_listener_and_mutual_tls_refuses_strangers(pool: PgPool) {
    let hsm = SoftHsm::new();
    hsm.init_token(LABEL, PIN);
    let dir = hsm.dir.path();
    let ca = Ca::new("serialmint admin CA");
    let ca_file = ca.write(dir, "admin-ca.pem");
    let (cert, key, _) = ca.leaf(dir, "admin", false);
    let mut env = serve::env(&pool, &hsm, LABEL, PIN, None, "info");
    serve::set(
        &mut env,
        "SERIALMINT_ADMIN_TLS_CERT",
        cert.to_str().unwrap(),
    );
    serve::set(&mut env, "SERIALMINT_ADMIN_TLS_KEY", key.to_str().unwrap());

    let mut s = Serve::start(env.clone());
    let init = s.json(None, &["init", "--brand-id", "tlsbrand", "--json"]);
    let token = init["admin-token"].as_str().unwrap().to_string();
    let t = Some(token.as_str());
    let https = format!("https://127.0.0.1:{}", s.admin.port());

    // Plain http to a TLS listener gets nowhere.
    assert!(!s.run(t, &["list", "keys"]).status.success());
    // https without the private CA: the system's roots do not know it.
    s.admin_url = https.clone();
    let out = s.run(t, &["list", "keys"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UnknownIssuer"), "{err}");
    // With SERIALMINT_ADMIN_CA: listed.
    s.env
        .push(("SERIALMINT_ADMIN_CA".into(), ca_file.display().to_string()));
    let keys = s.json(t, &["list", "keys", "--json"]);
    assert!(keys.is_array(), "{keys}");
    s.sigterm();
    assert!(s.wait_exit(Duration::from_secs(60)).is_some());

    // Mutual TLS: clients need a certificate from the client CA.
    let clients = Ca::new("serialmint client CA");
    let clients_file = clients.write(dir, "client-ca.pem");
    let (client_cert, client_key, _) = clients.leaf(dir, "operator", true);
    let (stranger_cert, stranger_key, _) = ca.leaf(dir, "stranger", true);
    serve::set(
        &mut env,
        "SERIALMINT_ADMIN_TLS_CLIENT_CA",
        clients_file.to_str().unwrap(),
    );
    let mut s = Serve::start_on(env, s.device.port(), s.admin.port());
    s.admin_url = https;
    s.env
        .push(("SERIALMINT_ADMIN_CA".into(), ca_file.display().to_string()));
    let out = s.run(t, &["list", "keys"]);
    assert!(!out.status.success(), "no client certificate: refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CertificateRequired"), "{err}");
    let stranger = [
        (
            "SERIALMINT_ADMIN_CLIENT_CERT",
            stranger_cert.display().to_string(),
        ),
        (
            "SERIALMINT_ADMIN_CLIENT_KEY",
            stranger_key.display().to_string(),
        ),
    ];
    let mut with = s.env.clone();
    with.extend(stranger.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let saved = std::mem::replace(&mut s.env, with);
    assert!(
        !s.run(t, &["list", "keys"]).status.success(),
        "a client certificate from another CA: refused"
    );
    s.env = saved;
    s.env.push((
        "SERIALMINT_ADMIN_CLIENT_CERT".into(),
        client_cert.display().to_string(),
    ));
    s.env.push((
        "SERIALMINT_ADMIN_CLIENT_KEY".into(),
        client_key.display().to_string(),
    ));
    let keys = s.json(t, &["list", "keys", "--json"]);
    assert!(keys.is_array(), "{keys}");
    // /readyz over mTLS too (the probe needs the client certificate like every route).
    let mut probe = connect(s.admin.port(), &ca_file, Some((&client_cert, &client_key)))
        .await
        .unwrap();
    assert_eq!(get(&mut probe, "/healthz").await.0, 200);

    // The client CA rotates: its file now names the other CA; a SIGHUP reads it again. New
    // connections need a certificate from the new CA; the connection opened before goes on.
    std::fs::write(&clients_file, ca.0.pem()).unwrap();
    sighup(&s);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !healthz_over_mtls(s.admin.port(), &ca_file, (&stranger_cert, &stranger_key)).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the new client CA was never taken"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !healthz_over_mtls(s.admin.port(), &ca_file, (&client_cert, &client_key)).await,
        "a certificate of the old client CA is refused after the reload"
    );
    assert_eq!(get(&mut probe, "/healthz").await.0, 200);
    s.sigterm();
    assert!(
        s.wait_exit(Duration::from_secs(60))
            .is_some_and(|st| st.success())
    );
}
