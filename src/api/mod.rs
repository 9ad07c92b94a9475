//! HTTP handlers, one module per resource. Handlers validate input, check permissions, call the
//! store/jobs/search layers and build replies; they hold no state of their own.

pub mod health;
pub mod memory;
pub mod registry;
