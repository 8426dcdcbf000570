//! `create model` and `list models`.

use hyper::Method;
use serde_json::{Value, json};

use super::client::Client;
use super::output::{ask, print_json, print_table, s, table};

/// Creates a model; asks for the API key at a terminal when none is given (an empty answer
/// generates a strong one).
pub async fn create(
    client: &Client,
    name: Option<String>,
    api_key: Option<String>,
    generate: bool,
    as_json: bool,
) -> Result<(), String> {
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
    let mut body = json!({ "name": name });
    if let Some(k) = api_key {
        body["api-key"] = json!(k);
    }
    let m = client.send_json(Method::POST, "/v1/models", &body).await?;
    if as_json {
        print_json(&json!({"name": m["name"], "api-key": m["api-key"]}));
    } else {
        println!(
            "Created model {} with API key {}",
            s(&m, "name"),
            s(&m, "api-key")
        );
    }
    Ok(())
}

/// Lists models: Name, API key, Active serial signing key.
pub async fn list(client: &Client, as_json: bool) -> Result<(), String> {
    let v = client.get_json("/v1/models").await?;
    let items = v["items"].as_array().cloned().unwrap_or_default();
    if as_json {
        let out: Vec<Value> = items
            .iter()
            .map(|m| {
                json!({"name": m["name"], "api-key": m["api-key"],
                       "key": m["active-policy"]["key"], "revision": m["active-policy"]["revision"],
                       "enabled": m["enabled"]})
            })
            .collect();
        print_json(&Value::Array(out));
        return Ok(());
    }
    let mut t = table(&["Name", "API key", "Active serial signing key"]);
    for m in &items {
        let key = m["active-policy"]["key"].as_str().unwrap_or("-");
        let name = if m["enabled"].as_bool() == Some(false) {
            format!("{} (disabled)", s(m, "name"))
        } else {
            s(m, "name").to_string()
        };
        t.add_row(vec![name.as_str(), s(m, "api-key"), key]);
    }
    print_table(&t, "No models.");
    Ok(())
}
