//! `create key`, `list keys`, `register-key` and `push-account-keys`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::client::{Client, enc};
use super::output::{print_json, print_table, s, table};

/// Asks the server to generate key `name` on the HSM and waits (spinner with elapsed time)
/// until it is ready or failed.
pub async fn create(client: &Client, name: &str, as_json: bool) -> Result<(), String> {
    let started = client
        .send_json(Method::POST, "/v1/keys", &json!({ "name": name }))
        .await?;
    let spinner = if as_json {
        ProgressBar::hidden()
    } else {
        let p = ProgressBar::new_spinner();
        p.set_style(
            ProgressStyle::with_template(
                "{spinner} Generating RSA-4096 key {msg} on the HSM ({elapsed})",
            )
            .expect("valid template"),
        );
        p.set_message(name.to_string());
        p.enable_steady_tick(Duration::from_millis(100));
        p
    };
    let t0 = Instant::now();
    let mut key = started;
    let path = format!("/v1/keys/{}", enc(name));
    while s(&key, "status") == "pending" {
        tokio::time::sleep(Duration::from_millis(250)).await;
        key = client.get_json(&path).await?;
    }
    spinner.finish_and_clear();
    if s(&key, "status") != "ready" {
        return Err(format!(
            "generating key {name} failed: {}",
            key["error"].as_str().unwrap_or("unknown error")
        ));
    }
    let id = s(&key, "sha3-384");
    if as_json {
        print_json(&json!({"name": name, "sha3-384": id}));
    } else {
        println!(
            "Generated key {name} in {:.1} s. Its SHA3-384 id:\n{id}",
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Lists keys: Name, SHA3-384.
pub async fn list(client: &Client, as_json: bool) -> Result<(), String> {
    let v = client.get_json("/v1/keys").await?;
    let items = v["items"].as_array().cloned().unwrap_or_default();
    if as_json {
        let out: Vec<Value> = items
            .iter()
            .map(|k| {
                json!({"name": k["name"], "sha3-384": k["sha3-384"], "status": k["status"],
                       "active": k["active"]})
            })
            .collect();
        print_json(&Value::Array(out));
        return Ok(());
    }
    let mut t = table(&["Name", "SHA3-384", "Status"]);
    for k in &items {
        let status = match (s(k, "status"), k["active"].as_bool()) {
            ("ready", Some(false)) => "disabled",
            (st, _) => st,
        };
        t.add_row(vec![s(k, "name"), s(k, "sha3-384"), status]);
    }
    print_table(&t, "No keys.");
    Ok(())
}

/// Prints the key's `account-key-request`, signed by the key itself.
pub async fn register(client: &Client, key: &str, as_json: bool) -> Result<(), String> {
    let (_, body) = client
        .call(
            Method::POST,
            &format!("/v1/keys/{}/register", enc(key)),
            "",
            Bytes::new(),
        )
        .await?;
    let text = String::from_utf8_lossy(&body);
    if as_json {
        print_json(&json!({"key": key, "account-key-request": text}));
    } else {
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
    }
    Ok(())
}

/// Pushes a file of account / account-key assertions.
pub async fn push(client: &Client, file: &std::path::Path, as_json: bool) -> Result<(), String> {
    let data = if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        buf
    } else {
        std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?
    };
    let (_, body) = client
        .call(
            Method::POST,
            "/v1/account-keys",
            crate::admin_api::ASSERTION_TYPE,
            Bytes::from(data),
        )
        .await?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    if as_json {
        print_json(&v);
    } else {
        for a in v["assertions"].as_array().into_iter().flatten() {
            println!("Accepted {} {}", s(a, "type"), s(a, "primary-key"));
        }
    }
    Ok(())
}
