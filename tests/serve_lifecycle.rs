//! `serialmint serve` as a process: both listeners answer, SIGTERM stops it with exit 0, and a
//! bad configuration stops it at start-up with one clear line.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http_get, wait_for_port};

#[test]
fn serves_both_listeners_and_stops_cleanly_on_sigterm() {
    let device = free_port();
    let admin = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_serialmint"))
        .args(["serve", "--device-listen", &format!("127.0.0.1:{device}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serialmint starts");
    let up = wait_for_port(device, Duration::from_secs(30))
        && wait_for_port(admin, Duration::from_secs(30));
    if !up {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "server did not listen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (status, body) = http_get(device, "/v1/version");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"version\""), "{body}");
    let (status, body) = http_get(admin, "/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, _) = http_get(device, "/no/such/route");
    assert_eq!(status, 404);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_configuration_is_one_clear_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_serialmint"))
        .args(["serve", "--set", "hsm.sessions=zero"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("hsm.sessions"), "{stderr}");
}
