//! A browser's requests to the dashboard without a browser: raw HTTP/1.1 exchanges with
//! cookies and urlencoded forms, and signing in with a token to get a session cookie.
//!
//! Needs nothing but tokio; the browser tests use it for what a browser will not send (a form
//! without its CSRF token).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An answer: status, headers (lower-cased names, in order) and body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every `Set-Cookie`.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `Set-Cookie` of cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value cookie `name` is set to.
    pub fn cookie_value(&self, name: &str) -> Option<String> {
        let c = self.set_cookie(name)?;
        let v = c.split(';').next()?.split_once('=')?.1;
        Some(v.to_string())
    }

    /// The value of the hidden `csrf` field of the page.
    pub fn csrf_field(&self) -> Option<String> {
        let at = self.body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
        let rest = &self.body[at..];
        Some(rest[..rest.find('"')?].to_string())
    }
}

/// One request on a connection of its own; `form` is sent urlencoded.
pub async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&[(&str, &str)]>,
) -> Reply {
    let body = form
        .map(|f| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(f.iter())
                .finish()
        })
        .unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        head.push_str(&format!("Cookie: {c}\r\n"));
    }
    if form.is_some() {
        head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    if method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        out
    };
    let out = tokio::time::timeout(Duration::from_secs(60), io)
        .await
        .expect("an answer within a minute");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Signs in with `token` as a browser would (the form's CSRF cookie and field); the sign-in
/// answer.
pub async fn sign_in_reply(addr: SocketAddr, token: &str) -> Reply {
    let form = exchange(addr, "GET", "/ui/sign-in", None, None).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.csrf_field().expect("a csrf field");
    let cookie = format!(
        "serialmint_sign_in={}",
        form.cookie_value("serialmint_sign_in")
            .expect("a sign-in cookie")
    );
    exchange(
        addr,
        "POST",
        "/ui/sign-in",
        Some(&cookie),
        Some(&[("csrf", csrf.as_str()), ("token", token)]),
    )
    .await
}

/// Signs in with `token`; the `Cookie` header value of the session.
pub async fn sign_in(addr: SocketAddr, token: &str) -> String {
    let reply = sign_in_reply(addr, token).await;
    assert_eq!(reply.status, 303, "sign-in refused: {}", reply.body);
    format!(
        "serialmint_session={}",
        reply
            .cookie_value("serialmint_session")
            .expect("a session cookie")
    )
}
