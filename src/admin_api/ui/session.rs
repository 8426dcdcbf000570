//! Dashboard sessions: the cookie an operator's browser holds after signing in with an admin
//! token, and the table of live sessions behind it.
//!
//! Design notes:
//! - Sessions live in this process's memory, not in Postgres: signing in again after a restart
//!   (or on another instance behind a load balancer without stickiness) is the price, and no
//!   session id or token ever reaches a table or a backup.
//! - A session keeps the token it was opened with (as a [`SecretString`], never printed) and
//!   the dashboard authenticates it again on every request, so a revoked or expired token ends
//!   its sessions at once, and the token's role and brand limits apply as they do to the API.
//! - Each session has its own CSRF token (32 random bytes) that every form carries and every
//!   POST must repeat; the sign-in form, which has no session yet, uses a short-lived
//!   double-submit cookie instead.
//! - Sessions expire [`SESSION_TTL`] after sign-in, whatever the activity; the table holds
//!   at most [`MAX_SESSIONS`], the oldest going first.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;
use rand::RngCore;
use secrecy::SecretString;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "serialmint_session";

/// The sign-in form's double-submit cookie.
pub const SIGN_IN_COOKIE: &str = "serialmint_sign_in";

/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 60 * 60);

/// How long the sign-in form's CSRF cookie lasts.
pub const SIGN_IN_TTL: Duration = Duration::from_secs(30 * 60);

/// Most sessions held at once.
pub const MAX_SESSIONS: usize = 10_000;

/// 32 random bytes as unpadded base64url.
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether two secrets are equal, in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// One signed-in browser.
#[derive(Clone)]
pub struct Session {
    /// The admin token it signed in with.
    pub token: SecretString,
    /// What every form of this session carries.
    pub csrf: String,
    created: Instant,
}

/// The live sessions, by id.
#[derive(Default)]
pub struct Sessions {
    table: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Opens a session for `token`; returns its id (the cookie's value).
    pub fn open(&self, token: SecretString, now: Instant) -> String {
        let id = random_id();
        let mut table = self.table.lock();
        table.retain(|_, s| now.saturating_duration_since(s.created) < SESSION_TTL);
        if table.len() >= MAX_SESSIONS
            && let Some(oldest) = table
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
        {
            table.remove(&oldest);
        }
        table.insert(
            id.clone(),
            Session {
                token,
                csrf: random_id(),
                created: now,
            },
        );
        id
    }

    /// The session `id` names, unless it expired (then it is dropped).
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut table = self.table.lock();
        let session = table.get(id)?;
        if now.saturating_duration_since(session.created) >= SESSION_TTL {
            table.remove(id);
            return None;
        }
        Some(session.clone())
    }

    /// Ends the session `id` (sign-out, or its token stopped working).
    pub fn close(&self, id: &str) {
        self.table.lock().remove(id);
    }

    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.table.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of cookie `name` in a `Cookie` header, if present.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value under `/ui/`: `HttpOnly`, `SameSite=Strict`, `Secure` when `secure`,
/// expiring after `ttl` (zero clears it).
pub fn set_cookie(name: &str, value: &str, ttl: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/ui/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        ttl.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_expire_and_close() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let id = s.open(SecretString::from("smt_x"), t0);
        let got = s.get(&id, t0 + Duration::from_secs(60)).expect("open");
        assert_eq!(got.csrf.len(), 43);
        assert!(s.get("other", t0).is_none());
        assert!(s.get(&id, t0 + SESSION_TTL).is_none(), "expired");
        assert!(s.is_empty(), "an expired session is dropped");
        let id = s.open(SecretString::from("smt_x"), t0);
        s.close(&id);
        assert!(s.get(&id, t0).is_none());
    }

    #[test]
    fn cookies_are_read_and_written() {
        let h = "a=1; serialmint_session=abc ; b=2";
        assert_eq!(cookie(h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(h, "c"), None);
        let c = set_cookie(SESSION_COOKIE, "v", SESSION_TTL, true);
        assert_eq!(
            c,
            "serialmint_session=v; Path=/ui/; Max-Age=28800; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!set_cookie("n", "", Duration::ZERO, false).contains("Secure"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
