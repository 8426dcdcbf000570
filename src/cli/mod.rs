//! The `serialmint` command line: `serve` and the store-admin-style admin verbs.
//!
//! The grammar lives in `args.rs`; each verb family has a file of its own. The admin verbs talk HTTP to
//! the admin listener (`SERIALMINT_ADMIN_URL`, `SERIALMINT_ADMIN_TOKEN`) through the typed
//! bodies of [`crate::admin_api::wire`], the same ones the server reads and writes; `migrate`
//! and `init` work on the database directly, from the configuration. Failures are
//! [`Error`]s, printed as one line by [`run`]; stdout closing early (`| head`) is not one.

mod args;
mod assets;
mod bootstrap;
mod brands;
pub mod client;
mod error;
mod evidence;
mod keys;
mod lifecycle;
mod model_sign;
mod models;
mod output;
mod policies;
mod remodel;
mod signing_log;
mod system_user;
mod tokens;
mod verify_serials;

use std::process::ExitCode;

pub use args::{
    Cli, Command, Create, Delete, Export, Import, List, ModelSettings, Revoke, Set, Toggle,
};
pub use error::Error;
use output::outln;

use crate::admin_api::wire::{ExportFormat, LogQuery};
use crate::config::{Config, SETTINGS};

/// How long `serve` waits for the runtime's blocking threads after the graceful drain.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the parsed command line; errors are printed as one line. Stdout closing early (a
/// pipe into `head`) ends the command quietly, with success.
pub fn run(cli: Cli) -> ExitCode {
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_closed_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serialmint: {e}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> Result<(), Error> {
    let mut overrides = cli.set.clone();
    let brand = cli.brand.clone();
    let load = |overrides: &[(String, String)]| Config::load(cli.config.as_deref(), overrides);
    match cli.command {
        Command::Serve {
            device_listen,
            admin_listen,
        } => {
            overrides.extend(device_listen.map(|v| ("device.listen".to_string(), v)));
            overrides.extend(admin_listen.map(|v| ("admin.listen".to_string(), v)));
            let config = load(&overrides)?;
            config.validate_for_serve()?;
            crate::logging::init(&config);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.worker_threads)
                .enable_all()
                .build()
                .map_err(Error::Runtime)?;
            let result = runtime.block_on(crate::server::serve(config));
            // After the graceful drain: do not wait for blocking threads without end (a
            // database or other blocking task that hangs must not keep the process alive;
            // PKCS#11 calls run on detached threads that nothing waits for anyway).
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
            Ok(result?)
        }
        Command::Config { example: true, .. } => {
            outln!("{}", crate::config::example_toml().trim_end())
        }
        Command::GenerateAssets { dir } => assets::generate(&dir),
        Command::Config { list: true, .. } => {
            for s in SETTINGS {
                outln!("{:<34} {:<38} {:<28} {}", s.key, s.env, s.default, s.help)?;
            }
            Ok(())
        }
        Command::Config { list: false, .. } => outln!("{:#?}", load(&overrides)?),
        Command::Migrate { json } => block_on(bootstrap::migrate(&load(&overrides)?, json)),
        Command::Init {
            brand_id,
            new_token,
            json,
        } => {
            let config = load(&overrides)?;
            block_on(bootstrap::init(&config, &brand_id, new_token, json))
        }
        Command::Create(c) => admin(
            brand.clone(),
            |client| async move { create(&client, c).await },
        ),
        Command::List(l) => admin(
            brand.clone(),
            |client| async move { list(&client, l).await },
        ),
        Command::RegisterKey { key, json } => admin(brand.clone(), |client| async move {
            keys::register(&client, &key, json).await
        }),
        Command::PushAccountKeys { files, json } => admin(brand.clone(), |client| async move {
            keys::push(&client, &files, json).await
        }),
        Command::Import(Import::Key { name, file, json }) => {
            admin(brand.clone(), |client| async move {
                keys::import(&client, &name, &file, json).await
            })
        }
        Command::Sign(model_sign::Sign::Model { file, key, json }) => {
            admin(brand.clone(), |client| async move {
                model_sign::model(&client, &file, key, json).await
            })
        }
        Command::Export(Export::SigningLog {
            format,
            model,
            serial,
            json,
        }) => {
            let format = if json { ExportFormat::Json } else { format };
            let filter = log_filter(model, serial);
            admin(brand.clone(), |client| async move {
                signing_log::export(&client, format, filter).await
            })
        }
        Command::Export(Export::AuditLog) => admin(brand.clone(), |client| async move {
            evidence::export_audit_log(&client).await
        }),
        Command::Export(Export::AccountKeys) => admin(brand.clone(), |client| async move {
            evidence::export_account_keys(&client).await
        }),
        Command::Export(Export::Checkpoints) => admin(brand.clone(), |client| async move {
            evidence::export_checkpoints(&client).await
        }),
        Command::Export(Export::AuditKey { key }) => admin(brand.clone(), |client| async move {
            evidence::export_audit_key(&client, key.as_deref()).await
        }),
        Command::VerifyLog {
            export,
            live,
            audit_key,
            checkpoints,
            audit_export,
            check_serials,
            trusted,
            assertions,
        } => {
            let serial_check = check_serials.then_some(evidence::SerialCheck {
                trusted,
                assertions,
            });
            if live {
                admin(brand.clone(), |client| async move {
                    evidence::verify_live(&client, &audit_key, &checkpoints, serial_check.as_ref())
                        .await
                })
            } else {
                // clap requires --export unless --live, and refuses both.
                let export =
                    export.ok_or(Error::Evidence("give --export FILE or --live".into()))?;
                evidence::verify_log(
                    &export,
                    &audit_key,
                    &checkpoints,
                    audit_export.as_deref(),
                    serial_check.as_ref(),
                )
            }
        }
        Command::Disable(t) => admin(brand.clone(), |client| async move {
            toggle(&client, t, false).await
        }),
        Command::Enable(t) => admin(brand.clone(), |client| async move {
            toggle(&client, t, true).await
        }),
        Command::Delete(Delete::RemodelPolicy(d)) => admin(brand.clone(), |client| async move {
            remodel::delete(&client, d).await
        }),
        Command::Delete(Delete::Model { name, json }) => {
            admin(brand.clone(), |client| async move {
                lifecycle::delete_model(&client, &name, json).await
            })
        }
        Command::Set(Set::ApiKey {
            model,
            api_key,
            generate: _,
            json,
        }) => admin(brand.clone(), |client| async move {
            lifecycle::set_api_key(&client, &model, api_key, json).await
        }),
        Command::Revoke(Revoke::Token { id, json }) => admin(brand.clone(), |client| async move {
            lifecycle::revoke_token(&client, id, json).await
        }),
    }
}

async fn toggle(client: &client::Client, t: Toggle, enabled: bool) -> Result<(), Error> {
    use lifecycle::Target;
    match t {
        Toggle::Key { key, json } => {
            lifecycle::set_enabled(client, Target::Key, &key, enabled, json).await
        }
        Toggle::Model { name, json } => {
            lifecycle::set_enabled(client, Target::Model, &name, enabled, json).await
        }
    }
}

/// Runs an admin verb with a client from the environment.
fn admin<F, Fut>(brand: Option<String>, verb: F) -> Result<(), Error>
where
    F: FnOnce(client::Client) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    let client = client::Client::from_env()?.for_brand(brand);
    block_on(verb(client))
}

async fn create(client: &client::Client, c: Create) -> Result<(), Error> {
    match c {
        Create::Brand { brand_id, json } => brands::create(client, &brand_id, json).await,
        Create::Token {
            name,
            role,
            expires_at,
            json,
        } => tokens::create(client, &name, role, expires_at, json).await,
        Create::Key {
            name,
            purpose,
            json,
        } => keys::create(client, &name, purpose, json).await,
        Create::Model {
            name,
            api_key,
            generate_api_key,
            settings,
            json,
        } => models::create(client, name, api_key, generate_api_key, &settings, json).await,
        Create::SerialPolicy { model, key, json } => {
            policies::create(client, model, key, json).await
        }
        Create::RemodelPolicy(a) => remodel::create(client, a).await,
        Create::SystemUser(a) => system_user::create(client, a).await,
    }
}

async fn list(client: &client::Client, l: List) -> Result<(), Error> {
    match l {
        List::Brands { json } => brands::list(client, json).await,
        List::Tokens { json } => tokens::list(client, json).await,
        List::Keys { json } => keys::list(client, json).await,
        List::Models { long, json } => models::list(client, long, json).await,
        List::SerialPolicies { model, json } => policies::list(client, model, json).await,
        List::RemodelPolicies(a) => remodel::list(client, a).await,
        List::SystemUsers(a) => system_user::list(client, a).await,
        List::Serials {
            model,
            serial,
            limit,
            json,
        } => signing_log::list(client, log_filter(model, serial), limit, json).await,
        List::AuditLog { since, limit, json } => {
            lifecycle::audit_log(client, since, limit, json).await
        }
    }
}

/// The signing-log filter of `--model` and `--serial`.
fn log_filter(model: Option<String>, serial: Option<String>) -> LogQuery {
    LogQuery {
        model,
        serial,
        ..LogQuery::default()
    }
}

fn block_on<F: std::future::Future<Output = Result<(), Error>>>(f: F) -> Result<(), Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?
        .block_on(f)
}
