//! `serialmint migrate` and `serialmint init`: the verbs that work directly on the database
//! (from the configuration), before any admin token exists.

use secrecy::ExposeSecret;
use serde::Serialize;

use super::Error;
use super::output::{outln, print_json};
use crate::config::Config;
use crate::domain::Role;
use crate::store::{Actor, Store};

/// `migrate --json`.
#[derive(Serialize)]
struct Migrated {
    migrated: bool,
}

/// `init --json`: the new admin token, or none and how many work already.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Initialized<'a> {
    brand_id: &'a str,
    admin_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    active_admin_tokens: Option<i64>,
}

async fn connect(config: &Config) -> Result<Store, Error> {
    let store = Store::connect_url(config.database_url.expose_secret(), 2).await?;
    store.migrate().await?;
    Ok(store)
}

/// Applies the migrations.
pub async fn migrate(config: &Config, as_json: bool) -> Result<(), Error> {
    connect(config).await?;
    if as_json {
        print_json(&Migrated { migrated: true })
    } else {
        outln!("Database schema is up to date.")
    }
}

/// Creates the brand (if new) and the first admin token, printed once. When an admin token
/// that still works exists, none is made (so running `init` again does not mint admin
/// credentials behind anyone's back), unless `new_token` asks for one: the way back in when
/// every admin token is lost.
pub async fn init(
    config: &Config,
    brand_id: &str,
    new_token: bool,
    as_json: bool,
) -> Result<(), Error> {
    let store = connect(config).await?;
    let actor = Actor::bootstrap();
    store
        .ensure_brand(brand_id, &actor)
        .await
        .map_err(|source| Error::Brand {
            brand: brand_id.to_string(),
            source,
        })?;
    let active = store.working_tokens(Role::Admin).await?;
    if active > 0 && !new_token {
        if as_json {
            return print_json(&Initialized {
                brand_id,
                admin_token: None,
                active_admin_tokens: Some(active),
            });
        }
        outln!("Brand {brand_id} is ready.")?;
        return outln!(
            "An admin token exists already ({active} active), so none was created: make more \
             with `serialmint create token`, or run `serialmint init --new-token` if every \
             admin token is lost."
        );
    }
    let token = store
        .create_token("admin", Role::Admin, None, &actor)
        .await?;
    if as_json {
        print_json(&Initialized {
            brand_id,
            admin_token: Some(&token.secret),
            active_admin_tokens: None,
        })
    } else {
        outln!(
            "Brand {brand_id} is ready.\nAdmin token (shown only now; keep it secret):\n\n    \
             export SERIALMINT_ADMIN_TOKEN={}",
            token.secret
        )
    }
}
