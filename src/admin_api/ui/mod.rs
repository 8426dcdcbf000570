//! The operator dashboard under `/ui/` on the admin listener: server-rendered HTML (maud), a
//! little JavaScript for the live overview, no separate server and nothing to build at run time.
//!
//! Owns: the `/ui/` route table, sign-in and sign-out, sessions ([`session`]), CSRF checks,
//! security headers, and the pages ([`pages`], [`overview`], [`search`]). It reads through the
//! same store calls and query types as the JSON routes; it holds no business rule of its own.
//!
//! Security:
//! - Sign-in takes an admin token and opens a session (an `HttpOnly`, `SameSite=Strict`
//!   cookie under `/ui/`, `Secure` when the admin listener speaks TLS, expiring after
//!   [`session::SESSION_TTL`]). Every request authenticates the session's token again, so
//!   revocation and expiry take effect at once and roles and brand limits apply as in the API.
//! - The bad-token throttle is the API's own table: a bad token at sign-in counts as a bad
//!   bearer token does, and a shut-out address gets 429 here too.
//! - Every POST carries the session's CSRF token in a hidden field (the sign-in form a
//!   double-submit cookie's); a missing or wrong one is refused with 403 before anything runs.
//! - A strict Content-Security-Policy: scripts, styles and fetches from this origin only, no
//!   inline script or style, no framing. The JavaScript is served from `/ui/static/`.
//! - Tokens and cookies are never logged.

mod manage;
mod overview;
mod pages;
mod search;
pub mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    CACHE_CONTROL, CONTENT_TYPE, COOKIE, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER, SET_COOKIE,
};
use hyper::{Method, Request, Response, StatusCode};
use maud::Markup;
use secrecy::{ExposeSecret, SecretString};

use super::error::ApiError;
use super::{Answer, Shared};
use crate::domain::Role;
use crate::http;
use crate::store::TokenInfo;
use session::{SESSION_COOKIE, SESSION_TTL, SIGN_IN_COOKIE, SIGN_IN_TTL, Sessions};

/// The Content-Security-Policy of every dashboard answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// Largest form body.
const MAX_FORM: usize = 64 * 1024;

/// The dashboard's state: its sessions and whether cookies are `Secure`.
#[derive(Default)]
pub struct Ui {
    sessions: Sessions,
    secure: AtomicBool,
}

impl Ui {
    /// Marks session cookies `Secure` (the admin listener speaks TLS).
    pub fn set_secure(&self, on: bool) {
        self.secure.store(on, Ordering::Relaxed);
    }

    fn secure(&self) -> bool {
        self.secure.load(Ordering::Relaxed)
    }
}

/// A signed-in operator: the session and what its token may do.
pub(super) struct Viewer {
    session: String,
    csrf: String,
    token: TokenInfo,
}

impl Viewer {
    fn is_admin(&self) -> bool {
        self.token.role == Role::Admin
    }

    /// The brands a brand-limited token is limited to.
    fn brands(&self) -> Option<&[String]> {
        self.token.brands.as_deref()
    }
}

/// Whether `path` is the dashboard's.
pub(super) fn owns(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// Adds the headers every dashboard answer carries.
fn harden(headers: &mut HeaderMap) {
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// An answer with `body` of `content_type`.
fn answer(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    http::streamed(resp)
}

/// An HTML page.
fn page(status: StatusCode, markup: Markup) -> Answer {
    answer(status, "text/html; charset=utf-8", markup.into_string())
}

/// 303 to `to` (a path under `/ui/`).
fn redirect(to: &str) -> Answer {
    let mut resp = answer(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

fn with_cookie(mut resp: Answer, cookie: &str) -> Answer {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    resp
}

/// An error as a page (HTML routes) with its status and `Retry-After`.
fn error_page(e: &ApiError, viewer: Option<&Viewer>) -> Answer {
    let mut resp = page(e.status(), pages::error(viewer, e.status(), e.message()));
    if let Some(secs) = e.retry_after() {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// The value of cookie `name` of `req`.
fn cookie<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| session::cookie(h, name))
        .filter(|v| !v.is_empty())
}

/// A urlencoded form body, by field.
async fn form(s: &Shared, req: Request<Incoming>) -> Result<HashMap<String, String>, ApiError> {
    let body = http::read_body(req, MAX_FORM, s.body_timeout).await?;
    Ok(form_urlencoded::parse(&body).into_owned().collect())
}

/// Serves a `/ui` request.
pub(super) async fn route(s: &Shared, req: Request<Incoming>, peer: SocketAddr) -> Answer {
    let mut resp = route_inner(s, req, peer).await;
    harden(resp.headers_mut());
    resp
}

async fn route_inner(s: &Shared, req: Request<Incoming>, peer: SocketAddr) -> Answer {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    use Method as M;
    match (&method, path.as_str()) {
        (&M::GET, "/ui") => return redirect("/ui/"),
        (&M::GET, "/ui/static/app.js") => {
            return answer(
                StatusCode::OK,
                "text/javascript; charset=utf-8",
                include_str!("static/app.js"),
            );
        }
        (&M::GET, "/ui/static/app.css") => {
            return answer(
                StatusCode::OK,
                "text/css; charset=utf-8",
                include_str!("static/app.css"),
            );
        }
        (&M::GET, "/ui/sign-in") => return sign_in_form(s, None, StatusCode::OK),
        (&M::POST, "/ui/sign-in") => return sign_in(s, req, peer).await,
        _ => {}
    }
    let json = path.ends_with(".json");
    let viewer = match viewer(s, &req, peer).await {
        Ok(v) => v,
        Err(e) if json => return http::streamed(e.response()),
        Err(e) if e.status() == StatusCode::UNAUTHORIZED => return redirect("/ui/sign-in"),
        Err(e) => return error_page(&e, None),
    };
    let v = &viewer;
    let result = if method == M::POST {
        post(s, req, v, &path).await
    } else if method == M::GET {
        let q = super::Query::parse(req.uri().query().unwrap_or_default());
        match path.as_str() {
            "/ui/" => overview::page(s, v).await,
            "/ui/overview.json" => overview::json(s, v).await,
            "/ui/signing-log" => search::page(s, v, &q).await,
            "/ui/signing-log/export.csv" => search::export(s, v, &q).await,
            "/ui/models" => manage::models_page(s, v, &q).await,
            "/ui/keys" => manage::keys_page(s, v).await,
            "/ui/tokens" => manage::tokens_page(s, v, None).await,
            "/ui/audit" => manage::audit_page(s, v).await,
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no page {path}"),
            )),
        }
    } else {
        Ok(http::streamed(http::method_not_allowed("GET, POST")))
    };
    match result {
        Ok(resp) => resp,
        Err(e) if json => http::streamed(e.response()),
        Err(e) => error_page(&e, Some(v)),
    }
}

/// The operator behind a request's session cookie: 401 without a live session or when its
/// token stopped working (the session then ends), 429 while the address is shut out.
async fn viewer(s: &Shared, req: &Request<Incoming>, peer: SocketAddr) -> Result<Viewer, ApiError> {
    let id = cookie(req, SESSION_COOKIE).ok_or_else(ApiError::unauthorized)?;
    let session =
        s.ui.sessions
            .get(id, Instant::now())
            .ok_or_else(ApiError::unauthorized)?;
    s.throttle_check(peer)?;
    match s.store.authenticate(session.token.expose_secret()).await? {
        Some(token) => Ok(Viewer {
            session: id.to_string(),
            csrf: session.csrf,
            token,
        }),
        None => {
            s.ui.sessions.close(id);
            Err(ApiError::unauthorized())
        }
    }
}

/// The sign-in page with a fresh double-submit CSRF value (cookie and hidden field).
fn sign_in_form(s: &Shared, problem: Option<&str>, status: StatusCode) -> Answer {
    let csrf = session::random_id();
    let resp = page(status, pages::sign_in(&csrf, problem));
    with_cookie(
        resp,
        &session::set_cookie(SIGN_IN_COOKIE, &csrf, SIGN_IN_TTL, s.ui.secure()),
    )
}

/// `POST /ui/sign-in`: the token becomes a session.
async fn sign_in(s: &Shared, req: Request<Incoming>, peer: SocketAddr) -> Answer {
    if let Err(e) = s.throttle_check(peer) {
        let mut resp = sign_in_form(s, Some(e.message()), e.status());
        if let Some(secs) = e.retry_after() {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        return resp;
    }
    let expected = cookie(&req, SIGN_IN_COOKIE).map(str::to_string);
    let fields = match form(s, req).await {
        Ok(f) => f,
        Err(e) => return sign_in_form(s, Some(e.message()), e.status()),
    };
    let csrf_ok = match (expected.as_deref(), fields.get("csrf")) {
        (Some(a), Some(b)) => session::same_secret(a, b),
        _ => false,
    };
    if !csrf_ok {
        return sign_in_form(
            s,
            Some("the sign-in form expired or was not this server's; sign in again"),
            StatusCode::FORBIDDEN,
        );
    }
    let token = fields.get("token").map(|t| t.trim()).unwrap_or_default();
    if token.is_empty() {
        return sign_in_form(s, Some("enter an admin token"), StatusCode::UNAUTHORIZED);
    }
    match s.token_info(token, peer).await {
        Ok(info) => {
            let id =
                s.ui.sessions
                    .open(SecretString::from(token.to_string()), Instant::now());
            tracing::info!(token = %info.name, client = %peer.ip(), "dashboard: signed in");
            let secure = s.ui.secure();
            let resp = with_cookie(
                redirect("/ui/"),
                &session::set_cookie(SESSION_COOKIE, &id, SESSION_TTL, secure),
            );
            with_cookie(
                resp,
                &session::set_cookie(SIGN_IN_COOKIE, "", Duration::ZERO, secure),
            )
        }
        Err(e) if e.status() == StatusCode::UNAUTHORIZED => sign_in_form(
            s,
            Some("that token was refused (unknown, revoked or expired)"),
            StatusCode::UNAUTHORIZED,
        ),
        Err(e) => {
            let mut resp = sign_in_form(s, Some(e.message()), e.status());
            if let Some(secs) = e.retry_after() {
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(secs));
            }
            resp
        }
    }
}

/// Every POST of a signed-in operator: the CSRF token first, then sign-out or an action
/// (admin tokens only).
async fn post(
    s: &Shared,
    req: Request<Incoming>,
    v: &Viewer,
    path: &str,
) -> Result<Answer, ApiError> {
    let fields = form(s, req).await?;
    let csrf_ok = fields
        .get("csrf")
        .is_some_and(|c| session::same_secret(c, &v.csrf));
    if !csrf_ok {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "this form's CSRF token is missing or wrong; reload the page and try again",
        ));
    }
    if path == "/ui/sign-out" {
        s.ui.sessions.close(&v.session);
        tracing::info!(token = %v.token.name, "dashboard: signed out");
        return Ok(with_cookie(
            redirect("/ui/sign-in"),
            &session::set_cookie(SESSION_COOKIE, "", Duration::ZERO, s.ui.secure()),
        ));
    }
    if !v.is_admin() {
        return Err(ApiError::read_only());
    }
    manage::act(s, v, path, &fields).await
}
