//! The memory family (docs/api.md "Memory family"): responses use the `{ok, data, meta}` envelope.

pub mod artifacts;
pub mod capture;
pub mod events;
pub mod gateway;
pub mod keys;
pub mod learn;
pub mod metrics;
pub mod synthesize;
pub mod vault;
pub mod wire;
