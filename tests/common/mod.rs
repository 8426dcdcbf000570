//! Helpers shared by the integration tests: free ports, waiting for a listener, tiny HTTP
//! requests, snapd's public test keys (PKCS#8 fixtures) and software signing. The real SoftHSM token and Postgres come from the environment that
//! `scripts/test` sources (`.serialmint/env`).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port")
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A blocking HTTP/1.1 GET; returns the status code and the body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

// --- snapd test keys and software signing ---------------------------------------------

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair};
use serialmint::assertion::openpgp::{hash_suffix, signing_input};
use serialmint::assertion::{RsaPublicKey, assemble_encoded, verify_digest_info};
use serialmint::trust::TrustDb;
use time::OffsetDateTime;

pub const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{FIX}/{path}")).unwrap()
}

pub fn fixture_str(path: &str) -> String {
    String::from_utf8(fixture(path)).unwrap()
}

pub struct TestKey {
    pub pair: RsaKeyPair,
    pub public: RsaPublicKey,
}

impl TestKey {
    pub fn load(name: &str) -> Self {
        Self::from_pkcs8(&fixture(name))
    }

    pub fn from_pkcs8(der: &[u8]) -> Self {
        let pair = RsaKeyPair::from_pkcs8(der).unwrap();
        let c: signature::RsaPublicKeyComponents<Vec<u8>> = pair.public_key().into();
        Self {
            public: RsaPublicKey::new(&c.n, &c.e),
            pair,
        }
    }

    pub fn root() -> Self {
        Self::load("testroot.pk8")
    }

    pub fn store() -> Self {
        Self::load("teststore.pk8")
    }

    /// Raw PKCS#1 v1.5 signature over `msg` hashed with `alg`.
    pub fn raw_sign(&self, alg: &'static dyn signature::RsaEncoding, msg: &[u8]) -> Vec<u8> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(alg, &SystemRandom::new(), msg, &mut sig)
            .unwrap();
        sig
    }

    /// Signs `content` exactly as snapd (and our HSM path) does; returns the encoded text.
    pub fn sign(&self, content: &[u8], created: u32) -> Vec<u8> {
        let input = signing_input(content, created);
        let mut msg = content.to_vec();
        msg.extend_from_slice(&hash_suffix(created));
        let sig = self.raw_sign(&signature::RSA_PKCS1_SHA512, &msg);
        verify_digest_info(&self.public, input.digest_info(), &sig).unwrap();
        assemble_encoded(content, &input.encode_signature(&sig))
    }
}

pub fn ts(s: &str) -> OffsetDateTime {
    serialmint::assertion::time::parse_rfc3339(s).unwrap()
}

pub const T2024: u32 = 1_704_164_645; // 2024-01-02T03:04:05Z

/// snapd's `systestkeys.Trusted`: testrootorg account and root account-key.
pub fn test_trust() -> TrustDb {
    let mut b = fixture("snapd/testrootorg.account");
    b.extend_from_slice(b"\n");
    b.extend_from_slice(&fixture("snapd/testrootorg.account-key"));
    TrustDb::from_assertions(&b).unwrap()
}

fn now_rfc3339() -> String {
    serialmint::assertion::time::format_utc(OffsetDateTime::now_utc())
}

/// An `account` for `account_id`, signed by `signer` as the test root `testrootorg` (as the
/// store answers a brand).
pub fn account_assertion(signer: &TestKey, account_id: &str) -> String {
    use serialmint::assertion::{AssertionType, Headers, build_content};
    let root_id = TestKey::root().public.key_id();
    let created = OffsetDateTime::now_utc().unix_timestamp() as u32;
    let mut h = Headers::new();
    h.insert("authority-id".into(), "testrootorg".into());
    h.insert("account-id".into(), account_id.into());
    h.insert("display-name".into(), "Acme Devices".into());
    h.insert("validation".into(), "verified".into());
    h.insert("timestamp".into(), now_rfc3339().into());
    let text = signer.sign(
        &build_content(AssertionType::Account, &h, "", &root_id).unwrap(),
        created,
    );
    String::from_utf8(text).unwrap()
}

/// The `account-key` of `account_id` for the key in `request`, signed by `signer` as the test
/// root `testrootorg` (as the store answers an `account-key-request`).
pub fn account_key_assertion(
    signer: &TestKey,
    account_id: &str,
    request: &serialmint::assertion::AccountKeyRequest,
) -> String {
    use serialmint::assertion::{AssertionType, Headers, build_content};
    let root_id = TestKey::root().public.key_id();
    let created = OffsetDateTime::now_utc().unix_timestamp() as u32;
    let mut h = Headers::new();
    h.insert("authority-id".into(), "testrootorg".into());
    h.insert("account-id".into(), account_id.into());
    h.insert("name".into(), request.name().unwrap().into());
    h.insert("public-key-sha3-384".into(), request.public_key_id().into());
    h.insert("since".into(), now_rfc3339().into());
    let text = signer.sign(
        &build_content(
            AssertionType::AccountKey,
            &h,
            &request.public_key().encode(),
            &root_id,
        )
        .unwrap(),
        created,
    );
    String::from_utf8(text).unwrap()
}
