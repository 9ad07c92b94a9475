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
    /// The last `searchableSeq` health reported (`api::health`).
    pub searchable_seq: std::sync::atomic::AtomicI64,
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
