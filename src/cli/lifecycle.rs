//! The verbs that change the state of what exists: `disable`/`enable` a key or a model,
//! `delete model`, `set api-key`, `revoke token`; and `list audit-log`, where each of those
//! changes is recorded. Each is one admin API call; `--json` prints the server's answer.

use hyper::Method;
use serde::Serialize;
use time::OffsetDateTime;

use super::Error;
use super::client::{Client, path_segment};
use super::output::{outln, print_json, print_rows, short_time};
use crate::admin_api::wire::{
    AuditEntryView, AuditQuery, Deleted, KeyView, List, ModelView, NewApiKey, Revoked,
};

/// What `disable` and `enable` act on.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// A signing key, by name or SHA3-384 id.
    Key,
    /// A model, by name.
    Model,
}

/// `disable key|model --json` and `enable key|model --json`.
#[derive(Serialize)]
struct Toggled<'a> {
    name: &'a str,
    enabled: bool,
}

/// Disables or enables a key (a disabled key signs nothing: its models answer 409) or a model
/// (its devices are refused with 403).
pub async fn set_enabled(
    client: &Client,
    target: Target,
    name: &str,
    enabled: bool,
    as_json: bool,
) -> Result<(), Error> {
    let action = if enabled { "enable" } else { "disable" };
    let (what, name, now) = match target {
        Target::Key => {
            let path = format!("/v1/keys/{}/{action}", path_segment(name));
            let k: KeyView = client.request(Method::POST, &path, &()).await?;
            ("Key", k.name, k.active)
        }
        Target::Model => {
            let path = format!("/v1/models/{}/{action}", path_segment(name));
            let m: ModelView = client.request(Method::POST, &path, &()).await?;
            ("Model", m.name, m.enabled)
        }
    };
    if as_json {
        return print_json(&Toggled {
            name: &name,
            enabled: now,
        });
    }
    let state = if now { "enabled" } else { "disabled" };
    outln!("{what} {name} is {state}.")
}

/// Deletes a model (refused once a serial was issued for it).
pub async fn delete_model(client: &Client, name: &str, as_json: bool) -> Result<(), Error> {
    let path = format!("/v1/models/{}", path_segment(name));
    let d: Deleted = client.request(Method::DELETE, &path, &()).await?;
    if as_json {
        return print_json(&d);
    }
    outln!("Deleted model {}.", d.deleted)
}

/// `set api-key --json`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ApiKeySet<'a> {
    name: &'a str,
    api_key: &'a str,
}

/// Gives a model a new API key: `api_key`, or a generated one when `None`.
pub async fn set_api_key(
    client: &Client,
    model: &str,
    api_key: Option<String>,
    as_json: bool,
) -> Result<(), Error> {
    let path = format!("/v1/models/{}/api-key", path_segment(model));
    let m: ModelView = client.post(&path, &NewApiKey { api_key }).await?;
    if as_json {
        return print_json(&ApiKeySet {
            name: &m.name,
            api_key: &m.api_key,
        });
    }
    outln!("Model {} now has API key {}", m.name, m.api_key)
}

/// Revokes an admin token by id (`list tokens` shows the ids).
pub async fn revoke_token(client: &Client, id: i64, as_json: bool) -> Result<(), Error> {
    let r: Revoked = client
        .request(Method::POST, &format!("/v1/tokens/{id}/revoke"), &())
        .await?;
    if as_json {
        return print_json(&r);
    }
    outln!("Revoked token {}.", r.revoked)
}

/// Lists the audit log, newest first: When, Actor, Action, Target.
pub async fn audit_log(
    client: &Client,
    since: Option<OffsetDateTime>,
    limit: Option<i64>,
    as_json: bool,
) -> Result<(), Error> {
    let query = AuditQuery { since, limit }.to_query();
    let path = if query.is_empty() {
        "/v1/audit-log".to_string()
    } else {
        format!("/v1/audit-log?{query}")
    };
    let entries: List<AuditEntryView> = client.get(&path).await?;
    print_rows(
        &entries.items,
        as_json,
        Clone::clone,
        &["When", "Actor", "Action", "Target"],
        |e| {
            vec![
                short_time(Some(e.at)),
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
            ]
        },
        "No audit entries.",
    )
}
