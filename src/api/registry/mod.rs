//! The registry family (docs/api.md "Registry family"): responses are bare JSON objects.

pub mod agents;
pub mod connectors;
pub mod invoke;
pub mod projects;
pub mod usage;
