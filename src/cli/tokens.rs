//! `create token` and `list tokens`: admin API tokens (a secret is shown once, at creation).

use serde::Serialize;
use time::OffsetDateTime;

use super::Error;
use super::client::Client;
use super::output::{outln, print_json, print_rows, short_time};
use crate::admin_api::wire::{CreateToken, CreatedToken, List, TokenView};
use crate::domain::Role;

/// `create token --json`.
#[derive(Serialize)]
struct Created<'a> {
    name: &'a str,
    role: Role,
    token: &'a str,
}

/// Creates a token with `role`, printed once.
pub async fn create(
    client: &Client,
    name: &str,
    role: Role,
    expires_at: Option<OffsetDateTime>,
    as_json: bool,
) -> Result<(), Error> {
    let request = CreateToken {
        name: name.to_string(),
        role: Some(role),
        expires_at,
    };
    let t: CreatedToken = client.post("/v1/tokens", &request).await?;
    if as_json {
        print_json(&Created {
            name: &t.name,
            role: t.role,
            token: &t.token,
        })
    } else {
        outln!(
            "Created {} token {} (shown only now; keep it secret):\n\n    {}",
            t.role,
            t.name,
            t.token
        )
    }
}

/// Lists tokens (never their secrets).
pub async fn list(client: &Client, as_json: bool) -> Result<(), Error> {
    let tokens: List<TokenView> = client.get("/v1/tokens").await?;
    print_rows(
        &tokens.items,
        as_json,
        Clone::clone,
        &["Id", "Name", "Role", "Expires", "Last used", "State"],
        |t| {
            vec![
                t.id.to_string(),
                t.name.clone(),
                t.role.to_string(),
                short_time(t.expires_at),
                short_time(t.last_used_at),
                if t.revoked { "revoked" } else { "active" }.to_string(),
            ]
        },
        "No tokens.",
    )
}
