//! synthesize tests.
