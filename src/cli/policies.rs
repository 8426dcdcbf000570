//! `create serial-policy` and `list serial-policies`.

use hyper::Method;
use serde_json::{Value, json};

use super::client::{Client, enc};
use super::output::{choose, print_json, print_table, s, short_time, table};

/// Appends a serial-policy revision (model -> key); asks for the model and key at a terminal
/// when missing.
pub async fn create(
    client: &Client,
    model: Option<String>,
    key: Option<String>,
    as_json: bool,
) -> Result<(), String> {
    let model = match model {
        Some(m) => m,
        None => {
            let models = client.get_json("/v1/models").await?;
            let choices: Vec<(String, String)> = models["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| (s(m, "name").to_string(), s(m, "name").to_string()))
                .collect();
            choose(None, "--model", "model", &choices)?
        }
    };
    let key = match key {
        Some(k) => k,
        None => {
            let keys = client.get_json("/v1/keys").await?;
            let choices: Vec<(String, String)> = keys["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|k| s(k, "status") == "ready" && k["active"].as_bool() == Some(true))
                .map(|k| {
                    (
                        s(k, "sha3-384").to_string(),
                        format!("{}  {}", s(k, "name"), s(k, "sha3-384")),
                    )
                })
                .collect();
            choose(None, "--key", "key", &choices)?
        }
    };
    let p = client
        .send_json(
            Method::POST,
            &format!("/v1/models/{}/serial-policies", enc(&model)),
            &json!({ "key": key }),
        )
        .await?;
    if as_json {
        print_json(&json!({"model": p["model"], "key": p["key"], "revision": p["revision"]}));
    } else {
        println!(
            "Model {} now signs serials with key {} (serial policy revision {}).",
            s(&p, "model"),
            s(&p, "key"),
            p["revision"]
        );
    }
    Ok(())
}

/// Lists serial-policy revisions, newest first per model.
pub async fn list(client: &Client, model: Option<String>, as_json: bool) -> Result<(), String> {
    let path = match &model {
        Some(m) => format!("/v1/models/{}/serial-policies", enc(m)),
        None => "/v1/serial-policies".to_string(),
    };
    let v = client.get_json(&path).await?;
    let items = v["items"].as_array().cloned().unwrap_or_default();
    if as_json {
        print_json(&Value::Array(items));
        return Ok(());
    }
    let mut t = table(&[
        "Model",
        "Revision",
        "Key",
        "Created",
        "Created by",
        "Active",
    ]);
    for p in &items {
        let revision = p["revision"].to_string();
        let active = if p["active"].as_bool() == Some(true) {
            "yes"
        } else {
            ""
        };
        t.add_row(vec![
            s(p, "model"),
            revision.as_str(),
            s(p, "key"),
            short_time(s(p, "created-at")).as_str(),
            s(p, "created-by"),
            active,
        ]);
    }
    print_table(&t, "No serial policies.");
    Ok(())
}
