//! The dashboard's page frame and its small pages (sign-in, errors), as maud templates.
//!
//! maud checks templates at compile time and escapes every interpolated value; there are no
//! template files to ship and nothing to build. Pages carry no inline script or style (the
//! Content-Security-Policy forbids both): `/ui/static/app.css` and `/ui/static/app.js` do it.

use hyper::StatusCode;
use maud::{DOCTYPE, Markup, html};

use super::Viewer;
use crate::domain::Role;

/// The sections of the navigation bar: path and label.
const NAV: &[(&str, &str)] = &[
    ("/ui/", "Overview"),
    ("/ui/signing-log", "Signing log"),
    ("/ui/models", "Models"),
    ("/ui/keys", "Keys"),
    ("/ui/tokens", "Tokens"),
    ("/ui/audit", "Audit log"),
];

/// The hidden CSRF field every form of a session carries.
pub fn csrf_field(v: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(v.csrf); }
}

/// The page frame: head, navigation (with who is signed in and sign-out), then `body`.
pub fn frame(v: Option<&Viewer>, current: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · serialmint" }
                link rel="stylesheet" href="/ui/static/app.css";
                script src="/ui/static/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/" { "serialmint" }
                    @if let Some(v) = v {
                        nav aria-label="Sections" {
                            ul {
                                @for (href, label) in NAV {
                                    li {
                                        @if *href == current {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        div.who {
                            span #who { (v.token.name) }
                            " "
                            @match v.token.role {
                                Role::Admin => span.badge.admin { "admin" },
                                Role::ReadOnly => span.badge.ro #read-only { "read-only" },
                            }
                            @if let Some(brands) = v.brands() {
                                " " span.badge { "brands: " (brands.join(", ")) }
                            }
                            form.inline method="post" action="/ui/sign-out" {
                                (csrf_field(v))
                                button #sign-out type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main { h1 { (title) } (body) }
            }
        }
    }
}

/// The sign-in page; `csrf` is also in the sign-in cookie.
pub fn sign_in(csrf: &str, problem: Option<&str>) -> Markup {
    frame(
        None,
        "",
        "Sign in",
        html! {
            @if let Some(p) = problem {
                p.problem #problem role="alert" { (p) }
            }
            form.card #sign-in-form method="post" action="/ui/sign-in" {
                input type="hidden" name="csrf" value=(csrf);
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="off" required autofocus;
                button #sign-in type="submit" { "Sign in" }
            }
            p.hint {
                "Sign in with an admin token (" code { "serialmint create token" } "). "
                "Read-only tokens see everything and change nothing."
            }
        },
    )
}

/// An error page.
pub fn error(v: Option<&Viewer>, status: StatusCode, message: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    frame(
        v,
        "",
        title,
        html! {
            p.problem #problem role="alert" { (status.as_u16()) ": " (message) }
            p { a href="/ui/" { "Back to the overview" } }
        },
    )
}

/// A table with a header row and rows of text cells; `id` names it for the live updates.
pub fn table(id: &str, caption: &str, head: &[&str], rows: &[Vec<String>]) -> Markup {
    html! {
        table #(id) data-live-table=(id) {
            caption { (caption) }
            thead { tr { @for h in head { th scope="col" { (h) } } } }
            tbody {
                @for row in rows {
                    tr { @for cell in row { td { (cell) } } }
                }
            }
        }
    }
}
