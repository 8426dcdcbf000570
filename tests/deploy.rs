//! `deploy/`: the Prometheus rules and the Grafana dashboard name only metrics the code
//! exports (found in `src/` as `counter!`/`gauge!`/`histogram!` calls), cover what the alerts
//! must watch, parse, and pass `promtool` when it is installed (Debian: `prometheus`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every metric name registered in `src/`.
fn exported() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut dirs = vec![Path::new(ROOT).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for mac in ["counter!(\"", "gauge!(\"", "histogram!(\""] {
                    for (i, _) in text.match_indices(mac) {
                        let rest = &text[i + mac.len()..];
                        names.insert(rest[..rest.find('"').unwrap()].to_string());
                    }
                }
            }
        }
    }
    names
}

/// The metric-like names in `text`: identifiers ending as metric names do.
fn named(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        .filter(|t| t.contains('_') && !t.starts_with('_'))
        .filter(|t| {
            [
                "_total", "_seconds", "_up", "_depth", "_size", "_sum", "_count", "_seq", "_late",
                "_rows", "_down", "_stuck",
            ]
            .iter()
            .any(|s| t.ends_with(s))
        })
        .map(|t| {
            t.strip_suffix("_sum")
                .or_else(|| t.strip_suffix("_count"))
                .unwrap_or(t)
                .to_string()
        })
        .collect()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap()
}

#[test]
fn rules_and_dashboard_use_only_exported_metrics() {
    let exported = exported();
    assert!(exported.contains("hsm_token_up"), "{exported:?}");
    let rules = read("deploy/prometheus/serialmint.rules.yml");
    let dashboard = read("deploy/grafana/serialmint.json");
    for (what, text) in [("rules", &rules), ("dashboard", &dashboard)] {
        let unknown: Vec<_> = named(text).difference(&exported).cloned().collect();
        assert!(
            unknown.is_empty(),
            "{what} name metrics the code does not export: {unknown:?}"
        );
    }
    for must in [
        "hsm_token_up",
        "signing_log_errors_total",
        "serials_refused_total",
        "signer_queue_wait_seconds",
    ] {
        assert!(named(&rules).contains(must), "no alert on {must}");
    }
    // Every exported metric is on the dashboard.
    let missing: Vec<_> = exported.difference(&named(&dashboard)).cloned().collect();
    assert!(missing.is_empty(), "not on the dashboard: {missing:?}");

    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let panels = json["panels"].as_array().unwrap();
    assert!(
        panels
            .iter()
            .all(|p| !p["targets"].as_array().unwrap().is_empty())
    );
}

#[test]
fn promtool_accepts_the_rules_and_the_scrape_config() {
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!("promtool not installed (Debian: apt install prometheus); not checked");
        return;
    }
    for args in [
        &["check", "rules", "deploy/prometheus/serialmint.rules.yml"][..],
        &[
            "check",
            "config",
            "--syntax-only",
            "deploy/prometheus/prometheus.yml",
        ],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(ROOT)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
