//! Test support for the HSM tests and the HSM bench: a throw-away SoftHSMv2 token directory
//! with its own `SOFTHSM2_CONF`, token initialisation, RSA private-key import (PKCS#8 or
//! PKCS#1, DER or PEM) with CKA_ID = the key's snapd id, a `p11-kit server` that can be killed
//! and restarted, and module discovery (`TEST_PKCS11_MODULE`, p11-kit-client via pkg-config or
//! the multiarch `pkcs11/` directory).
//!
//! SoftHSM reads `SOFTHSM2_CONF` once per process: run these tests with `cargo nextest run`
//! (one process per test), and create the [`SoftHsm`] before the first module load.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use serialmint::assertion::openpgp::RsaPublicKey;

/// The SoftHSMv2 module: `TEST_PKCS11_MODULE`, else Debian's path.
pub fn softhsm_module() -> PathBuf {
    std::env::var_os("TEST_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

/// p11-kit's client module, found through pkg-config (`p11_module_path`) or the usual
/// multiarch directories; `None` when p11-kit is not installed.
pub fn p11_kit_client_module() -> Option<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(out) = Command::new("pkg-config")
        .args(["--variable=p11_module_path", "p11-kit-1"])
        .output()
        && out.status.success()
    {
        let d = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !d.is_empty() {
            dirs.push(PathBuf::from(d));
        }
    }
    if let Ok(rd) = std::fs::read_dir("/usr/lib") {
        for e in rd.flatten() {
            dirs.push(e.path().join("pkcs11"));
        }
    }
    dirs.extend(["/usr/lib/pkcs11", "/usr/lib64/pkcs11"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("p11-kit-client.so"))
        .find(|p| p.is_file())
}

/// The latency-modelling module (`pkcs11-latency/`) built beside this test binary
/// (target/<profile>/), built now if it is not. It forwards to `PKCS11_LATENCY_BACKEND`.
pub fn latency_module() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let so = dir.join("libpkcs11_latency.so");
    if !so.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target = dir.parent().unwrap();
        let status = Command::new(cargo)
            .args(["build", "-p", "pkcs11-latency", "--target-dir"])
            .arg(target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building pkcs11-latency failed");
    }
    assert!(so.exists(), "{} is missing", so.display());
    so
}

/// A private SoftHSM token directory; `SOFTHSM2_CONF` points at its config.
pub struct SoftHsm {
    /// The temporary directory (tokens, config, sockets, key files).
    pub dir: tempfile::TempDir,
    /// The generated `softhsm2.conf`.
    pub conf: PathBuf,
}

impl SoftHsm {
    /// Makes the directory and config, and exports `SOFTHSM2_CONF` for this process.
    pub fn new() -> SoftHsm {
        let dir = tempfile::tempdir().expect("temp dir");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        // SAFETY: called at the start of a test, before any thread of this test reads the
        // environment (nextest runs one test per process; the runtime is built afterwards).
        unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
        SoftHsm { dir, conf }
    }

    /// A path inside the temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `softhsm2-util --init-token --free --label L --pin P --so-pin S`.
    pub fn init_token(&self, label: &str, pin: &str) {
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["--init-token", "--free", "--label", label, "--pin", pin])
            .args(["--so-pin", &format!("so-{pin}")])
            .output()
            .expect("run softhsm2-util");
        assert!(
            out.status.success(),
            "softhsm2-util failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Imports an RSA private key (PKCS#8 or PKCS#1, DER or PEM) onto the token as a
    /// sensitive, non-extractable signing key plus its public key, both with CKA_LABEL = `name`
    /// and CKA_ID = the key's SHA3-384 id; returns the key id. Uses SoftHSM directly in this
    /// process (initialising it when nobody did yet, finalising it again then).
    pub fn import_key(&self, label: &str, pin: &str, key_file: &Path, name: &str) -> String {
        self.import_key_as(label, pin, key_file, name, None)
    }

    /// [`Self::import_key`] with a chosen CKA_ID (to plant a wrong key under a known id).
    pub fn import_key_as(
        &self,
        label: &str,
        pin: &str,
        key_file: &Path,
        name: &str,
        forced_id: Option<Vec<u8>>,
    ) -> String {
        let k = RsaPrivate::read(key_file);
        let public = RsaPublicKey::new(&k.n, &k.e);
        let id = forced_id.unwrap_or_else(|| public.key_id_bytes().to_vec());
        with_user_session(&softhsm_module(), label, pin, |s| {
            let common = |class| {
                vec![
                    Attribute::Class(class),
                    Attribute::KeyType(KeyType::RSA),
                    Attribute::Token(true),
                    Attribute::Label(name.as_bytes().to_vec()),
                    Attribute::Id(id.clone()),
                    Attribute::Modulus(k.n.clone()),
                    Attribute::PublicExponent(k.e.clone()),
                ]
            };
            let mut private = common(ObjectClass::PRIVATE_KEY);
            private.extend([
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Decrypt(false),
                Attribute::PrivateExponent(k.d.clone()),
                Attribute::Prime1(k.p.clone()),
                Attribute::Prime2(k.q.clone()),
                Attribute::Exponent1(k.dp.clone()),
                Attribute::Exponent2(k.dq.clone()),
                Attribute::Coefficient(k.qinv.clone()),
            ]);
            s.create_object(&private).expect("create private key");
            let mut public_obj = common(ObjectClass::PUBLIC_KEY);
            public_obj.extend([Attribute::Private(false), Attribute::Verify(true)]);
            s.create_object(&public_obj).expect("create public key");
        });
        public.key_id()
    }
}

/// Runs `f` on a logged-in R/W session of the token `label` of `module`, in this process.
/// Initialises the module if needed (and finalises it afterwards only in that case), so it
/// can run before or next to an `Hsm` using the same module.
pub fn with_user_session<T>(
    module: &Path,
    label: &str,
    pin: &str,
    f: impl FnOnce(&Session) -> T,
) -> T {
    let ctx = Pkcs11::new(module).expect("load module");
    let ours = match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => true,
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => false,
        Err(e) => panic!("initialize: {e}"),
    };
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == label)
        .expect("token present");
    let out = {
        let s = ctx.open_rw_session(slot).expect("open session");
        match s.login(UserType::User, Some(&AuthPin::new(pin.into()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => panic!("login: {e}"),
        }
        f(&s)
    };
    if ours {
        ctx.finalize().expect("finalize");
    }
    out
}

/// Writes a fresh RSA key (PKCS#8; DER, or PEM when `pem`) and returns its path.
pub fn write_rsa_key(dir: &Path, bits: usize, pem: bool) -> PathBuf {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        _ => KeySize::Rsa4096,
    };
    let kp = KeyPair::generate(size).expect("generate RSA key");
    let der = kp.as_der().expect("PKCS#8").as_ref().to_vec();
    let path = dir.join(if pem { "key.pem" } else { "key.der" });
    if pem {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let mut text = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            text.push_str(std::str::from_utf8(chunk).unwrap());
            text.push('\n');
        }
        text.push_str("-----END PRIVATE KEY-----\n");
        std::fs::write(&path, text).unwrap();
    } else {
        std::fs::write(&path, der).unwrap();
    }
    path
}

/// The components of an RSA private key.
pub struct RsaPrivate {
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    pub d: Vec<u8>,
    pub p: Vec<u8>,
    pub q: Vec<u8>,
    pub dp: Vec<u8>,
    pub dq: Vec<u8>,
    pub qinv: Vec<u8>,
}

impl RsaPrivate {
    /// Reads a PKCS#8 or PKCS#1 RSA private key, DER or PEM.
    pub fn read(path: &Path) -> RsaPrivate {
        let raw = std::fs::read(path).expect("read key file");
        let der = if raw.starts_with(b"-----BEGIN") {
            let text = String::from_utf8(raw).expect("PEM is text");
            let b64: String = text
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<Vec<_>>()
                .concat();
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .expect("PEM base64")
        } else {
            raw
        };
        let (tag, body, _) = der_read(&der);
        assert_eq!(tag, 0x30, "key is not a DER SEQUENCE");
        let (_, _version, rest) = der_read(body);
        let pkcs1 = if rest[0] == 0x30 {
            // PKCS#8: version, AlgorithmIdentifier, OCTET STRING { RSAPrivateKey }
            let (_, _alg, rest) = der_read(rest);
            let (tag, inner, _) = der_read(rest);
            assert_eq!(tag, 0x04, "PKCS#8 without an OCTET STRING key");
            let (_, seq, _) = der_read(inner);
            seq.to_vec()
        } else {
            body.to_vec()
        };
        let mut ints = Vec::new();
        let mut rest = &pkcs1[..];
        while !rest.is_empty() {
            let (tag, v, r) = der_read(rest);
            assert_eq!(tag, 0x02, "RSAPrivateKey holds INTEGERs");
            let v = v
                .iter()
                .skip_while(|b| **b == 0)
                .copied()
                .collect::<Vec<u8>>();
            ints.push(v);
            rest = r;
        }
        assert!(ints.len() >= 9, "not an RSA private key");
        let mut it = ints.into_iter().skip(1);
        let mut next = || it.next().unwrap();
        RsaPrivate {
            n: next(),
            e: next(),
            d: next(),
            p: next(),
            q: next(),
            dp: next(),
            dq: next(),
            qinv: next(),
        }
    }
}

fn der_read(b: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = b[0];
    let (len, hdr) = if b[1] < 0x80 {
        (b[1] as usize, 2)
    } else {
        let k = (b[1] & 0x7f) as usize;
        (
            b[2..2 + k]
                .iter()
                .fold(0usize, |a, x| (a << 8) | *x as usize),
            2 + k,
        )
    };
    (tag, &b[hdr..hdr + len], &b[hdr + len..])
}

/// A `p11-kit server` serving one SoftHSM token on a unix socket.
pub struct P11KitServer {
    child: Option<Child>,
    conf: PathBuf,
    label: String,
    /// The module it serves, and that module's environment.
    provider: PathBuf,
    provider_env: Vec<(String, String)>,
    /// The socket path.
    pub socket: PathBuf,
}

impl P11KitServer {
    /// Starts the server on SoftHSM and waits for its socket.
    pub fn start(hsm: &SoftHsm, label: &str, socket: PathBuf) -> P11KitServer {
        Self::start_with(hsm, label, socket, softhsm_module(), &[])
    }

    /// Starts the server on `provider` (a module in front of SoftHSM, such as
    /// [`latency_module`]) run with `provider_env`, and waits for its socket.
    pub fn start_with(
        hsm: &SoftHsm,
        label: &str,
        socket: PathBuf,
        provider: PathBuf,
        provider_env: &[(&str, &str)],
    ) -> P11KitServer {
        let mut s = P11KitServer {
            child: None,
            conf: hsm.conf.clone(),
            label: label.to_string(),
            provider,
            provider_env: provider_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            socket,
        };
        s.spawn();
        s
    }

    /// The value for `P11_KIT_SERVER_ADDRESS`.
    pub fn address(&self) -> String {
        format!("unix:path={}", self.socket.display())
    }

    /// Exports `P11_KIT_SERVER_ADDRESS` for this process (before the client module loads).
    pub fn export_address(&self) {
        // SAFETY: see `SoftHsm::new`: done before the runtime and the module start.
        unsafe { std::env::set_var("P11_KIT_SERVER_ADDRESS", self.address()) };
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let child = Command::new("p11-kit")
            .env("SOFTHSM2_CONF", &self.conf)
            .envs(self.provider_env.iter().map(|(k, v)| (k, v)))
            .arg("server")
            .arg("--provider")
            .arg(&self.provider)
            .arg("-n")
            .arg(&self.socket)
            .arg("-f")
            .arg(format!("pkcs11:token={}", self.label))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, which the `p11-kit-remote` processes it forks inherit:
            // `kill` ends them all at once, also one forked a moment before.
            .process_group(0)
            .spawn()
            .expect("start p11-kit server");
        self.child = Some(child);
        let start = Instant::now();
        while !self.socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "p11-kit server socket did not appear"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server and the per-connection processes it forked (`p11-kit-remote`), so
    /// every client connection breaks, as when the service is stopped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            let kids = children_of(pid);
            // The whole group first (the server and every connection process), then any
            // child that left the group, then reap the server.
            let _ = Command::new("kill")
                .args(["-9", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
            for k in kids {
                let _ = Command::new("kill")
                    .arg("-9")
                    .arg(k.to_string())
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server (SIGSTOP) without closing anything: its listening socket still
    /// accepts connections into the backlog, but nobody answers them, so a client call that
    /// opens a new connection (C_Initialize of a new p11-kit-client instance) blocks.
    /// Established connections are served by their own `p11-kit-remote` processes and keep
    /// working; see [`Self::kill_connections`]. `kill` and `Drop` end a stopped server too.
    pub fn stop(&self) {
        if let Some(c) = &self.child {
            signal(c.id(), "-STOP");
        }
    }

    /// Lets a stopped server run again (SIGCONT): it accepts what waited in its backlog.
    pub fn resume(&self) {
        if let Some(c) = &self.child {
            signal(c.id(), "-CONT");
        }
    }

    /// Kills the per-connection `p11-kit-remote` processes only: every established client
    /// connection breaks (calls on it fail with `CKR_DEVICE_ERROR`), the server stays.
    pub fn kill_connections(&self) {
        if let Some(c) = &self.child {
            for k in children_of(c.id()) {
                signal(k, "-9");
            }
        }
    }

    /// Live client connections: the server forks one `p11-kit-remote` process per connection.
    pub fn connections(&self) -> usize {
        self.child.as_ref().map_or(0, |c| children_of(c.id()).len())
    }

    /// Starts it again on the same socket.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for P11KitServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid} failed");
}

/// Direct children of `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let ppid = after.split_whitespace().nth(1).and_then(|s| s.parse().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// A SHA-512 DigestInfo over `msg`, as the signer builds it.
pub fn digest_info_of(msg: &[u8]) -> [u8; 83] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, msg);
    serialmint::hsm::verify::digest_info(d.as_ref().try_into().unwrap())
}

/// A multi-threaded tokio runtime for a test (built after the environment is set).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `f` on a fresh [`runtime`] and shuts it down without waiting more than 10 s for its
/// blocking threads (the HSM layer's PKCS#11 calls run on detached threads of their own; this
/// guards against anything else that could keep a test alive after its end).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let rt = runtime();
    let out = rt.block_on(f);
    rt.shutdown_timeout(Duration::from_secs(10));
    out
}
