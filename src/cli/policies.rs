//! `create serial-policy` and `list serial-policies`.

use serde::Serialize;

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

/// The model, asked for at a terminal (from the server's models) when not given.
async fn pick_model(client: &Client, model: Option<String>) -> Result<String, Error> {
    if let Some(m) = model {
        return Ok(m);
    }
    let models: List<ModelView> = client.get("/v1/models").await?;
    let choices: Vec<(String, String)> = models
        .items
        .into_iter()
        .map(|m| (m.name.clone(), m.name))
        .collect();
    choose(None, "--model", "model", &choices)
}

/// The key, asked for at a terminal (from the ready, active keys) when not given.
async fn pick_key(client: &Client, key: Option<String>) -> Result<String, Error> {
    if let Some(k) = key {
        return Ok(k);
    }
    let keys: List<KeyView> = client.get("/v1/keys").await?;
    let choices: Vec<(String, String)> = keys
        .items
        .into_iter()
        .filter(|k| k.status == KeyStatus::Ready && k.active)
        .map(|k| {
            let id = k.sha3_384.unwrap_or_default();
            (id.clone(), format!("{}  {id}", k.name))
        })
        .collect();
    choose(None, "--key", "key", &choices)
}

/// Appends a serial-policy revision (model -> key); asks for the model and key at a terminal
/// when missing.
pub async fn create(
    client: &Client,
    model: Option<String>,
    key: Option<String>,
    as_json: bool,
) -> Result<(), Error> {
    let model = pick_model(client, model).await?;
    let key = pick_key(client, key).await?;
    let path = format!("/v1/models/{}/serial-policies", path_segment(&model));
    let request = CreatePolicy {
        key,
        brand_id: None,
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
