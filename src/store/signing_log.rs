//! The signing log: every serial that left the server, recorded before the answer.
//!
//! `UNIQUE (request_id)` and `UNIQUE (brand_id, model_name, serial, revision)` make a duplicate
//! issuance impossible whatever the callers do. [`Store::record_issuances`] commits many rows
//! in one transaction (group commit) with `INSERT ... ON CONFLICT DO NOTHING` and looks up the
//! row that won when one did not insert: no check-then-insert race.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use time::OffsetDateTime;

use super::{Result, Store, StoreError, chain, is_constraint_violation};
use crate::domain::{ExportedIssuance, Issuance, LoggedIssuance, RecordOutcome};
use crate::evidence::chain::{Chain, ChainHash, Head, signing_row_bytes};

/// Filters for listing and exporting the signing log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Only this brand.
    pub brand_id: Option<String>,
    /// Only this model name.
    pub model: Option<String>,
    /// Only serials starting with this.
    pub serial_prefix: Option<String>,
    /// Only issued at or after this.
    pub since: Option<OffsetDateTime>,
    /// Only issued before this.
    pub until: Option<OffsetDateTime>,
    /// Only serials for this device key (its SHA3-384 id).
    pub device_key: Option<String>,
}

const COLUMNS: &str = "id, brand_id, model_id, model_name, serial, revision, device_key_id, \
                       request_id, signing_key_id, instance, issued_at, serial_assertion, \
                       original_serial, original_serial_id";

const FILTER: &str = "($1::text IS NULL OR brand_id = $1) \
     AND ($2::text IS NULL OR model_name = $2) \
     AND ($3::text IS NULL OR starts_with(serial, $3)) \
     AND ($4::timestamptz IS NULL OR issued_at >= $4) \
     AND ($5::timestamptz IS NULL OR issued_at < $5) \
     AND ($6::text IS NULL OR device_key_id = $6)";

/// Row id and time of a row the batch insert wrote, by request-id.
#[derive(sqlx::FromRow)]
struct Written {
    id: i64,
    request_id: String,
    issued_at: OffsetDateTime,
}

impl Written {
    /// The rows a batch INSERT wrote, by request-id (unique among a batch's candidates, so
    /// it names the inserted rows).
    fn by_request_id(written: Vec<Written>) -> HashMap<String, Written> {
        written
            .into_iter()
            .map(|w| (w.request_id.clone(), w))
            .collect()
    }

    /// `r` recorded as this row.
    fn inserted(self, r: &Issuance) -> RecordOutcome {
        RecordOutcome::Inserted(LoggedIssuance {
            id: self.id,
            issued_at: self.issued_at,
            issuance: r.clone(),
        })
    }
}

/// Whether `e` says the connection itself is gone, not that the statement was refused: an
/// I/O or protocol failure, or Postgres' connection-exception class (08) or its "terminating
/// connection" codes (57P01 a terminated backend or fast shutdown, 57P02 a crash, 57P03 not
/// accepting connections yet, 57P05 idle-session timeout), which it sends on an idle
/// connection before closing it and sqlx reads on the next statement.
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        _ => false,
    }
}

/// A revision as stored (`INTEGER`).
fn stored_revision(r: &Issuance) -> Result<i32> {
    i32::try_from(r.revision).map_err(|_| {
        StoreError::Invalid(
            format!(
                "revision {} of serial {:?} is out of range",
                r.revision, r.serial
            )
            .into(),
        )
    })
}

/// The group commit's statement: the chain head moved to `$16`/`$17` in a CTE (with more
/// conditions after `WHERE chain = ...` from `$cond`), and the batch inserted from arrays
/// `$1`..`$15` (`$13`: the time recorded), filtered by `$filter`, in request-id order, with
/// `$tail` after. (A macro, so that both forms are `&'static str`: prepared and cached.)
macro_rules! insert_batch {
    ($cond:literal, $filter:literal, $tail:literal) => {
        concat!(
            "WITH head AS (UPDATE log_chain_heads SET seq = $16, hash = $17, updated_at = now() \
               WHERE chain = 'signing-log' ",
            $cond,
            ") \
             INSERT INTO signing_log (brand_id, model_id, model_name, serial, revision, \
               device_key_id, request_id, signing_key_id, instance, serial_assertion, \
               original_serial, original_serial_id, issued_at, chain_seq, chain_hash) \
             SELECT t.brand_id, t.model_id, t.model_name, t.serial, t.revision, \
               t.device_key_id, t.request_id, t.signing_key_id, t.instance, t.serial_assertion, \
               t.original_serial, t.original_serial_id, $13, t.chain_seq, t.chain_hash \
             FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::int4[], \
               $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
               $12::int8[], $14::int8[], $15::bytea[]) \
               AS t(brand_id, model_id, model_name, serial, revision, device_key_id, \
                    request_id, signing_key_id, instance, serial_assertion, original_serial, \
                    original_serial_id, chain_seq, chain_hash) ",
            $filter,
            " ORDER BY t.request_id ",
            $tail,
            " RETURNING id, request_id, issued_at"
        )
    };
}

/// [`insert_batch!`]'s statement with `$1`..`$17` bound: the rows, their links, the time they
/// are recorded at and the new head.
fn batch_insert<'q>(
    sql: &'static str,
    batch: &'q [(&'q Issuance, i32)],
    links: &[(i64, ChainHash)],
    now: OffsetDateTime,
    head: &Head,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, Written, sqlx::postgres::PgArguments> {
    let column =
        |f: fn(&Issuance) -> &str| -> Vec<&'q str> { batch.iter().map(|(r, _)| f(r)).collect() };
    sqlx::query_as(sql)
        .bind(column(|r| &r.brand_id))
        .bind(batch.iter().map(|(r, _)| r.model_id).collect::<Vec<i64>>())
        .bind(column(|r| &r.model_name))
        .bind(column(|r| &r.serial))
        .bind(batch.iter().map(|(_, rev)| *rev).collect::<Vec<i32>>())
        .bind(column(|r| &r.device_key_id))
        .bind(column(|r| &r.request_id))
        .bind(column(|r| &r.signing_key_id))
        .bind(column(|r| &r.instance))
        .bind(column(|r| &r.serial_assertion))
        .bind(
            batch
                .iter()
                .map(|(r, _)| r.original_serial.as_deref())
                .collect::<Vec<Option<&str>>>(),
        )
        .bind(
            batch
                .iter()
                .map(|(r, _)| r.original_serial_id)
                .collect::<Vec<Option<i64>>>(),
        )
        .bind(now)
        .bind(links.iter().map(|(seq, _)| *seq).collect::<Vec<i64>>())
        .bind(
            links
                .iter()
                .map(|(_, h)| h.to_vec())
                .collect::<Vec<Vec<u8>>>(),
        )
        .bind(head.seq)
        .bind(head.hash.to_vec())
}

impl Store {
    /// Records many issuances in ONE transaction (group commit) and reports, per row and in
    /// input order, whether it was inserted, replays an earlier issuance to the same device
    /// key, or conflicts with one to another device key. Nothing is committed when an error
    /// is returned (then no serial of the batch may be answered).
    ///
    /// The common case is one statement, one round trip: the batch appended at the chain head
    /// this store wrote last ([`Store::append_at_known_head`]). When that head is unknown or
    /// moved (another instance appended, or an admin change), or a row is not new (a replay, a
    /// conflict, a deleted model), nothing of that statement is kept and the batch takes the
    /// locked path ([`Store::append_locked`]), which sorts every case out.
    pub async fn record_issuances(&self, rows: &[Issuance]) -> Result<Vec<RecordOutcome>> {
        let revisions = rows
            .iter()
            .map(stored_revision)
            .collect::<Result<Vec<i32>>>()?;
        // The first row of each request-id and of each serial goes into the INSERT; a later
        // one in the same batch can only replay or conflict with it.
        let mut seen_requests = std::collections::HashSet::new();
        let mut seen_serials = std::collections::HashSet::new();
        let candidate: Vec<bool> = rows
            .iter()
            .map(|r| {
                let first_request = seen_requests.insert(r.request_id.as_str());
                let first_serial = seen_serials.insert((
                    r.brand_id.as_str(),
                    r.model_name.as_str(),
                    r.serial.as_str(),
                    r.revision,
                ));
                first_request && first_serial
            })
            .collect();
        let batch: Vec<(&Issuance, i32)> = rows
            .iter()
            .zip(revisions)
            .zip(&candidate)
            .filter_map(|(r, c)| c.then_some(r))
            .collect();
        if !batch.is_empty()
            && batch.len() == rows.len()
            && let Some(outcomes) = self.append_at_known_head(&batch).await?
        {
            metrics::counter!("signing_log_appends_total", "path" => "known-head").increment(1);
            return Ok(outcomes);
        }
        metrics::counter!("signing_log_appends_total", "path" => "locked").increment(1);
        self.append_locked(rows, &batch, &candidate).await
    }

    /// The common case of a group commit, in one statement (autocommit, one round trip on
    /// the group commit's own connection, [`Store::writer_connection`]):
    /// every row new, appended at the head this store wrote last. The statement moves the
    /// head only if it is still that head (compared under the row lock, so an append by any
    /// other writer in between is seen) and inserts the rows only if it moved it. `None` when
    /// nothing was written and the locked path must decide: the head is unknown or moved, or
    /// a row violates a constraint (it replays or conflicts with a logged serial, or its
    /// model is gone) and the whole statement failed. The rows are recorded at this host's
    /// clock, to the microsecond (the locked path records them at the transaction's `now()`).
    async fn append_at_known_head(
        &self,
        batch: &[(&Issuance, i32)],
    ) -> Result<Option<Vec<RecordOutcome>>> {
        let Some(expected) = self.signing_head.lock().clone() else {
            return Ok(None);
        };
        let now = chain::micro_now();
        let mut head = expected.clone();
        let links: Vec<(i64, ChainHash)> = batch
            .iter()
            .map(|(r, _)| head.append(|seq| signing_row_bytes(seq, now, r)))
            .collect();
        // On the group commit's own connection. When a kept one fails at the connection
        // level (Postgres closed it while it sat idle: a restart, a terminated backend), the
        // statement runs once more on a new one, as the pool's ping would have replaced it.
        // Safe after a try whose answer was lost: if that try committed, the head moved, this
        // one writes nothing, and the locked path records the rows as replays.
        let (mut conn, mut kept) = self.writer_connection().await?;
        let written = loop {
            let answer = batch_insert(
                insert_batch!(
                    "AND seq = $18 AND hash = $19 RETURNING 1",
                    "WHERE EXISTS (SELECT 1 FROM head)",
                    ""
                ),
                batch,
                &links,
                now,
                &head,
            )
            .bind(expected.seq)
            .bind(expected.hash.to_vec())
            .fetch_all(&mut conn)
            .await;
            match answer {
                Err(e) if kept && connection_lost(&e) => {
                    tracing::info!(error = %e, "signing log: its connection failed; connecting again");
                    (conn, kept) = (self.writer_connection().await?.0, false);
                }
                answer => break answer,
            }
        };
        self.keep_writer_connection(conn, &written);
        let written = match written {
            Ok(w) => w,
            Err(e) if is_constraint_violation(&e) => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if written.is_empty() {
            // Someone else appended: the locked path reads the head again.
            *self.signing_head.lock() = None;
            return Ok(None);
        }
        if written.len() != batch.len() {
            // Cannot happen (all rows or none); committed, so the chain must be looked at.
            *self.signing_head.lock() = None;
            return Err(StoreError::Database(
                format!(
                    "the signing log appended {} of {} rows in one statement",
                    written.len(),
                    batch.len()
                )
                .into(),
            ));
        }
        *self.signing_head.lock() = Some(head);
        let mut written = Written::by_request_id(written);
        batch
            .iter()
            .map(|(r, _)| {
                written
                    .remove(&r.request_id)
                    .map(|w| w.inserted(r))
                    .ok_or_else(|| {
                        StoreError::Database("the signing log lost a row it appended".into())
                    })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// The general case of a group commit, in one transaction: lock and read the chain head,
    /// insert the candidates (`INSERT ... SELECT FROM UNNEST(...) ON CONFLICT DO NOTHING`:
    /// one statement and one plan for the whole batch, in request-id order so concurrent
    /// batches take unique-index locks in the same order), link again what was inserted when
    /// some were not, and classify one by one the rows that were not (or that repeat a
    /// request-id or serial of an earlier row of the same batch) against the row that won.
    async fn append_locked(
        &self,
        rows: &[Issuance],
        batch: &[(&Issuance, i32)],
        candidate: &[bool],
    ) -> Result<Vec<RecordOutcome>> {
        let mut tx = self.begin().await?;
        // The chain: lock its head (serializing appenders on every instance), link every
        // candidate in batch order, and store the new head in the INSERT's own statement.
        let locked = chain::lock_head(&mut tx, Chain::SigningLog).await?;
        let mut head = locked.head.clone();
        let links: Vec<(i64, ChainHash)> = batch
            .iter()
            .map(|(r, _)| head.append(|seq| signing_row_bytes(seq, locked.now, r)))
            .collect();
        let written: Vec<Written> = batch_insert(
            insert_batch!(
                "",
                "WHERE EXISTS (SELECT 1 FROM models WHERE id = t.model_id)",
                "ON CONFLICT DO NOTHING"
            ),
            batch,
            &links,
            locked.now,
            &head,
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut written = Written::by_request_id(written);
        if written.len() != batch.len() {
            head = relink(&mut tx, locked, batch, &written).await?;
        }
        let mut outcomes = Vec::with_capacity(rows.len());
        for (r, c) in rows.iter().zip(candidate) {
            let won = if *c {
                written.remove(&r.request_id)
            } else {
                None
            };
            outcomes.push(match won {
                Some(w) => w.inserted(r),
                None => classify(&mut tx, r).await?,
            });
        }
        tx.commit().await?;
        *self.signing_head.lock() = Some(head);
        Ok(outcomes)
    }

    /// The issuance made with this request-id, if any.
    pub async fn find_issuance_by_request_id(
        &self,
        request_id: &str,
    ) -> Result<Option<LoggedIssuance>> {
        by_request_id(&self.pool, request_id).await
    }

    /// The highest revision issued of this serial, if any (for the re-issue policy).
    pub async fn latest_issuance(
        &self,
        brand_id: &str,
        model: &str,
        serial: &str,
    ) -> Result<Option<LoggedIssuance>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM signing_log \
             WHERE brand_id = $1 AND model_name = $2 AND serial = $3 \
             ORDER BY revision DESC LIMIT 1"
        )))
        .bind(brand_id)
        .bind(model)
        .bind(serial)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// One page of the signing log, newest first: at most `limit` rows with an id below
    /// `before_id` (the previous page's last id; `None` for the first page).
    pub async fn signing_log_page(
        &self,
        filter: &LogFilter,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<LoggedIssuance>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM signing_log WHERE {FILTER} \
             AND ($7::int8 IS NULL OR id < $7) ORDER BY id DESC LIMIT $8"
        )))
        .bind(filter.brand_id.as_deref())
        .bind(filter.model.as_deref())
        .bind(filter.serial_prefix.as_deref())
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.device_key.as_deref())
        .bind(before_id)
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Streams every matching row with its chain link, oldest first, into `sink` without a row cap or buffering
    /// the whole log; stops early when the receiver goes away. An error mid-way is sent as
    /// the last item.
    pub async fn export_signing_log(
        &self,
        filter: &LogFilter,
        sink: tokio::sync::mpsc::Sender<Result<ExportedIssuance>>,
    ) {
        let query = format!(
            "SELECT {COLUMNS}, chain_seq, chain_hash FROM signing_log WHERE {FILTER} ORDER BY id"
        );
        let mut rows = sqlx::query_as::<_, ExportedIssuance>(sqlx::AssertSqlSafe(query))
            .bind(filter.brand_id.as_deref())
            .bind(filter.model.as_deref())
            .bind(filter.serial_prefix.as_deref())
            .bind(filter.since)
            .bind(filter.until)
            .bind(filter.device_key.as_deref())
            .fetch(&self.pool);
        loop {
            let item = match rows.try_next().await {
                Ok(Some(row)) => Ok(row),
                Ok(None) => return,
                Err(e) => Err(StoreError::from(e)),
            };
            let last = item.is_err();
            if sink.send(item).await.is_err() || last {
                return;
            }
        }
    }

    /// How many serials the signing log holds, over every model.
    pub async fn issued_total(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM signing_log")
            .fetch_one(&self.pool)
            .await?)
    }

    /// How many serials were issued for the model.
    pub async fn issued_count(&self, model_id: i64) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM signing_log WHERE model_id = $1")
                .bind(model_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

/// The issuance made with `request_id`, if any.
async fn by_request_id<'e, E: sqlx::PgExecutor<'e>>(
    e: E,
    request_id: &str,
) -> Result<Option<LoggedIssuance>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM signing_log WHERE request_id = $1"
    )))
    .bind(request_id)
    .fetch_optional(e)
    .await?)
}

/// The rare path of a batch where some candidates were not inserted (a conflict, a deleted
/// model): the inserted rows are linked again without the gaps, in the same order, and the
/// head follows. The numbers are cleared first, so the unique index never sees two rows on
/// one number. Returns the new head.
async fn relink(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    locked: chain::Locked,
    batch: &[(&Issuance, i32)],
    written: &HashMap<String, Written>,
) -> Result<Head> {
    let mut head = locked.head;
    let mut rows: (Vec<i64>, Vec<i64>, Vec<Vec<u8>>) = Default::default();
    for (r, _) in batch {
        if let Some(w) = written.get(&r.request_id) {
            let (seq, hash) = head.append(|seq| signing_row_bytes(seq, locked.now, r));
            rows.0.push(w.id);
            rows.1.push(seq);
            rows.2.push(hash.to_vec());
        }
    }
    sqlx::query("UPDATE signing_log SET chain_seq = NULL WHERE id = ANY($1)")
        .bind(&rows.0)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE signing_log s SET chain_seq = t.seq, chain_hash = t.hash \
         FROM UNNEST($1::int8[], $2::int8[], $3::bytea[]) AS t(id, seq, hash) WHERE s.id = t.id",
    )
    .bind(&rows.0)
    .bind(&rows.1)
    .bind(&rows.2)
    .execute(&mut **tx)
    .await?;
    chain::set_head(tx, Chain::SigningLog, &head).await?;
    Ok(head)
}

/// Why `r` was not inserted: the committed (or same-transaction) row that holds its
/// request-id or its serial, compared by device key.
async fn classify(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    r: &Issuance,
) -> Result<RecordOutcome> {
    let same_device =
        |existing: &LoggedIssuance| existing.issuance.device_key_id == r.device_key_id;
    if let Some(existing) = by_request_id(&mut **tx, &r.request_id).await? {
        return Ok(if same_device(&existing) {
            RecordOutcome::Replay(existing)
        } else {
            RecordOutcome::RequestIdUsed(existing)
        });
    }
    let by_serial: Option<LoggedIssuance> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM signing_log \
         WHERE brand_id = $1 AND model_name = $2 AND serial = $3 AND revision = $4"
    )))
    .bind(&r.brand_id)
    .bind(&r.model_name)
    .bind(&r.serial)
    .bind(stored_revision(r)?)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match by_serial {
        Some(existing) if same_device(&existing) => RecordOutcome::Replay(existing),
        Some(existing) => RecordOutcome::SerialTaken(existing),
        // Nothing conflicts, so the EXISTS guard stopped it: the model is gone.
        None => RecordOutcome::ModelGone,
    })
}
