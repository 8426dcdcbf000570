//! `serialmint migrate` and `serialmint init`: the verbs that work directly on the database
//! (from the configuration), before any admin token exists.

use secrecy::ExposeSecret;
use serde_json::json;

use crate::config::Config;
use crate::store::{Actor, Role, Store};

use super::output::print_json;

async fn connect(config: &Config) -> Result<Store, String> {
    let store = Store::connect_url(config.database_url.expose_secret(), 2)
        .await
        .map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    Ok(store)
}

/// Applies the migrations.
pub async fn migrate(config: &Config, as_json: bool) -> Result<(), String> {
    connect(config).await?;
    if as_json {
        print_json(&json!({"migrated": true}));
    } else {
        println!("Database schema is up to date.");
    }
    Ok(())
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
) -> Result<(), String> {
    let store = connect(config).await?;
    let actor = Actor::bootstrap();
    store
        .ensure_brand(brand_id, &actor)
        .await
        .map_err(|e| format!("cannot create brand {brand_id:?}: {e}"))?;
    let active = store
        .working_tokens(Role::Admin)
        .await
        .map_err(|e| e.to_string())?;
    if active > 0 && !new_token {
        if as_json {
            print_json(&json!({
                "brand-id": brand_id,
                "admin-token": null,
                "active-admin-tokens": active,
            }));
        } else {
            println!("Brand {brand_id} is ready.");
            println!(
                "An admin token exists already ({active} active), so none was created: make more \
                 with `serialmint create token`, or run `serialmint init --new-token` if every \
                 admin token is lost."
            );
        }
        return Ok(());
    }
    let token = store
        .create_token("admin", Role::Admin, None, &actor)
        .await
        .map_err(|e| e.to_string())?;
    if as_json {
        print_json(&json!({"brand-id": brand_id, "admin-token": token.secret}));
    } else {
        println!("Brand {brand_id} is ready.");
        println!("Admin token (shown only now; keep it secret):");
        println!();
        println!("    export SERIALMINT_ADMIN_TOKEN={}", token.secret);
    }
    Ok(())
}
