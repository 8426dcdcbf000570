//! The query strings of the admin API: the signing log's filter and paging, the export's
//! format, the audit log's length. Each is a struct the server reads with `from_query` and
//! the CLI writes with `to_query`; parameters it does not know are ignored.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::UnknownChoice;

/// A bad query parameter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Not an RFC 3339 time.
    #[error("{name} must be an RFC 3339 time, got {got:?}")]
    NotATime {
        /// The parameter.
        name: &'static str,
        /// What was given.
        got: String,
    },
    /// Not a number.
    #[error("\"{name}\" must be {what}")]
    NotANumber {
        /// The parameter.
        name: &'static str,
        /// What it must be (`a row id`, `a number`).
        what: &'static str,
    },
    /// Not one of the choices.
    #[error(transparent)]
    Choice(#[from] UnknownChoice),
}

/// A query string, decoded (`+` and `%XX`); a repeated parameter keeps its last value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Decodes `raw` (the part after `?`).
    pub fn parse(raw: &str) -> Self {
        Query(
            form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// Sets `name` to `value` (the router names a brand-limited token's only brand).
    pub fn set(&mut self, name: &str, value: &str) {
        self.0.insert(name.to_string(), value.to_string());
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The value of `name`, unless empty.
    fn non_empty(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).map(str::to_string)
    }

    fn time(&self, name: &'static str) -> Result<Option<OffsetDateTime>, QueryError> {
        self.get(name)
            .map(|v| {
                OffsetDateTime::parse(v, &Rfc3339).map_err(|_| QueryError::NotATime {
                    name,
                    got: v.to_string(),
                })
            })
            .transpose()
    }

    fn number(&self, name: &'static str, what: &'static str) -> Result<Option<i64>, QueryError> {
        self.get(name)
            .map(|v| v.parse().map_err(|_| QueryError::NotANumber { name, what }))
            .transpose()
    }
}

/// Builds a query string (`a=b&c=d`, form-encoded), empty when nothing is set.
#[derive(Default)]
struct QueryWriter(Option<form_urlencoded::Serializer<'static, String>>);

impl QueryWriter {
    fn put(&mut self, name: &str, value: Option<impl fmt::Display>) -> &mut Self {
        if let Some(v) = value {
            self.0
                .get_or_insert_with(|| form_urlencoded::Serializer::new(String::new()))
                .append_pair(name, &v.to_string());
        }
        self
    }

    fn time(&mut self, name: &str, value: Option<OffsetDateTime>) -> &mut Self {
        self.put(name, value.and_then(|t| t.format(&Rfc3339).ok()))
    }

    fn finish(&mut self) -> String {
        self.0.take().map(|mut s| s.finish()).unwrap_or_default()
    }
}

/// Which rows of the signing log (`GET /v1/signing-log` and its export).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only this brand.
    pub brand_id: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only serials starting with this.
    pub serial: Option<String>,
    /// Only rows signed at or after this.
    pub since: Option<OffsetDateTime>,
    /// Only rows signed before this.
    pub until: Option<OffsetDateTime>,
    /// Only serials for this device key (SHA3-384 id).
    pub device_key: Option<String>,
}

impl LogQuery {
    /// From `brand-id`, `model`, `serial`, `since`, `until` and `device-key` (empty `model`,
    /// `serial` and `device-key` are no filter).
    pub fn from_query(q: &Query) -> Result<Self, QueryError> {
        Ok(LogQuery {
            brand_id: q.get("brand-id").map(str::to_string),
            model: q.non_empty("model"),
            serial: q.non_empty("serial"),
            since: q.time("since")?,
            until: q.time("until")?,
            device_key: q.non_empty("device-key"),
        })
    }

    fn write(&self, w: &mut QueryWriter) {
        w.put("brand-id", self.brand_id.as_deref())
            .put("model", self.model.as_deref())
            .put("serial", self.serial.as_deref())
            .time("since", self.since)
            .time("until", self.until)
            .put("device-key", self.device_key.as_deref());
    }
}

/// `GET /v1/signing-log?...&before=&limit=`: one page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageQuery {
    /// Which rows.
    pub filter: LogQuery,
    /// Only rows older than this row id (the previous page's `next-before`).
    pub before: Option<i64>,
    /// At most this many rows (100 when absent; 1 to 1000).
    pub limit: Option<i64>,
}

impl PageQuery {
    /// Rows per page when no limit is asked for.
    pub const DEFAULT_LIMIT: i64 = 100;
    /// Most rows per page.
    pub const MAX_LIMIT: i64 = 1000;

    /// From the filter's parameters, `before` and `limit`.
    pub fn from_query(q: &Query) -> Result<Self, QueryError> {
        Ok(PageQuery {
            filter: LogQuery::from_query(q)?,
            before: q.number("before", "a row id")?,
            limit: q.number("limit", "a number")?,
        })
    }

    /// The page size the server uses.
    pub fn page_size(&self) -> i64 {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .clamp(1, Self::MAX_LIMIT)
    }

    /// The query string.
    pub fn to_query(&self) -> String {
        let mut w = QueryWriter::default();
        w.put("limit", self.limit);
        self.filter.write(&mut w);
        w.put("before", self.before).finish()
    }
}

/// The export's format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON array of rows with their assertions (the default).
    #[default]
    Json,
    /// RFC 4180 CSV with a header line.
    Csv,
}

impl ExportFormat {
    /// Every format.
    pub const ALL: &'static [ExportFormat] = &[ExportFormat::Csv, ExportFormat::Json];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
        }
    }

    /// The wire names, for CLI value parsers.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|f| f.as_str()).collect()
    }

    /// The answer's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Json => "application/json",
        }
    }
}

impl FromStr for ExportFormat {
    type Err = UnknownChoice;

    fn from_str(s: &str) -> Result<Self, UnknownChoice> {
        Self::ALL
            .iter()
            .copied()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownChoice {
                what: "format",
                choices: "csv or json",
                got: s.to_string(),
            })
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `GET /v1/signing-log/export?format=&...`: the whole filtered log, streamed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportQuery {
    /// CSV or JSON.
    pub format: ExportFormat,
    /// Which rows.
    pub filter: LogQuery,
}

impl ExportQuery {
    /// From `format` and the filter's parameters.
    pub fn from_query(q: &Query) -> Result<Self, QueryError> {
        Ok(ExportQuery {
            format: q
                .get("format")
                .map(str::parse)
                .transpose()?
                .unwrap_or_default(),
            filter: LogQuery::from_query(q)?,
        })
    }

    /// The query string.
    pub fn to_query(&self) -> String {
        let mut w = QueryWriter::default();
        w.put("format", Some(self.format));
        self.filter.write(&mut w);
        w.finish()
    }
}

/// `GET /v1/audit-log?since=&limit=`: the newest entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries at or after this.
    pub since: Option<OffsetDateTime>,
    /// At most this many (100 when absent or not a number; 1 to 1000).
    pub limit: Option<i64>,
}

impl AuditQuery {
    /// From `since` (RFC 3339, 400 otherwise) and `limit` (a bad value counts as absent).
    pub fn from_query(q: &Query) -> Result<Self, QueryError> {
        Ok(AuditQuery {
            since: q.time("since")?,
            limit: q.get("limit").and_then(|l| l.parse().ok()),
        })
    }

    /// The query string.
    pub fn to_query(&self) -> String {
        let mut w = QueryWriter::default();
        w.time("since", self.since).put("limit", self.limit);
        w.finish()
    }

    /// The number of entries the server answers.
    pub fn size(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_round_trip() {
        let q = PageQuery {
            filter: LogQuery {
                model: Some("a b&c".into()),
                since: Some(time::macros::datetime!(2026-01-02 03:04:05 UTC)),
                ..LogQuery::default()
            },
            before: Some(7),
            limit: Some(5),
        };
        let text = q.to_query();
        assert_eq!(
            text,
            "limit=5&model=a+b%26c&since=2026-01-02T03%3A04%3A05Z&before=7"
        );
        assert_eq!(PageQuery::from_query(&Query::parse(&text)).unwrap(), q);
        assert_eq!(
            ExportQuery::from_query(&Query::parse("format=xml"))
                .unwrap_err()
                .to_string(),
            "format must be csv or json, not \"xml\""
        );
        assert_eq!(
            PageQuery::from_query(&Query::parse("before=x"))
                .unwrap_err()
                .to_string(),
            "\"before\" must be a row id"
        );
        assert_eq!(Query::parse("a=%2Fx&b=100%").get("b"), Some("100%"));
        assert_eq!(Query::parse("a=%2Fx").get("a"), Some("/x"));
    }
}
