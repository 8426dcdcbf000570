//! The real `serialmint serve` as a child process, for the tests that drive the binary: its
//! environment over a per-test database (the one `#[sqlx::test]` made) and a SoftHSM token
//! directory, free ports, its stdout and stderr captured, signals (SIGTERM, SIGKILL), a bounded
//! wait for its exit, a restart on the same database and token, and CLI runs with the same
//! environment.
//!
//! Needs `common` and `softhsm` as sibling modules of the test crate.

#![allow(dead_code)]

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;

use crate::common::{free_port, wait_for_port};
use crate::softhsm::{SoftHsm, softhsm_module};

/// The URL of the per-test database `#[sqlx::test]` made (`DATABASE_URL` names the server).
pub fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let db = pool
        .connect_options()
        .get_database()
        .expect("a database name")
        .to_string();
    let (server, _) = base.rsplit_once('/').expect("a URL with a database path");
    format!("{server}/{db}")
}

/// The password in a `postgres://user:password@host/db` URL, if any.
pub fn database_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_string())
}

/// What `serve` and the CLI run with: nothing inherited but `PATH`, the database of `pool`,
/// the token `label` of `hsm` with `pin`, one HSM session per core of a small machine,
/// `trusted` as the trusted roots (when given) and `log` as the log filter.
pub fn env(
    pool: &PgPool,
    hsm: &SoftHsm,
    label: &str,
    pin: &str,
    trusted: Option<&Path>,
    log: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("SOFTHSM2_CONF".into(), hsm.conf.display().to_string()),
        ("SERIALMINT_DATABASE_URL".into(), database_url(pool)),
        (
            "SERIALMINT_PKCS11_MODULE".into(),
            softhsm_module().display().to_string(),
        ),
        ("SERIALMINT_TOKEN_LABEL".into(), label.into()),
        ("SERIALMINT_TOKEN_PIN".into(), pin.into()),
        ("SERIALMINT_HSM_SESSIONS".into(), "2".into()),
        ("SERIALMINT_LOG".into(), log.into()),
    ];
    if let Some(t) = trusted {
        env.push((
            "SERIALMINT_TRUSTED_ASSERTIONS".into(),
            t.display().to_string(),
        ));
    }
    env
}

/// Sets `key` in `env` (replacing an earlier value).
pub fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.into(), value.into()));
}

/// A running `serialmint serve`.
pub struct Serve {
    child: Option<Child>,
    /// The device listener.
    pub device: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// `http://` + the admin listener, for `SERIALMINT_ADMIN_URL`.
    pub admin_url: String,
    /// The environment it runs with (the CLI runs with it too).
    pub env: Vec<(String, String)>,
    output: Arc<Mutex<String>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn capture(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}

impl Serve {
    /// Starts `serve` on free ports and waits (up to a minute) until both listeners accept.
    pub fn start(env: Vec<(String, String)>) -> Serve {
        Self::start_on(env, free_port(), free_port())
    }

    /// Starts `serve` on these ports (a restart reuses the ports of the run before).
    pub fn start_on(env: Vec<(String, String)>, device: u16, admin: u16) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_serialmint"))
            .args(["serve", "--device-listen", &format!("127.0.0.1:{device}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .env_clear()
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serialmint serve starts");
        let output = Arc::new(Mutex::new(String::new()));
        capture(child.stdout.take().unwrap(), output.clone());
        capture(child.stderr.take().unwrap(), output.clone());
        let mut serve = Serve {
            child: Some(child),
            device: SocketAddr::from(([127, 0, 0, 1], device)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            admin_url: format!("http://127.0.0.1:{admin}"),
            env,
            output,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        for port in [device, admin] {
            while !wait_for_port(port, Duration::from_millis(200)) {
                if let Some(status) = serve.try_wait() {
                    panic!(
                        "serve exited ({status}) before listening:\n{}",
                        serve.logs()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "serve did not listen on {port}:\n{}",
                    serve.logs()
                );
            }
        }
        serve
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `SIGTERM`.
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Sends `SIGKILL` and reaps the process.
    pub fn sigkill(&mut self) {
        let child = self.child.as_mut().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything it wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits up to `timeout` until its output holds `needle` `times` times (without blocking
    /// the test's runtime: its clients keep running meanwhile).
    pub async fn wait_for_log(&self, needle: &str, times: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs().matches(needle).count() >= times {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Runs `serialmint ARGS` with its environment, the admin URL and `token` as
    /// `SERIALMINT_ADMIN_TOKEN`.
    pub fn run(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_serialmint"));
        cmd.args(args)
            .env_clear()
            .envs(self.env.iter().cloned())
            .env("SERIALMINT_ADMIN_URL", &self.admin_url)
            .stdin(Stdio::null());
        if let Some(t) = token {
            cmd.env("SERIALMINT_ADMIN_TOKEN", t);
        }
        cmd.output().expect("run serialmint")
    }

    /// [`Serve::run`] that must succeed; its stdout.
    #[track_caller]
    pub fn ok(&self, token: Option<&str>, args: &[&str]) -> String {
        let out = self.run(token, args);
        assert!(
            out.status.success(),
            "serialmint {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// [`Serve::ok`] parsed as JSON.
    #[track_caller]
    pub fn json(&self, token: Option<&str>, args: &[&str]) -> Value {
        let text = self.ok(token, args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }
}
