//! `create key`, `list keys`, `register-key` and `push-account-keys`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::Error;
use super::client::{Client, path_segment};
use super::output::{outln, print_json, print_rows, write_out};
use crate::admin_api::wire::{ASSERTION_TYPE, CreateKey, KeyView, List, PushAnswer};
use crate::domain::KeyStatus;

/// `create key --json`.
#[derive(Serialize)]
struct Created<'a> {
    name: &'a str,
    #[serde(rename = "sha3-384")]
    sha3_384: &'a str,
}

/// A row of `list keys --json`.
#[derive(Serialize)]
struct Listed<'a> {
    name: &'a str,
    #[serde(rename = "sha3-384")]
    sha3_384: Option<&'a str>,
    status: KeyStatus,
    active: bool,
    /// From the pushed account-key: its constraints, `any`, or `not registered`.
    roles: &'a str,
}

/// `register-key --json`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Request<'a> {
    key: &'a str,
    account_key_request: &'a str,
}

fn spinner(name: &str, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
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
}

/// Asks the server to generate key `name` on the HSM and waits (spinner with elapsed time)
/// until it is ready or failed.
pub async fn create(client: &Client, name: &str, as_json: bool) -> Result<(), Error> {
    let request = CreateKey {
        name: name.to_string(),
        ..CreateKey::default()
    };
    let mut key: KeyView = client.post("/v1/keys", &request).await?;
    let spinner = spinner(name, as_json);
    let t0 = Instant::now();
    let path = format!("/v1/keys/{}", path_segment(name));
    while key.status == KeyStatus::Pending {
        tokio::time::sleep(Duration::from_millis(250)).await;
        key = client.get(&path).await?;
    }
    spinner.finish_and_clear();
    if key.status != KeyStatus::Ready {
        return Err(Error::KeyGeneration {
            name: name.to_string(),
            reason: key.error.unwrap_or_else(|| "unknown error".into()),
        });
    }
    let id = key.sha3_384.as_deref().unwrap_or_default();
    if as_json {
        print_json(&Created { name, sha3_384: id })
    } else {
        outln!(
            "Generated key {name} in {:.1} s. Its SHA3-384 id:\n{id}",
            t0.elapsed().as_secs_f64()
        )
    }
}

/// Lists keys: Name, SHA3-384, Status, Roles (from the pushed account-key).
pub async fn list(client: &Client, as_json: bool) -> Result<(), Error> {
    let keys: List<KeyView> = client.get("/v1/keys").await?;
    print_rows(
        &keys.items,
        as_json,
        |k| Listed {
            name: &k.name,
            sha3_384: k.sha3_384.as_deref(),
            status: k.status,
            active: k.active,
            roles: &k.roles,
        },
        &["Name", "SHA3-384", "Status", "Roles"],
        |k| {
            let status = match k.status {
                KeyStatus::Ready if !k.active => "disabled",
                s => s.as_str(),
            };
            vec![
                k.name.clone(),
                k.sha3_384.clone().unwrap_or_default(),
                status.to_string(),
                k.roles.clone(),
            ]
        },
        "No keys.",
    )
}

/// Prints the key's `account-key-request`, signed by the key itself.
pub async fn register(client: &Client, key: &str, as_json: bool) -> Result<(), Error> {
    let path = format!("/v1/keys/{}/register", path_segment(key));
    let (_, body) = client.call(Method::POST, &path, "", Bytes::new()).await?;
    let text = String::from_utf8_lossy(&body);
    if as_json {
        print_json(&Request {
            key,
            account_key_request: &text,
        })
    } else if text.ends_with('\n') {
        write_out(format_args!("{text}"))
    } else {
        outln!("{text}")
    }
}

/// Pushes a file (`-`: stdin) of account / account-key assertions.
pub async fn push(client: &Client, file: &std::path::Path, as_json: bool) -> Result<(), Error> {
    let data = if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(|source| {
            Error::Input {
                what: "stdin".into(),
                source,
            }
        })?;
        buf
    } else {
        std::fs::read(file).map_err(|source| Error::Input {
            what: file.display().to_string(),
            source,
        })?
    };
    let (_, body) = client
        .call(
            Method::POST,
            "/v1/account-keys",
            ASSERTION_TYPE,
            Bytes::from(data),
        )
        .await?;
    let answer: PushAnswer = serde_json::from_slice(&body).map_err(Error::BadAnswer)?;
    if as_json {
        return print_json(&answer);
    }
    for a in &answer.assertions {
        outln!("Accepted {} {}", a.kind, a.primary_key)?;
    }
    Ok(())
}
