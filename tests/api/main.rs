//! The one integration test binary: every test talks HTTP to a real engram server.

mod support;

mod admin;
mod capture;
mod cluster;
mod examples;
mod fixture;
mod foundation;
mod gateway;
pub mod invoke;
mod learn;
mod limits;
mod postgres;
mod read_your_writes;
mod recall;
mod registry;
mod saturation;
mod sdk_edges;
pub mod security;
mod synthesize;
mod synthesize_e2e;
mod transfer;
mod vault;
