//! Security: what a tenant can make engram call (SSRF), failed-authentication limiting that never
//! locks out a valid key, connection hygiene (idle, slow, stalled, capped, shutdown), clean 413s
//! for clients that write their whole body first, and the smaller promises of docs/security.md
//! (truncated echoes, the Bearer scheme, invited roles, keys for other developers, both
//! `maxTokens` spellings, secrets kept out of logs, the bootstrap key on an existing data dir).

mod auth;
mod connections;
mod inputs;
pub mod raw;
mod ssrf;
