//! Pushed `account` and `account-key` assertions (already verified by the caller against the
//! trust database), kept as text and served to devices after their serial.

use time::OffsetDateTime;

use super::{Actor, Result, Store, changed};
use crate::domain::AssertionKind;

/// An assertion to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAccountAssertion {
    /// Its type.
    pub kind: AssertionKind,
    /// Its primary key: the account-id, or the public-key-sha3-384.
    pub primary_key: String,
    /// The account it is about (`account-id` header).
    pub account_id: String,
    /// Its revision (higher replaces lower; equal or lower is kept as is).
    pub revision: i32,
    /// The full assertion text, as pushed.
    pub text: String,
}

/// A stored assertion.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AccountAssertion {
    /// Its type.
    #[sqlx(try_from = "String")]
    pub kind: AssertionKind,
    /// Its primary key.
    pub primary_key: String,
    /// The account it is about.
    pub account_id: String,
    /// Its revision.
    pub revision: i32,
    /// The full text.
    pub text: String,
    /// When it was pushed.
    pub pushed_at: OffsetDateTime,
}

impl Store {
    /// Stores the assertions in one transaction; an existing one is replaced only by a higher
    /// revision. Returns how many were new or replaced.
    pub async fn put_account_assertions(
        &self,
        items: &[NewAccountAssertion],
        actor: &Actor,
    ) -> Result<u64> {
        let mut tx = self.begin().await?;
        let mut n = 0;
        for a in items {
            n += sqlx::query(
                "INSERT INTO account_assertions \
                   (kind, primary_key, account_id, revision, text, pushed_by) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (kind, primary_key) DO UPDATE SET \
                   account_id = EXCLUDED.account_id, revision = EXCLUDED.revision, \
                   text = EXCLUDED.text, pushed_by = EXCLUDED.pushed_by, pushed_at = now() \
                 WHERE account_assertions.revision < EXCLUDED.revision",
            )
            .bind(a.kind.as_str())
            .bind(&a.primary_key)
            .bind(&a.account_id)
            .bind(a.revision)
            .bind(&a.text)
            .bind(&actor.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        let names: Vec<String> = items
            .iter()
            .map(|a| format!("{} {}", a.kind.as_str(), a.primary_key))
            .collect();
        changed(
            &mut tx,
            actor,
            "account-assertions.push",
            &format!("{} assertions", items.len()),
            serde_json::json!({ "assertions": names, "stored": n }),
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Every stored account and account-key assertion.
    pub async fn account_assertions(&self) -> Result<Vec<AccountAssertion>> {
        all_account_assertions(&self.pool).await
    }
}

pub(super) async fn all_account_assertions<'e, E: sqlx::PgExecutor<'e>>(
    e: E,
) -> Result<Vec<AccountAssertion>> {
    Ok(sqlx::query_as(
        "SELECT kind, primary_key, account_id, revision, text, pushed_at \
         FROM account_assertions ORDER BY kind, primary_key",
    )
    .fetch_all(e)
    .await?)
}
