//! The wire of `/v1/remodel-policies`: which devices may re-register from one model to
//! another (remodel). The brand of a policy is the brand of the model devices move to
//! (`brand-id` in the query, as for every route; the only brand when absent). `GET` filters
//! with `?to-model=`; `DELETE` names the move with `?from-brand=&from-model=&to-model=`
//! (`from-brand` defaults to the policy's brand).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// `POST /v1/remodel-policies`: let devices holding a serial of `from-brand`/`from-model`
/// re-register as `to-model` (answered 201 with a [`RemodelPolicyView`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CreateRemodelPolicy {
    /// The original serial's brand (the policy's own brand when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_brand: Option<String>,
    /// The original serial's model.
    pub from_model: String,
    /// The model devices move to (one of the brand's).
    pub to_model: String,
    /// A regular expression the original serial number must match whole (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// A remodel policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RemodelPolicyView {
    /// The brand of the model devices move to.
    pub brand_id: String,
    /// The original serial's brand.
    pub from_brand: String,
    /// The original serial's model.
    pub from_model: String,
    /// The model devices move to.
    pub to_model: String,
    /// The pattern original serial numbers must match whole; `null`: any.
    pub serial: Option<String>,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The token that made it.
    pub created_by: String,
}
