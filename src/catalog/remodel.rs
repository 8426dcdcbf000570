//! The remodel policies of a catalog snapshot, compiled once per load: for each move
//! (original brand and model to one of the vault's models) the serial pattern, as a regular
//! expression anchored at both ends, or none (any serial). A pattern that no longer compiles
//! (the store refuses such patterns; this is a guard) allows nothing: fail closed.

use std::collections::HashMap;

use regex::Regex;

use super::Snapshot;
use crate::store::{RemodelPolicy, compile_serial_pattern};

/// (to brand, to model, from brand, from model).
type Move = (String, String, String, String);

/// What a policy allows of the original serial numbers.
#[derive(Debug)]
enum Serials {
    Any,
    Matching(Regex),
    Nothing,
}

/// The remodel policies of one snapshot, by move.
#[derive(Debug, Default)]
pub(super) struct RemodelTable {
    moves: HashMap<Move, Serials>,
}

impl RemodelTable {
    fn build(policies: Vec<RemodelPolicy>) -> Self {
        let moves = policies
            .into_iter()
            .map(|p| {
                let serials = match &p.serial_pattern {
                    None => Serials::Any,
                    Some(pattern) => match compile_serial_pattern(pattern) {
                        Ok(re) => Serials::Matching(re),
                        Err(e) => {
                            tracing::warn!(policy = %p.describe(), error = %e,
                                "catalog: remodel policy's serial pattern does not compile; it allows nothing");
                            Serials::Nothing
                        }
                    },
                };
                let key = (p.brand_id, p.to_model, p.from_brand_id, p.from_model);
                (key, serials)
            })
            .collect();
        RemodelTable { moves }
    }
}

impl Snapshot {
    /// This snapshot with `policies` as its remodel policies.
    pub fn with_remodel_policies(mut self, policies: Vec<RemodelPolicy>) -> Self {
        self.remodel = RemodelTable::build(policies);
        self
    }

    /// Whether a remodel policy lets the device holding serial `serial` of
    /// `from_brand`/`from_model` re-register as `to_brand`/`to_model`.
    pub fn remodel_allowed(
        &self,
        (from_brand, from_model, serial): (&str, &str, &str),
        (to_brand, to_model): (&str, &str),
    ) -> bool {
        let key = (
            to_brand.to_owned(),
            to_model.to_owned(),
            from_brand.to_owned(),
            from_model.to_owned(),
        );
        match self.remodel.moves.get(&key) {
            Some(Serials::Any) => true,
            Some(Serials::Matching(re)) => re.is_match(serial),
            Some(Serials::Nothing) | None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pattern: Option<&str>) -> RemodelPolicy {
        RemodelPolicy {
            id: 1,
            brand_id: "acme".into(),
            to_model: "b".into(),
            to_model_id: 2,
            from_brand_id: "acme".into(),
            from_model: "a".into(),
            serial_pattern: pattern.map(str::to_owned),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            created_by: "t".into(),
        }
    }

    #[test]
    fn moves_match_whole_serials_and_nothing_else() {
        let s = Snapshot::default().with_remodel_policies(vec![policy(Some("A-[0-9]+"))]);
        assert!(s.remodel_allowed(("acme", "a", "A-12"), ("acme", "b")));
        assert!(!s.remodel_allowed(("acme", "a", "xA-12"), ("acme", "b")));
        assert!(!s.remodel_allowed(("acme", "a", "A-12x"), ("acme", "b")));
        assert!(!s.remodel_allowed(("acme", "c", "A-12"), ("acme", "b")));
        assert!(!s.remodel_allowed(("other", "a", "A-12"), ("acme", "b")));
        assert!(!s.remodel_allowed(("acme", "b", "A-12"), ("acme", "a")));
        let any = Snapshot::default().with_remodel_policies(vec![policy(None)]);
        assert!(any.remodel_allowed(("acme", "a", "whatever"), ("acme", "b")));
        let broken = Snapshot::default().with_remodel_policies(vec![policy(Some("("))]);
        assert!(!broken.remodel_allowed(("acme", "a", "("), ("acme", "b")));
    }
}
