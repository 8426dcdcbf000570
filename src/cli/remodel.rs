//! `create remodel-policy`, `list remodel-policies` and `delete remodel-policy`: which
//! devices may re-register from one model to another (remodel). Each is one call to
//! `/v1/remodel-policies`; the policy belongs to the brand of the model devices move to
//! (`--brand`, or the vault's only brand).

use hyper::Method;
use serde::Serialize;

use super::Error;
use super::client::Client;
use super::output::{outln, print_json, print_rows, short_time};
use crate::admin_api::wire::{CreateRemodelPolicy, List, RemodelPolicyView};

/// `serialmint create remodel-policy`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The model devices are registered as now (their current serial's model).
    #[arg(long)]
    pub from_model: String,
    /// That model's brand (default: the brand of --to-model).
    #[arg(long)]
    pub from_brand: Option<String>,
    /// The model they may re-register as (one of the brand's).
    #[arg(long)]
    pub to_model: String,
    /// A regular expression the current serial number must match whole (default: any).
    #[arg(long)]
    pub serial: Option<String>,
    /// Print {"from-brand", "from-model", "to-model", "serial"}.
    #[arg(long)]
    pub json: bool,
}

/// `serialmint list remodel-policies`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only moves to this model.
    #[arg(long)]
    pub to_model: Option<String>,
    /// Print a JSON list of {"from-brand", "from-model", "to-model", "serial"}.
    #[arg(long)]
    pub json: bool,
}

/// `serialmint delete remodel-policy`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The model devices move from.
    #[arg(long)]
    pub from_model: String,
    /// Its brand (default: the brand of --to-model).
    #[arg(long)]
    pub from_brand: Option<String>,
    /// The model devices move to.
    #[arg(long)]
    pub to_model: String,
    /// Print the deleted policy's {"from-brand", "from-model", "to-model", "serial"}.
    #[arg(long)]
    pub json: bool,
}

/// What `--json` prints of a policy.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Shown<'a> {
    from_brand: &'a str,
    from_model: &'a str,
    to_model: &'a str,
    serial: Option<&'a str>,
}

impl<'a> From<&'a RemodelPolicyView> for Shown<'a> {
    fn from(p: &'a RemodelPolicyView) -> Self {
        Shown {
            from_brand: &p.from_brand,
            from_model: &p.from_model,
            to_model: &p.to_model,
            serial: p.serial.as_deref(),
        }
    }
}

/// `from-brand/from-model -> brand/to-model`.
fn described(p: &RemodelPolicyView) -> String {
    format!(
        "{}/{} -> {}/{}",
        p.from_brand, p.from_model, p.brand_id, p.to_model
    )
}

/// Which serials a policy lets move, in words.
fn serials(p: &RemodelPolicyView) -> String {
    p.serial.as_deref().map_or_else(
        || "any serial".to_string(),
        |s| format!("serials matching {s}"),
    )
}

/// Creates a remodel policy.
pub async fn create(client: &Client, a: CreateArgs) -> Result<(), Error> {
    let request = CreateRemodelPolicy {
        from_brand: a.from_brand,
        from_model: a.from_model,
        to_model: a.to_model,
        serial: a.serial,
    };
    let p: RemodelPolicyView = client.post("/v1/remodel-policies", &request).await?;
    if a.json {
        return print_json(&Shown::from(&p));
    }
    outln!(
        "Devices may now re-register {} ({}).",
        described(&p),
        serials(&p)
    )
}

/// Lists remodel policies, oldest first.
pub async fn list(client: &Client, a: ListArgs) -> Result<(), Error> {
    let path = match &a.to_model {
        Some(m) => format!("/v1/remodel-policies?{}", query(&[("to-model", m)])),
        None => "/v1/remodel-policies".to_string(),
    };
    let policies: List<RemodelPolicyView> = client.get(&path).await?;
    print_rows(
        &policies.items,
        a.json,
        Shown::from,
        &["From", "To", "Serial", "Created", "Created by"],
        |p| {
            vec![
                format!("{}/{}", p.from_brand, p.from_model),
                format!("{}/{}", p.brand_id, p.to_model),
                p.serial.clone().unwrap_or_else(|| "*".to_string()),
                short_time(Some(p.created_at)),
                p.created_by.clone(),
            ]
        },
        "No remodel policies.",
    )
}

/// Deletes the policy of one move.
pub async fn delete(client: &Client, a: DeleteArgs) -> Result<(), Error> {
    let mut pairs = vec![("from-model", a.from_model.as_str())];
    pairs.extend(a.from_brand.as_deref().map(|b| ("from-brand", b)));
    pairs.push(("to-model", a.to_model.as_str()));
    let path = format!("/v1/remodel-policies?{}", query(&pairs));
    let p: RemodelPolicyView = client.request(Method::DELETE, &path, &()).await?;
    if a.json {
        return print_json(&Shown::from(&p));
    }
    outln!("Deleted remodel policy {}.", described(&p))
}

fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}
