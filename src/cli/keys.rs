//! `create key`, `import key`, `list keys`, `register-key` and `push-account-keys`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::Error;
use super::client::{Client, path_segment};
use super::output::{outln, print_json, print_rows, write_out};
use crate::admin_api::wire::{ASSERTION_TYPE, CreateKey, ImportKey, KeyView, List, PushAnswer};
use crate::domain::{KeyOrigin, KeyPurpose, KeyStatus};

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
    origin: KeyOrigin,
    /// From the pushed account-key: its constraints, `any`, or `not registered`.
    roles: &'a str,
}

/// `import key --json`.
#[derive(Serialize)]
struct Imported<'a> {
    name: &'a str,
    #[serde(rename = "sha3-384")]
    sha3_384: &'a str,
    origin: KeyOrigin,
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
pub async fn create(
    client: &Client,
    name: &str,
    purpose: KeyPurpose,
    as_json: bool,
) -> Result<(), Error> {
    let request = CreateKey {
        name: name.to_string(),
        brand_id: client.brand().map(str::to_string),
        purpose: (purpose != KeyPurpose::Assertions).then_some(purpose),
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

/// Sends a key file (`-`: stdin) to be imported onto the HSM as key `name`. The file's
/// bytes, the request and its JSON are held in buffers wiped when dropped.
pub async fn import(
    client: &Client,
    name: &str,
    file: &std::path::Path,
    as_json: bool,
) -> Result<(), Error> {
    let (what, data) = read_input(file)?;
    let data = zeroize::Zeroizing::new(data);
    let text = std::str::from_utf8(&data).map_err(|_| Error::Input {
        what,
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a text key file (expected ASCII-armored OpenPGP or PEM)",
        ),
    })?;
    let request = ImportKey {
        name: name.to_string(),
        brand_id: client.brand().map(str::to_string),
        private_key: zeroize::Zeroizing::new(text.to_string()),
    };
    let mut body = zeroize::Zeroizing::new(Vec::new());
    serde_json::to_writer(&mut *body, &request).map_err(Error::BadAnswer)?;
    drop(request);
    // The buffer is wiped when the client is done with it.
    let body = Bytes::from_owner(body);
    let (_, answer) = client
        .call(Method::POST, "/v1/keys/import", "application/json", body)
        .await?;
    let key: KeyView = serde_json::from_slice(&answer).map_err(Error::BadAnswer)?;
    let id = key.sha3_384.as_deref().unwrap_or_default();
    if as_json {
        print_json(&Imported {
            name: &key.name,
            sha3_384: id,
            origin: key.origin,
        })
    } else {
        outln!(
            "Imported key {} onto the HSM. Its SHA3-384 id:\n{id}",
            key.name
        )
    }
}

/// Lists keys: Name, SHA3-384, Status, Origin, Roles (from the pushed account-key).
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
            origin: k.origin,
            roles: &k.roles,
        },
        &["Name", "SHA3-384", "Status", "Origin", "Roles"],
        |k| {
            let status = match k.status {
                KeyStatus::Ready if !k.active => "disabled",
                s => s.as_str(),
            };
            vec![
                k.name.clone(),
                k.sha3_384.clone().unwrap_or_default(),
                status.to_string(),
                k.origin.to_string(),
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

/// Pushes files (`-`: stdin) of account / account-key assertions, as one push: the server
/// admits all of them or none. Each file is decoded here first, so a file that is not an
/// assertion stream is named before anything is sent.
pub async fn push(
    client: &Client,
    files: &[std::path::PathBuf],
    as_json: bool,
) -> Result<(), Error> {
    let mut encoded = Vec::new();
    for file in files {
        let (what, bytes) = read_input(file)?;
        let assertions = crate::assertion::decode_stream(&bytes)
            .map_err(|source| Error::NotAssertions { what, source })?;
        encoded.extend(assertions.iter().map(|a| a.encode()));
    }
    let data = crate::assertion::encode_stream(encoded);
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

/// The contents of `file` (`-`: stdin) and its name for messages. Stdin is read into a buffer
/// sized for the largest key file up front, so a private key is not left behind in the freed
/// buffers of reallocations (the caller zeroizes the one buffer).
fn read_input(file: &std::path::Path) -> Result<(String, Vec<u8>), Error> {
    let stdin = file.as_os_str() == "-";
    let what = if stdin {
        "stdin".to_string()
    } else {
        file.display().to_string()
    };
    let read = if stdin {
        let mut buf = Vec::with_capacity(crate::keyfile::MAX_FILE_BYTES);
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
    } else {
        std::fs::read(file)
    };
    read.map(|bytes| (what.clone(), bytes))
        .map_err(|source| Error::Input { what, source })
}
