//! `list serials` and `export signing-log`.

use super::Error;
use super::client::Client;
use super::output::{print_rows, short_time};
use crate::admin_api::wire::{
    ExportFormat, ExportQuery, IssuanceView, LogQuery, PageQuery, SigningLogPage,
};

/// Lists issued serials, newest first, following pages up to `limit` rows.
pub async fn list(
    client: &Client,
    filter: LogQuery,
    limit: usize,
    as_json: bool,
) -> Result<(), Error> {
    let mut rows: Vec<IssuanceView> = Vec::new();
    let mut query = PageQuery {
        filter,
        ..PageQuery::default()
    };
    while rows.len() < limit {
        let page = (limit - rows.len()).min(PageQuery::MAX_LIMIT as usize);
        query.limit = Some(page as i64);
        let answer: SigningLogPage = client
            .get(&format!("/v1/signing-log?{}", query.to_query()))
            .await?;
        rows.extend(answer.items);
        match answer.next_before {
            Some(b) => query.before = Some(b),
            None => break,
        }
    }
    print_rows(
        &rows,
        as_json,
        Clone::clone,
        &[
            "Model",
            "Serial",
            "Revision",
            "Device key",
            "Signing key",
            "Issued",
        ],
        |r| {
            vec![
                r.model.clone(),
                r.serial.clone(),
                r.revision.to_string(),
                r.device_key.clone(),
                r.signing_key.clone(),
                short_time(Some(r.issued_at)),
            ]
        },
        "No serials.",
    )
}

/// Streams the whole signing log (filtered) to stdout as CSV or JSON.
pub async fn export(client: &Client, format: ExportFormat, filter: LogQuery) -> Result<(), Error> {
    let query = ExportQuery { format, filter };
    let path = format!("/v1/signing-log/export?{}", query.to_query());
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    client.download(&path, &mut out).await
}
