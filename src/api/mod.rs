//! HTTP handlers, one module per resource. Handlers validate input, check permissions, call the
//! store/jobs/search layers and build replies; they hold no state of their own.

pub mod admin;
pub mod fixture;
pub mod health;
pub mod memory;
pub mod registry;

/// The version of the official Python SDK (`hippocortex`) this build is tested against
/// (tests/python/requirements.txt), sent as `x-hippocortex-latest-sdk-python` on memory-family
/// responses: an SDK older than it warns its user once, and one at or past it stays quiet.
pub const TESTED_SDK_PYTHON: &str = "1.2.1";

#[cfg(test)]
mod tests {
    #[test]
    fn the_announced_sdk_version_is_the_pinned_one() {
        let pinned = include_str!("../../tests/python/requirements.txt")
            .lines()
            .find_map(|l| l.trim().strip_prefix("hippocortex=="))
            .expect("hippocortex is pinned");
        assert_eq!(pinned.trim(), super::TESTED_SDK_PYTHON);
    }
}
