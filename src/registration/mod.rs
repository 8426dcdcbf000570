//! Device business logic, independent of HTTP: request-ids and serial issuance.

pub mod request_id;

pub use request_id::{RequestIdError, RequestIds};
