//! The fuzz targets' committed inputs as ordinary tests: every seed (`fuzz/seeds/TARGET/`) and
//! every input that once crashed a target (`fuzz/regressions/TARGET/`) goes through the same
//! checks the target runs (`fuzz/harness/`, included here), so a fixed crash stays fixed
//! without cargo-fuzz. The `serial_route` seeds must also still reach issuance: a seed that
//! stops doing so (a codec or policy change) would leave the fuzzer shallow without failing.
//!
//! The codec seeds must equal their cut of snapd's fixtures; `SERIALMINT_WRITE_SEEDS=1 cargo
//! nextest run --test fuzz_inputs codec_seeds` rewrites every seed instead (built with the
//! project's codec from snapd's test keys and assertions).

#[path = "../fuzz/harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};

use harness::serial_route::{Outcome, SerialRoute, seeds};

fn dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target)
}

/// The files of `fuzz/KIND/TARGET/`, sorted (none when the directory does not exist).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir(kind, target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every file of `fuzz/KIND/TARGET/` through `TARGET`; returns how many per target.
fn run_all(kind: &str) -> Vec<(&'static str, usize)> {
    harness::TARGETS
        .iter()
        .map(|&target| {
            let files = inputs(kind, target);
            for path in &files {
                let data = std::fs::read(path).unwrap();
                let r = std::panic::catch_unwind(|| harness::run(target, &data));
                assert!(r.is_ok(), "{target}: {} fails its checks", path.display());
            }
            (target, files.len())
        })
        .collect()
}

/// Seeds and regressions in one test: with no crash found yet, `fuzz/regressions/` may be
/// empty, and the seeds (which must exist for every target) keep this test able to fail.
#[test]
fn every_committed_input_passes_its_target() {
    for (target, n) in run_all("seeds") {
        assert!(n > 0, "no seeds for {target} under fuzz/seeds/{target}");
    }
    run_all("regressions");
}

/// What one request got: its status and, for an error, its code.
type Got<'a> = (u16, Option<&'a str>);

fn statuses(outcomes: &[Outcome]) -> Vec<Got<'_>> {
    outcomes
        .iter()
        .map(|o| (o.status, o.code.as_deref()))
        .collect()
}

/// What each committed `serial_route` seed must still get, request by request.
#[test]
fn serial_route_seeds_reach_every_outcome() {
    let h = SerialRoute::shared();
    let expected: &[(&str, &[Got])] = &[
        ("pc_new", &[(200, None)]),
        (
            "pc_stream_replay_conflict",
            &[(200, None), (200, None), (409, Some("request-id-used"))],
        ),
        (
            "pc_request_id_reused_elsewhere",
            &[
                (200, None),
                (409, Some("request-id-used")),
                (409, Some("request-id-used")),
                (200, None),
            ],
        ),
        (
            "pc_proposed_taken",
            &[(200, None), (409, Some("duplicate-serial"))],
        ),
        (
            "counter_and_reissue",
            &[(200, None), (200, None), (200, None)],
        ),
        ("proposed_in_body", &[(200, None)]),
        // The current serial as the stream's third assertion without snapd's `original-*`
        // headers (`overlord/devicestate/remodel.go` always sends both): an incomplete
        // re-registration, refused before anything is signed.
        ("remodel", &[(400, Some("remodel-request-incomplete"))]),
        ("resigned", &[(200, None), (200, None)]),
        (
            "refusals",
            &[
                (403, Some("model-not-allowed")),
                (409, Some("no-signing-policy")),
                (503, Some("signing-key-unavailable")),
                (413, Some("too-large")),
            ],
        ),
        ("other_routes", &[(200, None); 4]),
    ];
    assert_eq!(expected.len(), seeds().len(), "a seed without expectations");
    for (name, want) in expected {
        let path = dir("seeds", "serial_route").join(name);
        let data = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (SERIALMINT_WRITE_SEEDS=1?)", path.display()));
        let got = h.run(&data);
        assert_eq!(statuses(&got), *want, "seed {name}: {got:?}");
    }
}

/// The committed codec seeds are exactly the pieces of snapd's fixtures listed here (whole
/// assertion, header block, signature and body packets). With `SERIALMINT_WRITE_SEEDS=1` the
/// test rewrites every seed instead: these, and [`seeds`] for `serial_route` (needed only when
/// the harness's requests change; their request-ids are random, so every file changes).
#[test]
fn codec_seeds_are_cut_from_the_fixtures() {
    let rewrite = std::env::var_os("SERIALMINT_WRITE_SEEDS").is_some_and(|v| v == "1");
    let write = |target: &str, name: &str, data: &[u8]| {
        let d = dir("seeds", target);
        if rewrite {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(name), data).unwrap();
        } else {
            let path = d.join(name);
            let committed = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (SERIALMINT_WRITE_SEEDS=1?)", path.display()));
            assert!(
                committed == data,
                "{} differs from its fixture",
                path.display()
            );
        }
    };
    if rewrite {
        for (name, data) in seeds() {
            write("serial_route", name, &data);
        }
    }
    let fixtures = [
        "developer1-pc.model",
        "testrootorg.account-key",
        "happy-serial-uc20.serial",
    ];
    for f in fixtures {
        let text = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/snapd")
                .join(f),
        )
        .unwrap();
        let a = serialmint::assertion::decode(&text).unwrap();
        let content = a.content();
        let head = content
            .windows(2)
            .position(|w| w == b"\n\n")
            .map_or(content, |i| &content[..i]);
        write("stream_decode", f, &text);
        write("headers", f, head);
        write("openpgp_packets", &format!("{f}.signature"), a.signature());
        if !a.body().is_empty() {
            write("openpgp_packets", &format!("{f}.body"), a.body());
        }
    }
}
