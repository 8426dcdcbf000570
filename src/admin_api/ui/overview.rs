//! The overview: serials per minute over the last hour (an SVG bar chart), today's serials per
//! model, refusals by reason, the HSM tokens, Postgres and the signing queue.
//!
//! The page is rendered whole on the server; `/ui/overview.json` answers the same
//! [`Figures`], which `app.js` polls every few seconds to redraw the chart and the tables in
//! place. Counts come from the signing log (every instance's serials); refusals, HSM tokens and
//! queue figures come from this process's metrics registry (this instance's, since it started).

use std::collections::BTreeMap;
use std::time::Instant;

use maud::{Markup, html};
use serde::Serialize;
use time::OffsetDateTime;

use super::Viewer;
use super::pages::{frame, table};
use crate::admin_api::error::ApiResult;
use crate::admin_api::{Answer, Shared, ok};
use hyper::StatusCode;

/// Minutes the chart shows.
pub const MINUTES: usize = 60;

/// What the overview shows, as the page renders it and `/ui/overview.json` answers it.
#[derive(Debug, Default, Serialize)]
pub struct Figures {
    /// Serials per minute, oldest first, the last being the current minute.
    pub per_minute: Vec<i64>,
    /// Single figures by name (`data-live` elements).
    pub values: BTreeMap<&'static str, String>,
    /// Tables by id, rows of text cells (`data-live-table` tables).
    pub tables: BTreeMap<&'static str, Vec<Vec<String>>>,
}

/// One Prometheus sample: name, labels, value.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The samples of Prometheus' text format (comments and malformed lines skipped).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    let v = v.trim_matches('"').replace("\\\"", "\"");
                    Some((k.trim().to_string(), v))
                })
                .collect();
            Some(Sample {
                name: name.to_string(),
                labels,
                value,
            })
        })
        .collect()
}

/// Sums of `name` by label `by`, largest first.
fn by_label(samples: &[Sample], name: &str, by: &str) -> Vec<Vec<String>> {
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == name) {
        *sums.entry(s.label(by).to_string()).or_default() += s.value;
    }
    let mut rows: Vec<(String, f64)> = sums.into_iter().filter(|(_, n)| *n > 0.0).collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    rows.into_iter()
        .map(|(k, n)| vec![k, format!("{n:.0}")])
        .collect()
}

fn one(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && label.is_none_or(|(k, v)| s.label(k) == v))
        .map(|s| s.value)
}

/// Gathers the figures `v` may see (a brand-limited token: its brands' serials only).
pub async fn figures(s: &Shared, v: &Viewer) -> ApiResult<Figures> {
    let brands = v.brands();
    let mut f = Figures::default();
    let started = Instant::now();
    let per_minute = s.store.issued_per_minute(brands).await?;
    let db_ms = started.elapsed().as_secs_f64() * 1000.0;
    let now = OffsetDateTime::now_utc();
    let this_minute = now.unix_timestamp().div_euclid(60);
    f.per_minute = vec![0; MINUTES];
    for m in &per_minute {
        let ago = this_minute - m.minute.unix_timestamp().div_euclid(60);
        if let Ok(ago) = usize::try_from(ago)
            && ago < MINUTES
        {
            f.per_minute[MINUTES - 1 - ago] += m.count;
        }
    }
    let today = s.store.issued_today_by_model(brands).await?;
    let last_hour: i64 = f.per_minute.iter().sum();
    let today_total: i64 = today.iter().map(|m| m.count).sum();
    f.values.insert("last-hour", last_hour.to_string());
    f.values
        .insert("this-minute", f.per_minute[MINUTES - 1].to_string());
    f.values.insert("today", today_total.to_string());
    f.values
        .insert("postgres", format!("up, answered in {db_ms:.0} ms"));
    f.values.insert(
        "hsm",
        if s.backend.hsm_healthy() {
            "up"
        } else {
            "down"
        }
        .to_string(),
    );
    f.values.insert(
        "updated",
        format!(
            "{:02}:{:02}:{:02} UTC",
            now.hour(),
            now.minute(),
            now.second()
        ),
    );
    f.tables.insert(
        "models-today",
        today
            .iter()
            .map(|m| vec![m.brand_id.clone(), m.model.clone(), m.count.to_string()])
            .collect(),
    );
    let text = s.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    let samples = samples(&text);
    f.tables.insert(
        "refusals",
        by_label(&samples, "serials_refused_total", "reason"),
    );
    f.tables.insert(
        "signer-refusals",
        by_label(&samples, "signer_refused_total", "reason"),
    );
    // The pool's own view when the HSM is open (sessions included), else the metrics'.
    let pools = s.backend.hsm_tokens();
    let mut tokens: Vec<Vec<String>> = if pools.is_empty() {
        samples
            .iter()
            .filter(|x| x.name == "hsm_token_up")
            .map(|x| {
                let label = x.label("token");
                let recoveries = one(
                    &samples,
                    "hsm_token_recoveries_total",
                    Some(("token", label)),
                )
                .unwrap_or(0.0);
                let stuck = one(&samples, "hsm_calls_stuck", Some(("token", label)));
                vec![
                    label.to_string(),
                    if x.value > 0.0 { "up" } else { "down" }.to_string(),
                    "–".to_string(),
                    format!("{recoveries:.0}"),
                    stuck.map_or("–".to_string(), |n| format!("{n:.0}")),
                ]
            })
            .collect()
    } else {
        pools
            .iter()
            .map(|t| {
                vec![
                    t.label.clone(),
                    if t.up { "up" } else { "down" }.to_string(),
                    format!(
                        "{} of {} open, {} idle, {} waiting",
                        t.sessions, t.max_sessions, t.available, t.waiting
                    ),
                    t.recoveries.to_string(),
                    t.stuck_calls.to_string(),
                ]
            })
            .collect()
    };
    tokens.sort();
    f.tables.insert("hsm-tokens", tokens);
    let depth = one(&samples, "signer_queue_depth", None).unwrap_or(0.0);
    f.values.insert("queue-depth", format!("{depth:.0}"));
    let wait = |q: &str| {
        one(&samples, "signer_queue_wait_seconds", Some(("quantile", q)))
            .map_or("–".to_string(), |s| format!("{:.1} ms", s * 1000.0))
    };
    f.values.insert(
        "queue-wait",
        format!("p50 {} · p99 {}", wait("0.5"), wait("0.99")),
    );
    Ok(f)
}

/// The chart: one bar per minute, scaled to the busiest minute. `app.js` draws the same.
fn chart(per_minute: &[i64]) -> Markup {
    let max = per_minute.iter().copied().max().unwrap_or(0).max(1);
    let total: i64 = per_minute.iter().sum();
    html! {
        svg #chart viewBox="0 0 600 160" role="img" preserveAspectRatio="none"
            aria-label=(format!("Serials per minute over the last hour: {total} in all")) {
            g #bars {
                @for (i, n) in per_minute.iter().enumerate() {
                    @let h = (*n as f64 / max as f64 * 150.0).round();
                    rect x=(i * 10 + 1) y=(160.0 - h) width="8" height=(h) {
                        title { (n) " serials, " (MINUTES - 1 - i) " min ago" }
                    }
                }
            }
        }
    }
}

fn value(f: &Figures, name: &str) -> Markup {
    html! { span data-live=(name) { (f.values.get(name).map_or("", String::as_str)) } }
}

fn rows<'a>(f: &'a Figures, name: &str) -> &'a [Vec<String>] {
    f.tables.get(name).map_or(&[], Vec::as_slice)
}

/// `GET /ui/`.
pub async fn page_of(s: &Shared, v: &Viewer) -> ApiResult<Markup> {
    let f = figures(s, v).await?;
    Ok(frame(
        Some(v),
        "/ui/",
        "Overview",
        html! {
            section.cards aria-label="Figures" {
                div.card { h2 { "Last hour" } p.big #last-hour { (value(&f, "last-hour")) } }
                div.card { h2 { "This minute" } p.big { (value(&f, "this-minute")) } }
                div.card { h2 { "Today (UTC)" } p.big #today { (value(&f, "today")) } }
                div.card { h2 { "Postgres" } p { (value(&f, "postgres")) } }
                div.card { h2 { "HSM" } p { (value(&f, "hsm")) } }
                div.card {
                    h2 { "Signing queue" }
                    p { "depth " (value(&f, "queue-depth")) }
                    p { "wait " (value(&f, "queue-wait")) }
                }
            }
            section.chart aria-label="Serials per minute" {
                h2 { "Serials per minute, last hour" }
                (chart(&f.per_minute))
                p.hint #live-status data-live-source="/ui/overview.json" {
                    "Updated " (value(&f, "updated")) "; refreshes every few seconds."
                }
            }
            div.grid {
                (table("models-today", "Today's serials per model",
                    &["Brand", "Model", "Serials"], rows(&f, "models-today")))
                (table("refusals", "Refused serial requests by reason (this instance)",
                    &["Reason", "Count"], rows(&f, "refusals")))
                (table("signer-refusals", "Signer refusals (503) by reason (this instance)",
                    &["Reason", "Count"], rows(&f, "signer-refusals")))
                (table("hsm-tokens", "HSM tokens (this instance)",
                    &["Token", "State", "Sessions", "Recoveries", "Calls stuck"], rows(&f, "hsm-tokens")))
            }
        },
    ))
}

/// `GET /ui/`.
pub async fn page(s: &Shared, v: &Viewer) -> ApiResult<Answer> {
    Ok(super::page(StatusCode::OK, page_of(s, v).await?))
}

/// `GET /ui/overview.json`.
pub async fn json(s: &Shared, v: &Viewer) -> ApiResult<Answer> {
    ok(&figures(s, v).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_is_read() {
        let text = "# TYPE x counter\n\
            serials_refused_total{model=\"m\",reason=\"bad-request-id\"} 3\n\
            serials_refused_total{model=\"n\",reason=\"bad-request-id\"} 2\n\
            serials_refused_total{model=\"n\",reason=\"conflict\"} 1\n\
            signer_queue_depth 4\n\
            signer_queue_wait_seconds{quantile=\"0.5\"} 0.002\n";
        let s = samples(text);
        assert_eq!(s.len(), 5);
        assert_eq!(
            by_label(&s, "serials_refused_total", "reason"),
            vec![
                vec!["bad-request-id".to_string(), "5".into()],
                vec!["conflict".into(), "1".into()]
            ]
        );
        assert_eq!(one(&s, "signer_queue_depth", None), Some(4.0));
        assert_eq!(
            one(&s, "signer_queue_wait_seconds", Some(("quantile", "0.5"))),
            Some(0.002)
        );
    }
}
