//! The shared application state handed to every handler and worker.

use crate::auth::Authenticator;
use crate::config::Config;
use crate::jobs::Jobs;
use crate::limits::Limits;
use crate::runtime::Runtime;
use crate::search::Search;
use crate::store::Db;
use std::time::Instant;

pub struct AppState {
    pub config: Config,
    pub db: Db,
    pub auth: Authenticator,
    pub search: Search,
    pub jobs: Jobs,
    pub limits: Limits,
    /// The vault's master key (`crate::vault`).
    pub vault: crate::vault::MasterKey,
    /// Model providers and the MCP client for agent invocation.
    pub runtime: Runtime,
    /// What health last knew to be searchable (`api::health`, `Searchable`).
    pub searchable: std::sync::Mutex<Searchable>,
    /// Capture's backlog limit (`capture::backlog`).
    pub backlog: crate::capture::backlog::Backlog,
    /// Combines concurrent capture writes (`capture::combiner`).
    pub capture: crate::capture::combiner::Combiner,
    /// The request journal and injected faults (`crate::fixture`).
    pub fixture: crate::fixture::Fixture,
    pub started: Instant,
    /// The address the server is bound to.
    pub bound: std::net::SocketAddr,
    /// Requests being handled right now (routed and not yet answered).
    pub inflight: std::sync::atomic::AtomicUsize,
}

impl AppState {
    /// A context pack for `tenant_id` (`search::pack::synthesize_pack` with this server's search
    /// concurrency).
    pub async fn synthesize(
        &self,
        tenant_id: &str,
        req: crate::search::pack::SynthRequest,
    ) -> crate::error::Result<crate::search::pack::Pack> {
        crate::search::pack::synthesize_pack(
            &self.db,
            &self.search,
            self.config.search_concurrency,
            tenant_id,
            req,
        )
        .await
    }

    /// The base URL clients reach this server at (for agent endpoints).
    pub fn public_url(&self) -> String {
        match &self.config.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.bound),
        }
    }
}

/// The `searchableSeq` watermark of `/v1/health`: every event up to `seq` is processed and its
/// documents are committed to the index. Under a steady load the indexer always has work queued,
/// so "nothing pending" never happens; instead a processed watermark is remembered with the
/// indexer's submission count read after it (`candidate`), and becomes searchable once the
/// indexer's commits pass that count (every document of those events was submitted before it).
#[derive(Debug, Default)]
pub struct Searchable {
    pub seq: i64,
    pub candidate: Option<(u64, i64)>,
}

impl Searchable {
    /// Advances with a processed watermark read before `stats` was taken; returns the watermark.
    pub fn advance(&mut self, processed_seq: i64, stats: &crate::search::SearchStats) -> i64 {
        if stats.pending == 0 && !stats.follows_feed {
            self.seq = self.seq.max(processed_seq);
            self.candidate = None;
        } else {
            if let Some((submitted, seq)) = self.candidate {
                if stats.committed >= submitted {
                    self.seq = self.seq.max(seq);
                    self.candidate = None;
                }
            }
            if self.candidate.is_none() {
                self.candidate = Some((stats.submitted, processed_seq));
            }
        }
        self.seq.min(processed_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::Searchable;
    use crate::search::SearchStats;

    fn stats(pending: u64, submitted: u64, committed: u64) -> SearchStats {
        SearchStats {
            documents: 0,
            segments: 0,
            last_commit_at: None,
            pending,
            submitted,
            committed,
            healthy: true,
            embedding_model: String::new(),
            embed_failures: 0,
            follows_feed: false,
            feed: None,
        }
    }

    /// Under a load that never lets the indexer run dry, the watermark still advances: a
    /// processed watermark becomes searchable once the operations submitted before it are
    /// committed, never earlier.
    #[test]
    fn the_searchable_watermark_advances_under_steady_load() {
        let mut s = Searchable::default();
        assert_eq!(s.advance(50, &stats(7, 100, 93)), 0, "not yet committed");
        assert_eq!(s.advance(80, &stats(9, 130, 99)), 0, "one op short");
        assert_eq!(
            s.advance(90, &stats(5, 140, 100)),
            50,
            "ops up to 100 committed"
        );
        // The next candidate was taken at the call that promoted the last one: (140, 90).
        assert_eq!(s.advance(95, &stats(3, 150, 139)), 50);
        assert_eq!(s.advance(99, &stats(2, 160, 140)), 90);
        // An idle indexer: everything processed is searchable.
        assert_eq!(s.advance(120, &stats(0, 170, 170)), 120);
        // Never more than what is processed (a tenant's events were deleted).
        assert_eq!(s.advance(100, &stats(0, 170, 170)), 100);
    }
}
