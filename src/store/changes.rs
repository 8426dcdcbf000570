//! Following admin changes: a LISTEN connection on [`CHANGES_CHANNEL`], on which every
//! committed change is announced (see `changed` in the parent module).

use sqlx::postgres::PgListener;

use super::{CHANGES_CHANNEL, Result, Store};

/// What [`ChangeListener::next`] saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A change was committed; the payload says what (`<action> <target>`).
    Changed(String),
    /// The connection was lost and is listening again: notifications sent meanwhile are
    /// lost, so a follower reloads everything.
    Reconnected,
}

/// A LISTEN connection on [`CHANGES_CHANNEL`] that reconnects by itself when Postgres goes
/// away and comes back.
#[derive(Debug)]
pub struct ChangeListener {
    listener: PgListener,
}

impl Store {
    /// Opens a connection listening on [`CHANGES_CHANNEL`]. Changes committed from now on are
    /// seen, so listening before loading lets no change slip between the two.
    pub async fn listen_changes(&self) -> Result<ChangeListener> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.eager_reconnect(true);
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(ChangeListener { listener })
    }
}

impl ChangeListener {
    /// Waits for the next change or reconnection. An error means the connection is gone and
    /// could not be re-established; listen again (with a back-off) to go on.
    ///
    /// Not cancel-safe: a notification being read when the future is dropped may be lost, so
    /// run it in a task of its own rather than in a `select!` with other work.
    pub async fn next(&mut self) -> Result<Change> {
        Ok(match self.listener.try_recv().await? {
            Some(n) => Change::Changed(n.payload().to_string()),
            None => Change::Reconnected,
        })
    }
}
