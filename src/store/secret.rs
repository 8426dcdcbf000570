//! The request-id HMAC secret: one row shared by every instance, created once atomically.

use rand::RngCore;

use super::{Result, Store, StoreError};

impl Store {
    /// The request-id secret, creating it on first use. Concurrent first calls on several
    /// instances all get the same secret (insert-if-absent, then read).
    pub async fn request_id_secret(&self) -> Result<[u8; 32]> {
        let mut fresh = [0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        sqlx::query(
            "INSERT INTO request_id_secret (singleton, secret) VALUES (true, $1) \
             ON CONFLICT (singleton) DO NOTHING",
        )
        .bind(fresh.as_slice())
        .execute(&self.pool)
        .await?;
        let secret: Vec<u8> =
            sqlx::query_scalar("SELECT secret FROM request_id_secret WHERE singleton")
                .fetch_one(&self.pool)
                .await?;
        secret
            .try_into()
            .map_err(|_| StoreError::Database("request-id secret is not 32 bytes".into()))
    }
}
