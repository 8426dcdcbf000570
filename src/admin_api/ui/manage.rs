//! The dashboard's models (with their serial-policy revisions and remodel policies), keys,
//! tokens and audit-log pages, and the admin actions that are safe to click: disable or enable
//! a model, a new serial-policy revision, a new token.
//!
//! Actions run through the JSON routes' own controllers (`models::change`,
//! `policies::create`) or the same store call (`create_token_for`), with the session's token
//! name as the actor, so each is checked and written to the audit log exactly as the CLI's.
//! Every action form asks for confirmation in the browser (`data-confirm`), is shown to admin
//! tokens only, and is refused (403) for read-only tokens whatever is posted; a brand-limited
//! token is held to its brands as the router holds it, and has no tokens or audit pages.

use std::collections::HashMap;

use hyper::{Method, StatusCode};
use maud::{Markup, html};
use time::OffsetDateTime;

use super::pages::{csrf_field, frame};
use super::{Viewer, page, redirect};
use crate::admin_api::error::{ApiError, ApiResult};
use crate::admin_api::keys::{Roles, pushed_roles, roles_of};
use crate::admin_api::wire::{CreatePolicy, Query};
use crate::admin_api::{Answer, Shared, limit_to_brands, models, path_segment, policies};
use crate::domain::Role;
use crate::store::{Actor, RemodelPolicy, SerialPolicy};

/// A confirmation (`done=`) shown after an action, by code: fixed texts only.
fn notice(q: &Query) -> Option<&'static str> {
    Some(match q.get("done")? {
        "disabled" => "The model was disabled: its devices are refused until it is enabled.",
        "enabled" => "The model was enabled.",
        "policy" => "A new serial-policy revision is active.",
        _ => return None,
    })
}

/// An API key as shown: its first four characters and its length.
pub fn mask(key: &str) -> String {
    let head: String = key.chars().take(4).collect();
    format!("{head}… ({} characters)", key.chars().count())
}

fn when(t: OffsetDateTime) -> String {
    format!(
        "{} {:02}:{:02}:{:02}",
        t.date(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// 403 for what belongs to no one brand, for a brand-limited token.
fn whole_server_only(v: &Viewer, what: &str) -> ApiResult<()> {
    match v.brands() {
        Some(b) => Err(ApiError::other_brand(format!(
            "this token is limited to brands {}: it may not see {what}",
            b.join(", ")
        ))),
        None => Ok(()),
    }
}

/// `GET /ui/models`: every model (of the token's brands), its masked API key, its serial-policy
/// revisions, and for admin tokens the actions.
pub async fn models_page(s: &Shared, v: &Viewer, q: &Query) -> ApiResult<Answer> {
    let sees = |b: &str| v.brands().is_none_or(|bs| bs.iter().any(|x| x == b));
    let models: Vec<_> = s
        .store
        .models()
        .await?
        .into_iter()
        .filter(|m| sees(&m.brand_id))
        .collect();
    let mut revisions: HashMap<i64, Vec<SerialPolicy>> = HashMap::new();
    for p in s.store.serial_policies(None, None).await? {
        revisions.entry(p.model_id).or_default().push(p);
    }
    let mut remodels: HashMap<i64, Vec<RemodelPolicy>> = HashMap::new();
    for p in s.store.remodel_policies(None, None).await? {
        remodels.entry(p.to_model_id).or_default().push(p);
    }
    let keys: Vec<_> = s
        .store
        .keys()
        .await?
        .into_iter()
        .filter(|k| sees(&k.brand_id) && k.active && k.sha3_384.is_some())
        .collect();
    let body = html! {
        @if let Some(n) = notice(q) { p.notice #notice role="status" { (n) } }
        @if models.is_empty() { p { "No model yet (" code { "serialmint create model" } ")." } }
        @for m in &models {
            @let revs = revisions.get(&m.id).map_or(&[][..], Vec::as_slice);
            @let id = format!("model-{}-{}", m.brand_id, m.name);
            section.card.model #(id) {
                h2 { (m.brand_id) " / " (m.name) " "
                    @if m.enabled { span.badge { "enabled" } }
                    @else { span.badge.off { "disabled" } } }
                p { "API key " code { (mask(&m.api_key)) }
                    " · duplicates: " (m.duplicate_policy)
                    " · serials: " (m.serial_generation)
                    @if !m.serial_prefix.is_empty() { " (prefix " code { (m.serial_prefix) } ")" }
                    @if let Some(r) = m.rate_limit_per_sec { " · " (r) "/s" } }
                table {
                    caption { "Serial-policy revisions (the newest, first, is active)" }
                    thead { tr { th scope="col" { "Revision" } th scope="col" { "Key" }
                        th scope="col" { "Created (UTC)" } th scope="col" { "By" } } }
                    tbody {
                        @for p in revs {
                            tr { td { (p.revision) } td { (p.key_name) }
                                 td { (when(p.created_at)) } td { (p.created_by) } }
                        }
                    }
                }
                @if let Some(moves) = remodels.get(&m.id) {
                    table.remodels {
                        caption { "Remodel policies: devices that may re-register as this model" }
                        thead { tr { th scope="col" { "From" } th scope="col" { "Original serials" }
                            th scope="col" { "Created (UTC)" } th scope="col" { "By" } } }
                        tbody {
                            @for p in moves {
                                tr { td { (p.from_brand_id) " / " (p.from_model) }
                                     td { @match &p.serial_pattern {
                                         Some(re) => code { (re) },
                                         None => "any",
                                     } }
                                     td { (when(p.created_at)) } td { (p.created_by) } }
                            }
                        }
                    }
                }
                @if v.is_admin() {
                    div.actions {
                        @let path = format!("/ui/models/{}/{}", m.brand_id, m.name);
                        @if m.enabled {
                            form.inline method="post" action=(format!("{path}/disable"))
                                data-confirm=(format!("Disable model {}? Its devices will be refused until it is enabled again.", m.name)) {
                                (csrf_field(v))
                                button.danger type="submit" { "Disable model" }
                            }
                        } @else {
                            form.inline method="post" action=(format!("{path}/enable"))
                                data-confirm=(format!("Enable model {}?", m.name)) {
                                (csrf_field(v))
                                button type="submit" { "Enable model" }
                            }
                        }
                        " "
                        form.inline method="post" action=(format!("{path}/serial-policy"))
                            data-confirm=(format!("Make a new serial-policy revision for {}? Its serials will be signed by the chosen key from now on.", m.name)) {
                            (csrf_field(v))
                            label.inline { "Sign with "
                                select name="key" {
                                    @for k in keys.iter().filter(|k| k.brand_id == m.brand_id) {
                                        option value=(k.sha3_384.as_deref().unwrap_or_default()) { (k.name) }
                                    }
                                }
                            }
                            " " button type="submit" { "New policy revision" }
                        }
                    }
                }
            }
        }
    };
    Ok(page(
        StatusCode::OK,
        frame(Some(v), "/ui/models", "Models", body),
    ))
}

/// `GET /ui/keys`: every signing key (of the token's brands) with its origin, roles, status
/// and whether its account-key is registered.
pub async fn keys_page(s: &Shared, v: &Viewer) -> ApiResult<Answer> {
    let pushed = pushed_roles(s).await?;
    let keys = s.store.keys().await?;
    let body = html! {
        table #keys {
            caption { "Signing keys on the HSM" }
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Brand" } th scope="col" { "SHA3-384" }
                th scope="col" { "Origin" } th scope="col" { "Status" } th scope="col" { "Roles" }
                th scope="col" { "Account-key" }
            } }
            tbody {
                @for k in keys.iter().filter(|k| v.brands().is_none_or(|b| b.contains(&k.brand_id))) {
                    @let roles = roles_of(&pushed, k);
                    tr {
                        td { (k.name) } td { (k.brand_id) }
                        td.key title=(k.sha3_384.as_deref().unwrap_or_default()) {
                            (k.sha3_384.as_deref().map(short).unwrap_or_default()) }
                        td { (k.origin) }
                        td { (k.status) @if !k.active { " (disabled)" } }
                        td { @match &roles { Roles::NotRegistered => "–", r => (r.to_string()) } }
                        td { @if matches!(roles, Roles::NotRegistered) { "not registered" }
                             @else { "registered" } }
                    }
                }
            }
        }
    };
    Ok(page(
        StatusCode::OK,
        frame(Some(v), "/ui/keys", "Keys", body),
    ))
}

fn short(id: &str) -> String {
    match id.get(..12) {
        Some(head) if id.len() > 12 => format!("{head}…"),
        _ => id.to_string(),
    }
}

/// `GET /ui/audit`: the newest 200 audit entries.
pub async fn audit_page(s: &Shared, v: &Viewer) -> ApiResult<Answer> {
    whole_server_only(v, "the audit log")?;
    let entries = s.store.audit_log(None, 200).await?;
    let body = html! {
        table #audit {
            caption { "The newest " (entries.len()) " changes" }
            thead { tr { th scope="col" { "At (UTC)" } th scope="col" { "Actor" }
                th scope="col" { "Action" } th scope="col" { "Target" } th scope="col" { "Detail" } } }
            tbody {
                @for e in &entries {
                    tr { td { (when(e.at)) } td { (e.actor) } td { (e.action) }
                         td { (e.target) } td.key { (e.detail.to_string()) } }
                }
            }
        }
    };
    Ok(page(
        StatusCode::OK,
        frame(Some(v), "/ui/audit", "Audit log", body),
    ))
}

fn token_form(v: &Viewer) -> Markup {
    html! {
        form.card #token-form method="post" action="/ui/tokens"
            data-confirm="Create this admin token? Its secret is shown once." {
            (csrf_field(v))
            div.fields {
                label { "Name" input #t-name type="text" name="name" required; }
                label { "Role"
                    select #t-role name="role" {
                        option value="read-only" { "read-only" }
                        option value="admin" { "admin" }
                    }
                }
                label { "Expires after (days, empty: never)"
                    input #t-days type="number" name="days" min="1" max="3650"; }
            }
            button #create-token type="submit" { "Create token" }
        }
    }
}

/// `GET /ui/tokens` (and the answer to creating one, with its secret shown once).
pub async fn tokens_page(
    s: &Shared,
    v: &Viewer,
    created: Option<(&str, &str)>,
) -> ApiResult<Answer> {
    whole_server_only(v, "tokens")?;
    let tokens = s.store.tokens().await?;
    let body = html! {
        @if let Some((name, secret)) = created {
            div.card.notice #created role="status" {
                p { "Token " strong { (name) } " created. Copy it now: it is not shown again." }
                p { code #secret { (secret) } }
            }
        }
        table #tokens {
            caption { "Admin tokens (secrets are never shown again)" }
            thead { tr { th scope="col" { "Name" } th scope="col" { "Role" }
                th scope="col" { "Brands" } th scope="col" { "Expires (UTC)" }
                th scope="col" { "Last used (UTC)" } th scope="col" { "State" } } }
            tbody {
                @for t in &tokens {
                    tr { td { (t.name) } td { (t.role) }
                         td { (t.brands.as_ref().map_or("all".to_string(), |b| b.join(", "))) }
                         td { (t.expires_at.map(when).unwrap_or_else(|| "never".into())) }
                         td { (t.last_used_at.map(when).unwrap_or_else(|| "never".into())) }
                         td { @if t.revoked { "revoked" } @else { "working" } } }
                }
            }
        }
        @if v.is_admin() { (token_form(v)) }
    };
    Ok(page(
        StatusCode::OK,
        frame(Some(v), "/ui/tokens", "Tokens", body),
    ))
}

/// An admin action (the CSRF token and the role were checked): `path` below `/ui/`.
pub async fn act(
    s: &Shared,
    v: &Viewer,
    path: &str,
    fields: &HashMap<String, String>,
) -> ApiResult<Answer> {
    let actor = Actor(v.token.name.clone());
    let segments: Vec<String> = path
        .trim_start_matches("/ui/")
        .split('/')
        .map(path_segment)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        [
            "models",
            brand,
            name,
            action @ ("enable" | "disable" | "serial-policy"),
        ] => {
            let mut q = Query::parse("");
            q.set("brand-id", brand);
            if let Some(brands) = v.brands() {
                let api = ["v1", "models", name, action];
                limit_to_brands(brands, &Method::POST, &api, &mut q)?;
            }
            let done = match *action {
                "serial-policy" => {
                    let key = fields.get("key").filter(|k| !k.is_empty()).ok_or_else(|| {
                        ApiError::bad_request("choose the key that signs the new revision")
                    })?;
                    let req = CreatePolicy {
                        key: key.clone(),
                        brand_id: Some(brand.to_string()),
                    };
                    policies::create(s, &q, name, req, &actor).await?;
                    "policy"
                }
                enable => {
                    let on = enable == "enable";
                    models::change(s, &q, name, models::enable(on), &actor).await?;
                    if on { "enabled" } else { "disabled" }
                }
            };
            Ok(redirect(&format!("/ui/models?done={done}")))
        }
        ["tokens"] => {
            whole_server_only(v, "tokens")?;
            let name = fields.get("name").map(|n| n.trim()).unwrap_or_default();
            if name.is_empty() {
                return Err(ApiError::bad_request("a token needs a name"));
            }
            let role = match fields.get("role").map(String::as_str) {
                Some("admin") => Role::Admin,
                _ => Role::ReadOnly,
            };
            let expires_at = match fields
                .get("days")
                .map(|d| d.trim())
                .filter(|d| !d.is_empty())
            {
                None => None,
                Some(d) => {
                    let days: i64 = d
                        .parse()
                        .ok()
                        .filter(|d| (1..=3650).contains(d))
                        .ok_or_else(|| ApiError::bad_request("days must be 1 to 3650"))?;
                    Some(OffsetDateTime::now_utc() + time::Duration::days(days))
                }
            };
            let t = s
                .store
                .create_token_for(name, role, expires_at, None, &actor)
                .await?;
            tokens_page(s, v, Some((&t.info.name, &t.secret))).await
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no action {path}"),
        )),
    }
}
