//! `list serials` and `export signing-log`.

use serde_json::Value;

use super::client::{Client, enc};
use super::output::{print_json, print_table, s, short_time, table};

fn filter_query(model: &Option<String>, serial: &Option<String>) -> String {
    let mut q = Vec::new();
    if let Some(m) = model {
        q.push(format!("model={}", enc(m)));
    }
    if let Some(p) = serial {
        q.push(format!("serial={}", enc(p)));
    }
    q.join("&")
}

/// Lists issued serials, newest first, following pages up to `limit` rows.
pub async fn list(
    client: &Client,
    model: Option<String>,
    serial: Option<String>,
    limit: usize,
    as_json: bool,
) -> Result<(), String> {
    let filter = filter_query(&model, &serial);
    let mut rows: Vec<Value> = Vec::new();
    let mut before: Option<i64> = None;
    while rows.len() < limit {
        let page = (limit - rows.len()).min(1000);
        let mut path = format!("/v1/signing-log?limit={page}");
        if !filter.is_empty() {
            path.push('&');
            path.push_str(&filter);
        }
        if let Some(b) = before {
            path.push_str(&format!("&before={b}"));
        }
        let v = client.get_json(&path).await?;
        rows.extend(v["items"].as_array().cloned().unwrap_or_default());
        match v["next-before"].as_i64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    if as_json {
        print_json(&Value::Array(rows));
        return Ok(());
    }
    let mut t = table(&[
        "Model",
        "Serial",
        "Revision",
        "Device key",
        "Signing key",
        "Issued",
    ]);
    for r in &rows {
        let rev = r["revision"].to_string();
        t.add_row(vec![
            s(r, "model"),
            s(r, "serial"),
            rev.as_str(),
            s(r, "device-key"),
            s(r, "signing-key"),
            short_time(s(r, "issued-at")).as_str(),
        ]);
    }
    print_table(&t, "No serials.");
    Ok(())
}

/// Streams the whole signing log (filtered) to stdout as CSV or JSON.
pub async fn export(
    client: &Client,
    format: &str,
    model: Option<String>,
    serial: Option<String>,
) -> Result<(), String> {
    let filter = filter_query(&model, &serial);
    let mut path = format!("/v1/signing-log/export?format={}", enc(format));
    if !filter.is_empty() {
        path.push('&');
        path.push_str(&filter);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    client.download(&path, &mut out).await
}
