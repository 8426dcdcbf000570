//! What the operator dashboard counts in the signing log: serials per minute over the last
//! hour and today's serials per model, each over every brand or only some.

use time::OffsetDateTime;

use super::{Result, Store};

/// Serials issued in one minute.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct MinuteCount {
    /// The minute's start (UTC).
    pub minute: OffsetDateTime,
    /// Serials issued in it.
    pub count: i64,
}

/// Serials issued for one model today (since 00:00 UTC).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ModelCount {
    /// The model's brand.
    pub brand_id: String,
    /// The model's name.
    pub model: String,
    /// Serials issued today.
    pub count: i64,
}

impl Store {
    /// Serials per minute over the last hour, oldest first; minutes without one are left out.
    /// `brands` limits the count to those brands.
    pub async fn issued_per_minute(&self, brands: Option<&[String]>) -> Result<Vec<MinuteCount>> {
        Ok(sqlx::query_as(
            "SELECT date_trunc('minute', issued_at) AS minute, count(*) AS count \
             FROM signing_log \
             WHERE issued_at >= date_trunc('minute', now()) - interval '59 minutes' \
               AND ($1::text[] IS NULL OR brand_id = ANY($1)) \
             GROUP BY 1 ORDER BY 1",
        )
        .bind(brands)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Today's serials (since 00:00 UTC) per model, busiest first.
    pub async fn issued_today_by_model(
        &self,
        brands: Option<&[String]>,
    ) -> Result<Vec<ModelCount>> {
        Ok(sqlx::query_as(
            "SELECT brand_id, model_name AS model, count(*) AS count FROM signing_log \
             WHERE issued_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' \
               AND ($1::text[] IS NULL OR brand_id = ANY($1)) \
             GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
        )
        .bind(brands)
        .fetch_all(&self.pool)
        .await?)
    }
}
