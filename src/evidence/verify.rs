//! The offline verifier (placeholder until the export carries the chain fields).
