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
    #[serde(skip_serializing_if = "Option::is_none")]
    brands: Option<&'a [String]>,
}

/// Creates a token with `role`, printed once.
pub async fn create(
    client: &Client,
    name: &str,
    role: Role,
    expires_at: Option<OffsetDateTime>,
    as_json: bool,
) -> Result<(), Error> {
    // `--brand B` (or `B1,B2`) on `create token` limits the token to those brands.
    let brands = client.brand().map(|b| {
        b.split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(str::to_string)
            .collect()
    });
    let request = CreateToken {
        name: name.to_string(),
        role: Some(role),
        expires_at,
        brands,
    };
    let t: CreatedToken = client.post("/v1/tokens", &request).await?;
    if as_json {
        print_json(&Created {
            name: &t.name,
            role: t.role,
            token: &t.token,
            brands: t.brands.as_deref(),
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
        &[
            "Id",
            "Name",
            "Role",
            "Brands",
            "Expires",
            "Last used",
            "State",
        ],
        |t| {
            vec![
                t.id.to_string(),
                t.name.clone(),
                t.role.to_string(),
                t.brands.as_ref().map_or("all".into(), |b| b.join(",")),
                short_time(t.expires_at),
                short_time(t.last_used_at),
                if t.revoked { "revoked" } else { "active" }.to_string(),
            ]
        },
        "No tokens.",
    )
}
