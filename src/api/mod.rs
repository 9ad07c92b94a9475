//! HTTP handlers, one module per resource. Handlers validate input, check permissions, call the
//! store/jobs/search layers and build replies; they hold no state of their own.

pub mod health;
pub mod memory;
pub mod registry;

use crate::error::Error;

/// Scaffolding for a route whose capability has not landed yet.
pub(crate) fn not_yet(what: &str) -> Error {
    Error::Unavailable(format!("{what} is not available yet in this engram build"))
}
