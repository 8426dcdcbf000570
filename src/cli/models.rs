//! `create model` and `list models`.

use serde::Serialize;

use super::client::Client;
use super::output::{ask, outln, print_json, print_rows};
use super::{Error, ModelSettings};
use crate::admin_api::wire::{CreateModel, List, ModelView};

/// `create model --json`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Created<'a> {
    name: &'a str,
    api_key: &'a str,
}

/// A row of `list models --json`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Listed<'a> {
    name: &'a str,
    api_key: &'a str,
    key: Option<&'a str>,
    revision: Option<i32>,
    enabled: bool,
}

/// Creates a model; asks for the API key at a terminal when none is given (an empty answer
/// generates a strong one).
pub async fn create(
    client: &Client,
    name: Option<String>,
    api_key: Option<String>,
    generate: bool,
    settings: &ModelSettings,
    as_json: bool,
) -> Result<(), Error> {
    let name = ask(name, "NAME", "Model name", None)?;
    let api_key = if generate {
        None
    } else {
        let answer = ask(
            api_key,
            "--api-key (or --generate-api-key)",
            "API key (at least 16 characters; empty to generate one)",
            Some(""),
        )?;
        (!answer.is_empty()).then_some(answer)
    };
    let request = CreateModel {
        name,
        api_key,
        rate_limit: settings.rate_limit,
        rate_limit_burst: settings.rate_limit_burst,
        duplicate_policy: settings.duplicate_policy,
        serial_generation: settings.serial_generation,
        serial_prefix: settings.serial_prefix.clone(),
        brand_id: client.brand().map(str::to_string),
    };
    let m: ModelView = client.post("/v1/models", &request).await?;
    if as_json {
        print_json(&Created {
            name: &m.name,
            api_key: &m.api_key,
        })
    } else {
        outln!("Created model {} with API key {}", m.name, m.api_key)
    }
}

/// Lists models: Name, API key, Active serial signing key (its name, as store-admin shows it;
/// its SHA3-384 with `long` and in `--json`).
pub async fn list(client: &Client, long: bool, as_json: bool) -> Result<(), Error> {
    let models: List<ModelView> = client.get("/v1/models").await?;
    print_rows(
        &models.items,
        as_json,
        |m| Listed {
            name: &m.name,
            api_key: &m.api_key,
            key: m.active_policy.as_ref().map(|p| p.key.as_str()),
            revision: m.active_policy.as_ref().map(|p| p.revision),
            enabled: m.enabled,
        },
        &["Name", "API key", "Active serial signing key"],
        |m| {
            let name = if m.enabled {
                m.name.clone()
            } else {
                format!("{} (disabled)", m.name)
            };
            let key = m.active_policy.as_ref().map_or("-", |p| {
                if long {
                    p.key.as_str()
                } else {
                    p.key_name.as_str()
                }
            });
            vec![name, m.api_key.clone(), key.to_string()]
        },
        "No models.",
    )
}
