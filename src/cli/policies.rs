//! `create serial-policy` and `list serial-policies`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;
use super::client::{Client, path_segment};
use super::output::{choose, outln, print_json, print_rows, short_time};
use crate::admin_api::wire::{CreatePolicy, KeyView, List, ModelView, PolicyView};
use crate::domain::KeyStatus;

/// `create serial-policy --json`.
#[derive(Serialize)]
struct Created<'a> {
    model: &'a str,
    key: &'a str,
    revision: i32,
}

/// `value`, or one chosen at a terminal from what `path` lists (`choices` makes the
/// (value, description) pairs).
async fn pick<T: DeserializeOwned>(
    client: &Client,
    value: Option<String>,
    (flag, what): (&'static str, &'static str),
    path: &str,
    choices: impl FnOnce(Vec<T>) -> Vec<(String, String)>,
) -> Result<String, Error> {
    if let Some(v) = value {
        return Ok(v);
    }
    let listed: List<T> = client.get(path).await?;
    choose(None, flag, what, &choices(listed.items))
}

/// Appends a serial-policy revision (model -> key); asks for the model and key at a terminal
/// when missing.
pub async fn create(
    client: &Client,
    model: Option<String>,
    key: Option<String>,
    as_json: bool,
) -> Result<(), Error> {
    let model = pick(
        client,
        model,
        ("--model", "model"),
        "/v1/models",
        |models| {
            let names = models.into_iter().map(|m: ModelView| m.name);
            names.map(|n| (n.clone(), n)).collect()
        },
    )
    .await?;
    // Only keys that can sign are offered.
    let key = pick(client, key, ("--key", "key"), "/v1/keys", |keys| {
        let usable = keys
            .into_iter()
            .filter(|k: &KeyView| k.status == KeyStatus::Ready && k.active);
        usable
            .map(|k| {
                let id = k.sha3_384.unwrap_or_default();
                (id.clone(), format!("{}  {id}", k.name))
            })
            .collect()
    })
    .await?;
    let path = format!("/v1/models/{}/serial-policies", path_segment(&model));
    let request = CreatePolicy {
        key,
        brand_id: client.brand().map(str::to_string),
    };
    let p: PolicyView = client.post(&path, &request).await?;
    if as_json {
        print_json(&Created {
            model: &p.model,
            key: &p.key,
            revision: p.revision,
        })
    } else {
        outln!(
            "Model {} now signs serials with key {} (serial policy revision {}).",
            p.model,
            p.key,
            p.revision
        )
    }
}

/// Lists serial-policy revisions, newest first per model.
pub async fn list(client: &Client, model: Option<String>, as_json: bool) -> Result<(), Error> {
    let path = match &model {
        Some(m) => format!("/v1/models/{}/serial-policies", path_segment(m)),
        None => "/v1/serial-policies".to_string(),
    };
    let policies: List<PolicyView> = client.get(&path).await?;
    print_rows(
        &policies.items,
        as_json,
        Clone::clone,
        &[
            "Model",
            "Revision",
            "Key",
            "Created",
            "Created by",
            "Active",
        ],
        |p| {
            vec![
                p.model.clone(),
                p.revision.to_string(),
                p.key.clone(),
                short_time(Some(p.created_at)),
                p.created_by.clone(),
                if p.active { "yes" } else { "" }.to_string(),
            ]
        },
        "No serial policies.",
    )
}
