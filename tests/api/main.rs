//! The one integration test binary: every test talks HTTP to a real engram server.

mod support;

mod foundation;
