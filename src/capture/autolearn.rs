//! Automatic learning: capture enqueues a `learn` job every `auto_learn_every` processed events of a
//! tenant, and a periodic sweep enqueues one for tenants whose events have waited unlearned.
//!
//! Invariants:
//! - A tenant never gets a second *queued* learn job: the queued one compiles every unlearned event
//!   when it runs (incremental scope), so another would add nothing.
//! - The sweep skips tenants with a queued or running learn job.
//! - Auto jobs carry the input `{"scope":"incremental","trigger":"auto"|"sweep"}` (the learn job
//!   input format: the POST /v1/learn body plus `trigger`).
//! - The sweep task stops when the server shuts down.

use crate::app::AppState;
use crate::domain::{JobKind, KeyMode};
use crate::error::Result;
use crate::jobs::learn::JobInput;
use crate::store::{jobs, usage, Conn};
use std::sync::Arc;
use tokio::sync::watch;

/// Events of a tenant processed so far (both key modes).
pub fn processed_total(conn: &Conn, tenant_id: &str) -> Result<i64> {
    all_time(conn, tenant_id, usage::EVENTS_PROCESSED)
}

/// A usage metric's all-time count over both key modes.
fn all_time(conn: &Conn, tenant_id: &str, metric: &str) -> Result<i64> {
    let mut total = 0;
    for mode in KeyMode::ALL {
        total += usage::get(conn, tenant_id, mode.as_str(), metric, usage::ALL_TIME)?;
    }
    Ok(total)
}

/// Events a tenant has ever ingested (both key modes; not lowered when sessions are forgotten).
pub fn ingested_total(conn: &Conn, tenant_id: &str) -> Result<i64> {
    all_time(conn, tenant_id, usage::EVENTS)
}

/// Call in the transaction that counted `n` more processed events (`before` = the count until
/// then): enqueues a learn job when a multiple of `every` was crossed. Returns its id.
pub fn on_processed(
    conn: &Conn,
    tenant_id: &str,
    before: i64,
    n: i64,
    every: u64,
) -> Result<Option<String>> {
    if every == 0 || n <= 0 {
        return Ok(None);
    }
    let every = every as i64;
    if (before + n) / every == before / every || jobs::has_queued(conn, tenant_id, JobKind::Learn)?
    {
        return Ok(None);
    }
    let input = JobInput::automatic("auto").to_value();
    Ok(Some(jobs::enqueue(
        conn,
        tenant_id,
        JobKind::Learn,
        &input,
    )?))
}

/// Enqueues a learn job for every tenant with unlearned events and no queued or running learn job.
/// Returns the tenants it enqueued for.
pub fn sweep(conn: &Conn) -> Result<Vec<String>> {
    let tenants = jobs::tenants_with_unlearned_events(conn, JobKind::Learn)?;
    let input = JobInput::automatic("sweep").to_value();
    for t in &tenants {
        jobs::enqueue(conn, t, JobKind::Learn, &input)?;
    }
    Ok(tenants)
}

/// Starts the periodic sweep (when `config.auto_learn_sweep` is non-zero). It runs on the tokio
/// runtime, does its SQL on the writer thread, and ends when `stop` turns true or is dropped.
pub fn start_sweep(state: Arc<AppState>, stop: watch::Receiver<bool>) {
    let period = state.config.auto_learn_sweep;
    if period.is_zero() {
        return;
    }
    super::every(period, stop, move || {
        let state = state.clone();
        async move {
            match state.db.write(sweep).await {
                Ok(tenants) if !tenants.is_empty() => {
                    tracing::info!(
                        tenants = tenants.len(),
                        "auto-learn sweep enqueued learn jobs"
                    );
                    state.jobs.ring(JobKind::Learn);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "auto-learn sweep failed"),
            }
        }
    });
}
