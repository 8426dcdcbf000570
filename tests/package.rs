//! The Debian package: `scripts/package` builds it from this test's binary with plain
//! dpkg-deb; its metadata, contents, conffile and unit are checked (`dpkg-deb --info`,
//! `--contents`, `systemd-analyze verify` when available); then the packaged binary runs with
//! the packaged unit's command line and configuration, as the unit would start it: PIN and
//! database URL from 0600 files (as `LoadCredential=` gives them), readiness told to a
//! `NOTIFY_SOCKET` (`Type=notify`), `/readyz` 200 against the real token and database. Nothing
//! is installed system-wide.
//!
//! Run with `cargo nextest run` (one process per test: SoftHSM is process-wide).

mod common;
#[path = "common/serve.rs"]
mod serve;
#[path = "common/softhsm.rs"]
mod softhsm;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serialmint::config::Config;
use sqlx::PgPool;

use softhsm::SoftHsm;

const LABEL: &str = "package-test";
const PIN: &str = "Pin-package-6Yu2";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Builds the package into `out` and extracts it into `out/root`; the .deb's path.
fn build(out: &Path) -> PathBuf {
    let deb = run(
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/package"))
            .args(["--binary", env!("CARGO_BIN_EXE_serialmint"), "--out"])
            .arg(out),
    );
    let deb = PathBuf::from(deb.trim());
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(out.join("root")));
    deb
}

/// A child process killed if the test fails before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of `Key=` lines in the unit.
fn directives<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .collect()
}

#[sqlx::test]
async fn the_package_holds_a_hardened_unit_and_its_binary_serves_as_the_unit_runs_it(pool: PgPool) {
    let hsm = SoftHsm::new();
    hsm.init_token(LABEL, PIN);
    let dir = tempfile::tempdir().unwrap();
    let deb = build(dir.path());
    let root = dir.path().join("root");

    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    for needle in [
        "Package: serialmint",
        "Depends: adduser",
        "conffiles",
        "postinst",
        "prerm",
        "postrm",
    ] {
        assert!(info.contains(needle), "{needle}:\n{info}");
    }
    let conffiles = run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/serialmint/serialmint.toml");
    let contents = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for path in [
        "./usr/bin/serialmint",
        "./usr/lib/systemd/system/serialmint.service",
        "./etc/serialmint/serialmint.toml",
        "./usr/share/bash-completion/completions/serialmint",
        "./usr/share/zsh/vendor-completions/_serialmint",
        "./usr/share/fish/vendor_completions.d/serialmint.fish",
        "./usr/share/man/man1/serialmint.1.gz",
        "./usr/share/man/man1/serialmint-serve.1.gz",
        "./usr/share/man/man1/serialmint-create-key.1.gz",
    ] {
        assert!(
            contents.contains(&format!(" {path}\n")),
            "{path}:\n{contents}"
        );
    }
    assert!(contents.contains("root/root"), "owned by root:\n{contents}");

    // The conffile: every setting, commented out; as shipped it changes nothing.
    let toml_path = root.join("etc/serialmint/serialmint.toml");
    let toml = std::fs::read_to_string(&toml_path).unwrap();
    for s in serialmint::config::SETTINGS {
        assert!(toml.contains(s.env), "{} missing from the conffile", s.key);
    }
    let shipped = Config::load_from(Some(&toml_path), &[], &[]).unwrap();
    assert_eq!(format!("{shipped:?}"), format!("{:?}", Config::default()));

    // The unit: hardened, secrets as credentials, sized for the connection cap.
    let unit_path = root.join("usr/lib/systemd/system/serialmint.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    for (key, want) in [
        ("Type", "notify"),
        ("User", "serialmint"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(directives(&unit, key), [want], "{key}");
    }
    let creds = directives(&unit, "LoadCredential");
    assert!(creds.contains(&"pin:/etc/serialmint/pin"), "{creds:?}");
    assert!(
        creds.contains(&"database-url:/etc/serialmint/database-url"),
        "{creds:?}"
    );
    let nofile: usize = directives(&unit, "LimitNOFILE")[0].parse().unwrap();
    assert!(nofile > 2 * Config::default().max_connections, "{nofile}");
    assert!(
        directives(&unit, "Environment")
            .iter()
            .all(|e| !e.contains(PIN))
            && !unit.contains("SERIALMINT_TOKEN_PIN="),
        "no PIN in the unit's environment"
    );
    // postinst creates the user and never enables or starts the service on a first install.
    let postinst = std::fs::read_to_string(
        run(Command::new("sh").arg("-c").arg(format!(
            "d=$(mktemp -d) && dpkg-deb -e {} $d && echo $d/postinst",
            deb.display()
        )))
        .trim(),
    )
    .unwrap();
    assert!(postinst.contains("adduser --system"), "{postinst}");
    for line in postinst
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("systemctl "))
    {
        assert!(
            line.contains("daemon-reload") || line.contains("try-restart"),
            "postinst runs {line:?}"
        );
    }
    assert!(
        postinst.contains("if [ -n \"$2\" ]"),
        "try-restart on upgrades only: {postinst}"
    );

    // systemd's own check of the unit, with ExecStart pointing at the extracted binary.
    let bin = root.join("usr/bin/serialmint");
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let local = dir.path().join("serialmint.service");
        std::fs::write(
            &local,
            unit.replace("/usr/bin/serialmint", bin.to_str().unwrap()),
        )
        .unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&local)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "systemd-analyze verify: {said}"
        );
    } else {
        eprintln!("systemd-analyze not installed; unit not verified by systemd");
    }

    // The packaged binary with the unit's command line and the packaged configuration.
    serve_as_the_unit(&bin, &unit, &toml_path, &hsm, &pool, None).await;
}

/// Runs `bin` as the unit would: the unit's `ExecStart` arguments (with `toml_path` for the
/// packaged configuration), the secrets in 0400 files where `LoadCredential=` puts them,
/// readiness told to a `NOTIFY_SOCKET`; as `user` (uid, gid) when given, as the unit's
/// `User=` does. Checks `READY=1`, `/readyz` 200, the device listener, and `STOPPING=1` and a
/// clean exit on SIGTERM.
async fn serve_as_the_unit(
    bin: &Path,
    unit: &str,
    toml_path: &Path,
    hsm: &SoftHsm,
    pool: &PgPool,
    user: Option<(u32, u32)>,
) {
    let dir = tempfile::tempdir().unwrap();
    let exec = directives(unit, "ExecStart")[0].to_string();
    let creds_dir = dir.path().join("credentials");
    std::fs::create_dir(&creds_dir).unwrap();
    for (name, text) in [
        ("pin", PIN.to_string()),
        ("database-url", serve::database_url(pool)),
    ] {
        let p = creds_dir.join(name);
        std::fs::write(&p, format!("{text}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
    }
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    if let Some((uid, gid)) = user {
        // What systemd does for the unit's user: the credentials and the token are its own.
        for p in [dir.path(), hsm.dir.path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        run(Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(&creds_dir)
            .arg(hsm.dir.path())
            .arg(&socket_path));
    }
    let args: Vec<String> = exec
        .split_whitespace()
        .skip(1)
        .map(|a| {
            a.replace(
                "/etc/serialmint/serialmint.toml",
                toml_path.to_str().unwrap(),
            )
        })
        .collect();
    let (device, admin) = (common::free_port(), common::free_port());
    let mut command = match user {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
                "--no-new-privs",
                "--",
            ])
            .arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = KillOnDrop(
        command
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SOFTHSM2_CONF", &hsm.conf)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("SERIALMINT_TOKEN_PIN_FILE", creds_dir.join("pin"))
            .env(
                "SERIALMINT_DATABASE_URL_FILE",
                creds_dir.join("database-url"),
            )
            .env("SERIALMINT_PKCS11_MODULE", softhsm::softhsm_module())
            .env("SERIALMINT_TOKEN_LABEL", LABEL)
            .env("SERIALMINT_HSM_SESSIONS", "2")
            .env("SERIALMINT_DEVICE_LISTEN", format!("127.0.0.1:{device}"))
            .env("SERIALMINT_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 within a minute");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "READY=1");
    if let Some((uid, _)) = user {
        // setpriv execs the binary in its own process: that process is the unit's user.
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.0.id())).unwrap();
        let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uids.split_whitespace()
                .skip(1)
                .all(|u| u == uid.to_string()),
            "{uids}"
        );
    }
    assert!(
        common::wait_for_port(admin, Duration::from_secs(5)),
        "listening once ready"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = common::http_get(admin, "/readyz");
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(common::http_get(device, "/v1/version").0, 200);
    run(Command::new("kill").args(["-TERM", &child.0.id().to_string()]));
    let n = socket.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// The package as `dpkg -i` installed it on this machine (CI: `scripts/test` installs it,
/// sets `SERIALMINT_TEST_INSTALLED_PACKAGE=1`, runs this test and purges the package): dpkg
/// knows it, postinst made the system user and `/etc/serialmint` its group's, and the
/// installed binary serves with the installed unit's command line and the installed
/// configuration, as the unit's user, the PIN in a 0400 file. Without the variable (a
/// developer's machine, where nothing is installed) it says so and checks nothing.
#[sqlx::test]
async fn the_installed_package_serves_as_its_unit_runs_it(pool: PgPool) {
    if std::env::var_os("SERIALMINT_TEST_INSTALLED_PACKAGE").is_none() {
        eprintln!("SERIALMINT_TEST_INSTALLED_PACKAGE unset: the package is not installed here");
        return;
    }
    let status = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "serialmint"]));
    assert_eq!(status, "install ok installed");
    let id = |flag: &str| -> u32 {
        run(Command::new("id").args([flag, "serialmint"]))
            .trim()
            .parse()
            .unwrap()
    };
    let (uid, gid) = (id("-u"), id("-g"));
    let etc = std::fs::metadata("/etc/serialmint").unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((etc.gid(), etc.mode() & 0o777), (gid, 0o750));
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/serialmint.service").unwrap();
    assert!(
        directives(&unit, "ExecStart")[0].starts_with("/usr/bin/serialmint "),
        "{unit}"
    );
    let hsm = SoftHsm::new();
    hsm.init_token(LABEL, PIN);
    serve_as_the_unit(
        Path::new("/usr/bin/serialmint"),
        &unit,
        Path::new("/etc/serialmint/serialmint.toml"),
        &hsm,
        &pool,
        Some((uid, gid)),
    )
    .await;
}
