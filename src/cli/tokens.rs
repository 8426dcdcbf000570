//! `create token` and `list tokens`: admin API tokens (a secret is shown once, at creation).

use hyper::Method;
use serde_json::{Value, json};

use super::client::Client;
use super::output::{print_json, print_table, s, short_time, table};

/// Creates a token with `role` (`admin` or `read-only`), printed once.
pub async fn create(
    client: &Client,
    name: &str,
    role: &str,
    expires_at: Option<String>,
    as_json: bool,
) -> Result<(), String> {
    let mut body = json!({ "name": name, "role": role });
    if let Some(e) = expires_at {
        body["expires-at"] = json!(e);
    }
    let t = client.send_json(Method::POST, "/v1/tokens", &body).await?;
    if as_json {
        print_json(&json!({"name": t["name"], "role": t["role"], "token": t["token"]}));
    } else {
        println!(
            "Created {} token {} (shown only now; keep it secret):\n\n    {}",
            s(&t, "role"),
            s(&t, "name"),
            s(&t, "token")
        );
    }
    Ok(())
}

/// Lists tokens (never their secrets).
pub async fn list(client: &Client, as_json: bool) -> Result<(), String> {
    let v = client.get_json("/v1/tokens").await?;
    let items = v["items"].as_array().cloned().unwrap_or_default();
    if as_json {
        print_json(&Value::Array(items));
        return Ok(());
    }
    let mut t = table(&["Id", "Name", "Role", "Expires", "Last used", "State"]);
    for k in &items {
        let id = k["id"].to_string();
        let state = if k["revoked"].as_bool() == Some(true) {
            "revoked"
        } else {
            "active"
        };
        t.add_row(vec![
            id.as_str(),
            s(k, "name"),
            s(k, "role"),
            short_time(s(k, "expires-at")).as_str(),
            short_time(s(k, "last-used-at")).as_str(),
            state,
        ]);
    }
    print_table(&t, "No tokens.");
    Ok(())
}
