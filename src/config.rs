//! The validated server configuration.
//!
//! `main.rs` turns flags and `ENGRAM_*` variables into a `Config`; tests build one with
//! `Config::for_data_dir`. Nothing reads the environment after this point: the config is passed
//! down explicitly (no globals), so several servers can run in one process.

use crate::outbound::{self, Cidr};
use crate::plans::Plan;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where a model name is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    Offline,
    OpenAi,
    Anthropic,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Base URL used in agent `endpoint`s; default `http://<listen address>`.
    pub public_url: Option<String>,
    pub log_format: LogFormat,
    pub default_plan: Plan,
    /// A well-formed key to use as the bootstrap admin key instead of a random one.
    pub bootstrap_key: Option<String>,
    /// Whether the first-start banner with the admin key is printed to stderr.
    pub print_bootstrap: bool,
    pub capture_workers: usize,
    pub learn_workers: usize,
    pub read_pool_size: u32,
    /// A PostgreSQL URL to serve from instead of the data dir's SQLite file
    /// (docs/scale-out.md); the data dir then holds this node's search index and vault key.
    pub database: Option<String>,
    /// PostgreSQL nodes: how long a claimed job stays this node's without a renewal (renewed
    /// every third of it while the job runs); a node that dies has its jobs re-claimed after it.
    pub job_lease: Duration,
    /// Auto-learn is enqueued after this many processed events of a tenant (0 disables).
    pub auto_learn_every: u64,
    /// Auto-learn sweep period for tenants with unlearned events (zero disables).
    pub auto_learn_sweep: Duration,
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// A request body must start arriving within this long, and then keep at least
    /// `body_min_rate` bytes per second on average (408 otherwise).
    pub body_read_timeout: Duration,
    pub body_min_rate: u64,
    /// A response the client stops reading is abandoned after this long without progress.
    pub write_stall_timeout: Duration,
    /// Open client connections at most (0 = derived from the open-file limit).
    pub max_connections: usize,
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers are believed (reverse proxies).
    pub trusted_proxies: Vec<Cidr>,
    /// What a tenant can make this server call (connector URLs).
    pub outbound: outbound::Policy,
    /// The vault's master key as 64 hex digits (`ENGRAM_VAULT_KEY`); else `vault.key` in the
    /// data dir.
    pub vault_key: Option<String>,
    /// Vault reveals per minute per key.
    pub vault_reveals_per_minute: u64,
    /// The operator API's token (`/v1/admin/*`); without it those routes do not exist.
    pub admin_token: Option<String>,
    /// Requests the journal keeps (0: none); it records only with an operator token.
    pub journal_size: usize,
    /// Whether the journal keeps (redacted) bodies.
    pub journal_bodies: bool,
    /// An export imported at start when its tenant does not exist (`serve --seed`).
    pub seed: Option<PathBuf>,
    /// Capture answers 503 past this many unprocessed events (0: unbounded).
    pub max_backlog: u64,
    /// How long `POST /v1/learn` waits for its job when the request does not say (0: not at all).
    pub learn_wait: Duration,
    /// How long shutdown waits for in-flight requests and jobs.
    pub shutdown_grace: Duration,
    /// Rate limiting and quotas (disable only for benchmarks).
    pub limits_enabled: bool,
    /// Concurrent searches; default four per core.
    pub search_concurrency: usize,
    pub openai_base_url: Option<String>,
    pub openai_api_key: Option<String>,
    pub anthropic_base_url: Option<String>,
    pub anthropic_api_key: Option<String>,
    /// Model-name prefix → provider, first match wins (e.g. `gpt-=openai`).
    pub model_providers: Vec<(String, ProviderKind)>,
    /// Where embeddings come from (default: the bundled model).
    pub embeddings: EmbeddingsConfig,
    /// The time quota periods, rate windows and usage counters follow (the wall clock unless a
    /// test moves it; `time::Clock`).
    pub clock: crate::time::Clock,
}

/// An external OpenAI-compatible embeddings provider; `url: None` = the bundled model.
#[derive(Clone, Debug, Default)]
pub struct EmbeddingsConfig {
    /// Base URL, e.g. `http://127.0.0.1:11434/v1` (requests go to `{url}/embeddings`).
    pub url: Option<String>,
    pub model: Option<String>,
    pub api_key: Option<String>,
    /// No embeddings at all (ranking by words alone).
    pub off: bool,
}

impl EmbeddingsConfig {
    /// The provider this configuration names.
    pub fn embedder(&self) -> crate::error::Result<crate::embed::Embedder> {
        if self.off {
            return Ok(crate::embed::Embedder::off());
        }
        match &self.url {
            None => Ok(crate::embed::Embedder::bundled()),
            Some(url) => crate::embed::Embedder::external(
                url,
                self.model.as_deref().unwrap_or_default(),
                self.api_key.clone(),
            ),
        }
    }
}

impl Config {
    /// Defaults for a data dir, listening on an ephemeral loopback port (tests, embedding).
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            data_dir: data_dir.into(),
            public_url: None,
            log_format: LogFormat::Text,
            default_plan: Plan::Pro,
            bootstrap_key: None,
            print_bootstrap: false,
            capture_workers: 2,
            learn_workers: 1,
            read_pool_size: 8,
            database: None,
            job_lease: Duration::from_secs(30),
            auto_learn_every: 10,
            auto_learn_sweep: Duration::from_secs(300),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(10),
            body_min_rate: 1024,
            write_stall_timeout: Duration::from_secs(30),
            max_connections: 0,
            trusted_proxies: Vec::new(),
            outbound: outbound::Policy::default(),
            vault_key: None,
            vault_reveals_per_minute: 10,
            learn_wait: Duration::ZERO,
            max_backlog: 1_000_000,
            admin_token: None,
            journal_size: 1000,
            journal_bodies: false,
            seed: None,
            shutdown_grace: Duration::from_secs(30),
            limits_enabled: true,
            // Searches are CPU-bound but each also waits on hand-offs (a blocking-pool thread, a
            // read connection); with exactly one permit per core the cores idled ~30% of the time
            // under concurrent load (synth_bench: 2 permits 2,231 req/s, 8 permits 3,294 req/s on
            // 2 cores). Four per core keeps them busy and still bounds blocking threads.
            search_concurrency: std::thread::available_parallelism()
                .map(|n| n.get() * 4)
                .unwrap_or(8),
            openai_base_url: None,
            openai_api_key: None,
            anthropic_base_url: None,
            anthropic_api_key: None,
            model_providers: Vec::new(),
            embeddings: EmbeddingsConfig::default(),
            clock: crate::time::Clock::default(),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("engram.db")
    }

    pub fn index_dir(&self) -> PathBuf {
        self.data_dir.join("index")
    }

    /// Parses `prefix=provider` pairs separated by commas.
    pub fn parse_model_providers(s: &str) -> Result<Vec<(String, ProviderKind)>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (prefix, provider) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}' is not prefix=provider"))?;
            let kind = match provider.trim().to_ascii_lowercase().as_str() {
                "openai" => ProviderKind::OpenAi,
                "anthropic" => ProviderKind::Anthropic,
                "offline" => ProviderKind::Offline,
                other => {
                    return Err(format!(
                        "unknown provider '{other}' (expected openai, anthropic or offline)"
                    ))
                }
            };
            out.push((prefix.trim().to_string(), kind));
        }
        Ok(out)
    }
}
