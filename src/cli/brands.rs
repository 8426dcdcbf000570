//! `create brand` and `list brands`: the brand accounts this vault serves (`init` makes the
//! first; `--brand` on the other verbs picks one when there are several).

use serde::Serialize;

use super::Error;
use super::client::Client;
use super::output::{outln, print_json, print_rows, short_time};
use crate::admin_api::wire::{BrandView, CreateBrand, List};

/// `create brand --json`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Created<'a> {
    brand_id: &'a str,
}

/// Adds brand `account_id`.
pub async fn create(client: &Client, account_id: &str, as_json: bool) -> Result<(), Error> {
    let request = CreateBrand {
        account_id: account_id.to_string(),
    };
    let b: BrandView = client.post("/v1/brands", &request).await?;
    if as_json {
        return print_json(&Created {
            brand_id: &b.account_id,
        });
    }
    outln!(
        "Brand {} is ready; name it with --brand {} on the other verbs.",
        b.account_id,
        b.account_id
    )
}

/// Lists brands: Brand, Created.
pub async fn list(client: &Client, as_json: bool) -> Result<(), Error> {
    let brands: List<BrandView> = client.get("/v1/brands").await?;
    print_rows(
        &brands.items,
        as_json,
        Clone::clone,
        &["Brand", "Created"],
        |b| vec![b.account_id.clone(), short_time(Some(b.created_at))],
        "No brands.",
    )
}
