//! The `learn` job kind.

use super::{Job, JobHandler, KindSpec, Outcome};
use crate::app::AppState;
use std::sync::Arc;

struct Handler;

impl JobHandler for Handler {
    fn run(&self, _job: &Job) -> Result<Outcome, String> {
        Err("learn jobs are not implemented yet".into())
    }
}

/// How `learn` jobs run on this server.
pub fn spec(state: &Arc<AppState>) -> KindSpec {
    KindSpec {
        kind: super::LEARN,
        workers: state.config.learn_workers,
        handler: Arc::new(Handler),
    }
}
