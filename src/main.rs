//! The `engram` command: run the server, or manage keys and tenants directly on a data dir.
//!
//! Every flag can also be set through an `ENGRAM_*` environment variable (shown in `--help`).
//! Exit codes: 0 success, 1 runtime failure, 2 usage error (from clap).

use clap::{Args, Parser, Subcommand, ValueEnum};
use engram::auth::Scopes;
use engram::config::{Config, LogFormat};
use engram::plans::Plan;
use engram::store::{self, keys, tenants};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "engram",
    version,
    about = "engram: a home and a memory for AI agents, in one binary.",
    long_about = "engram serves the agent-registry API (projects, members, keys, agents, \
                  invocation) and the agent-memory API (capture, learn, synthesize) from one \
                  SQLite file and a local search index.\n\n\
                  Quick start:\n  engram serve                      # listens on 127.0.0.1:8080, data in ./engram-data\n  \
                  engram keys create --name ci       # another API key for the default tenant\n\n\
                  The first start prints an admin API key once. Every flag can also be given as an \
                  ENGRAM_* environment variable."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Serve from (or run the command on) this PostgreSQL database
    /// (postgres://user[:password]@host[:port]/database) instead of the data dir's SQLite file;
    /// an empty database gets the schema. The data dir still holds the node's search index
    /// (rebuilt from the database when missing) and the vault key. `engram migrate --to` moves a
    /// SQLite data dir there (docs/scale-out.md).
    #[arg(
        long,
        global = true,
        env = "ENGRAM_DATABASE_URL",
        hide_env_values = true
    )]
    database: Option<String>,
}

/// `--database`: PostgreSQL instead of the data dir's SQLite file (set once, at start).
static DATABASE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

fn database() -> Option<&'static str> {
    DATABASE.get().and_then(|d| d.as_deref())
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve(Box<ServeArgs>),
    /// Create, list and revoke API keys (works whether or not a server runs on the data dir).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Create and list tenants, change their plan and limits.
    Tenants {
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// Extend the public connector catalogue (GET /v1/connectors/registry).
    Connectors {
        #[command(subcommand)]
        command: ConnectorsCommand,
    },
    /// Rebuild the search index from the database, re-embedding every document (stop the server
    /// first). Pass the same embeddings options the server runs with.
    Reindex(ReindexArgs),
    /// Upgrade the data dir's database to this engram's schema (stop the server first; `serve`
    /// does it at start too). Other commands do not migrate a dir a server is using. With
    /// `--to postgres://…`, then copy it into an empty PostgreSQL database (docs/scale-out.md).
    Migrate {
        #[command(flatten)]
        data: DataDirArg,
        /// Copy the data dir's database into this PostgreSQL database, which must be empty or
        /// hold an interrupted copy of the same data dir (run the command again to resume);
        /// every table's row count is verified at the end.
        #[arg(long, value_name = "postgres://…")]
        to: Option<String>,
        /// Rows sent per batch (one COPY and one commit) with --to.
        #[arg(long, default_value_t = store::postgres::DEFAULT_BATCH_ROWS, requires = "to")]
        batch_rows: usize,
    },
    /// Manage the vault's master key.
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },
    /// Write one tenant as NDJSON (every record; keys as hashes, vault values as ciphertext) to a
    /// file or stdout (safe while the server runs).
    Export {
        #[command(flatten)]
        data: DataDirArg,
        /// The tenant to export (ten_…).
        #[arg(long)]
        tenant: String,
        /// Where to write it (must not exist); default stdout.
        #[arg(long)]
        to: Option<PathBuf>,
    },
    /// Recreate a tenant from an export, with its ids (stop the server first, or use
    /// POST /v1/admin/import on it). Pass the same embeddings options the server runs with.
    Import {
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        embeddings: EmbeddingArgs,
        /// The export to read; default stdin.
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Write a consistent copy of the database to a file (safe while the server runs).
    Backup {
        #[command(flatten)]
        data: DataDirArg,
        /// Where to write the copy (must not exist).
        #[arg(long, env = "ENGRAM_BACKUP_TO")]
        to: PathBuf,
    },
}

#[derive(Args, Clone)]
struct ReindexArgs {
    #[command(flatten)]
    data: DataDirArg,
    #[command(flatten)]
    embeddings: EmbeddingArgs,
}

/// Where embeddings come from: the bundled model unless an OpenAI-compatible provider is named.
#[derive(Args, Clone)]
struct EmbeddingArgs {
    /// Base URL of an OpenAI-compatible embeddings API (OpenAI, Ollama, vLLM, llama.cpp), e.g.
    /// http://127.0.0.1:11434/v1; requests go to URL/embeddings. Default: the bundled offline
    /// model. Changing it rebuilds (re-embeds) the search index at the next start.
    #[arg(long, env = "ENGRAM_EMBEDDINGS_URL")]
    embeddings_url: Option<String>,
    /// The model name sent to that API (required with --embeddings-url).
    #[arg(long, env = "ENGRAM_EMBEDDINGS_MODEL")]
    embeddings_model: Option<String>,
    /// Bearer token for that API.
    #[arg(long, env = "ENGRAM_EMBEDDINGS_KEY", hide_env_values = true)]
    embeddings_key: Option<String>,
    /// No embeddings: rank by words alone (cheapest on very large tenants; switching rebuilds the
    /// search index at the next start).
    #[arg(long, env = "ENGRAM_NO_EMBEDDINGS")]
    no_embeddings: bool,
}

impl EmbeddingArgs {
    fn config(&self) -> Result<engram::config::EmbeddingsConfig, String> {
        let url = self.embeddings_url.clone().filter(|u| !u.trim().is_empty());
        if url.is_some()
            && self
                .embeddings_model
                .as_deref()
                .map_or(true, |m| m.trim().is_empty())
        {
            return Err("--embeddings-model is required with --embeddings-url".into());
        }
        if self.no_embeddings && url.is_some() {
            return Err("--no-embeddings and --embeddings-url exclude each other".into());
        }
        if url.is_none() && self.embeddings_model.is_some() {
            return Err("--embeddings-model needs --embeddings-url (the bundled model has no choice of model)".into());
        }
        Ok(engram::config::EmbeddingsConfig {
            url,
            model: self.embeddings_model.clone(),
            api_key: self.embeddings_key.clone().filter(|k| !k.is_empty()),
            off: self.no_embeddings,
        })
    }
}

#[derive(Args, Clone)]
struct DataDirArg {
    /// Directory holding the database and the search index.
    #[arg(long, env = "ENGRAM_DATA_DIR", default_value = "./engram-data")]
    data_dir: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    data: DataDirArg,
    #[command(flatten)]
    embeddings: EmbeddingArgs,
    /// Address to listen on.
    #[arg(long, env = "ENGRAM_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Base URL clients use to reach this server (agent endpoints); default http://<listen>.
    #[arg(long, env = "ENGRAM_PUBLIC_URL")]
    public_url: Option<String>,
    /// Log format on stderr.
    #[arg(long, env = "ENGRAM_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormatArg,
    /// Plan of the default tenant created at first start, and of tenants the operator API creates
    /// without a plan (POST /v1/admin/tenants): free, developer, pro, enterprise. `engram tenants
    /// create` follows the same variable.
    #[arg(long, env = "ENGRAM_DEFAULT_PLAN", default_value = "pro")]
    default_plan: Plan,
    /// Worker threads processing captured events.
    #[arg(long, env = "ENGRAM_CAPTURE_WORKERS", default_value_t = 2)]
    capture_workers: usize,
    /// Worker threads running learn (compile) jobs.
    #[arg(long, env = "ENGRAM_LEARN_WORKERS", default_value_t = 1)]
    learn_workers: usize,
    /// Read connections in the database's pool.
    #[arg(long, env = "ENGRAM_READ_POOL", default_value_t = 8)]
    read_pool: u32,
    /// With --database: seconds a claimed job stays this node's without a renewal (it is renewed
    /// every third of that while it runs); the jobs of a node that died are claimed by others
    /// once their leases lapse.
    #[arg(long, env = "ENGRAM_JOB_LEASE_SECS", default_value_t = 30)]
    job_lease_secs: u64,
    /// Enqueue an automatic learn after this many events of a tenant (0 disables).
    #[arg(long, env = "ENGRAM_AUTO_LEARN_EVERY", default_value_t = 10)]
    auto_learn_every: u64,
    /// Seconds between sweeps that learn from tenants' remaining events (0 disables).
    #[arg(long, env = "ENGRAM_AUTO_LEARN_SWEEP_SECS", default_value_t = 300)]
    auto_learn_sweep_secs: u64,
    /// Seconds a client may take to send request headers.
    #[arg(long, env = "ENGRAM_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    header_read_timeout_secs: u64,
    /// Seconds shutdown waits for in-flight requests and jobs.
    #[arg(long, env = "ENGRAM_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    shutdown_grace_secs: u64,
    /// Seconds a keep-alive connection may stay open with no request in flight.
    #[arg(long, env = "ENGRAM_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    idle_timeout_secs: u64,
    /// Seconds a request body may take to start arriving (then it must keep --body-min-rate).
    #[arg(long, env = "ENGRAM_BODY_READ_TIMEOUT_SECS", default_value_t = 10)]
    body_read_timeout_secs: u64,
    /// Slowest average rate, in bytes per second, at which a request body may arrive.
    #[arg(long, env = "ENGRAM_BODY_MIN_RATE", default_value_t = 1024)]
    body_min_rate: u64,
    /// Seconds a response may wait on a client that stopped reading it.
    #[arg(long, env = "ENGRAM_WRITE_STALL_TIMEOUT_SECS", default_value_t = 30)]
    write_stall_timeout_secs: u64,
    /// Open client connections at most (default: derived from the open-file limit).
    #[arg(long, env = "ENGRAM_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// A reverse proxy (CIDR or address) whose X-Forwarded-For / Forwarded headers name the
    /// client; repeatable. Without it the peer address is the client.
    #[arg(
        long = "trusted-proxy",
        env = "ENGRAM_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<String>,
    /// Let tenants' connectors reach this otherwise refused destination: a CIDR block
    /// (10.0.0.0/8), an address, or host[:port] (localhost:11434); repeatable.
    #[arg(
        long = "allow-outbound",
        env = "ENGRAM_ALLOW_OUTBOUND",
        value_delimiter = ','
    )]
    allow_outbound: Vec<String>,
    /// Let tenants' connectors reach any address, private and loopback included (single-user
    /// setups only).
    #[arg(long, env = "ENGRAM_ALLOW_PRIVATE_OUTBOUND")]
    allow_private_outbound: bool,
    /// Seconds `POST /v1/learn` waits for its job when the request does not say (like
    /// `Prefer: wait=N`; for fixtures whose code calls the SDK's learn() and then reads artifacts).
    #[arg(long, env = "ENGRAM_LEARN_WAIT_SECS", default_value_t = 0)]
    learn_wait_secs: u64,
    /// An export (engram export) imported at start when its tenant does not exist yet: a known
    /// tenant, keys and data for every test run.
    #[arg(long, env = "ENGRAM_SEED")]
    seed: Option<PathBuf>,
    /// Token of the operator API (/v1/admin/*: tenants, resets); without it those routes are 404.
    /// At least 16 characters.
    #[arg(long, env = "ENGRAM_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Requests the operator API's journal keeps (GET /v1/admin/requests; 0 keeps none).
    #[arg(long, env = "ENGRAM_JOURNAL_SIZE", default_value_t = 1000)]
    journal_size: usize,
    /// Keep request and response bodies in the journal (secrets and keys redacted).
    #[arg(long, env = "ENGRAM_JOURNAL_BODIES")]
    journal_bodies: bool,
    /// Capture answers 503 (with Retry-After) past this many events waiting to be processed, and
    /// resumes below 90 % of it (0: unbounded).
    #[arg(long, env = "ENGRAM_MAX_BACKLOG", default_value_t = 1_000_000)]
    max_backlog: u64,
    /// Vault reveals per minute per API key.
    #[arg(long, env = "ENGRAM_VAULT_REVEALS_PER_MINUTE", default_value_t = 10)]
    vault_reveals_per_minute: u64,
    /// Disable rate limits and quotas (benchmarks only).
    #[arg(long, env = "ENGRAM_DISABLE_LIMITS")]
    disable_limits: bool,
    /// Concurrent searches (default: four per core).
    #[arg(long, env = "ENGRAM_SEARCH_CONCURRENCY")]
    search_concurrency: Option<usize>,
    /// Base URL of an OpenAI-compatible API (OpenAI, vLLM, llama.cpp, Ollama…), e.g. http://127.0.0.1:11434/v1.
    #[arg(long, env = "ENGRAM_OPENAI_BASE_URL")]
    openai_base_url: Option<String>,
    /// API key for the OpenAI-compatible provider.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    openai_api_key: Option<String>,
    /// Base URL of an Anthropic messages API, e.g. https://api.anthropic.com.
    #[arg(long, env = "ENGRAM_ANTHROPIC_BASE_URL")]
    anthropic_base_url: Option<String>,
    /// API key for the Anthropic provider.
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    anthropic_api_key: Option<String>,
    /// Model-name prefix → provider, comma separated (e.g. "gpt-=openai,claude-=anthropic").
    #[arg(long, env = "ENGRAM_MODEL_PROVIDERS", default_value = "")]
    model_providers: String,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (shown only once).
    Create {
        #[command(flatten)]
        data: DataDirArg,
        /// Tenant id (default: the tenant created at first start).
        #[arg(long, env = "ENGRAM_TENANT")]
        tenant: Option<String>,
        /// The developer the key belongs to, dev_… (default: the tenant's first OWNER). The
        /// key never has more than that developer's permissions.
        #[arg(long, env = "ENGRAM_KEY_DEVELOPER")]
        developer: Option<String>,
        /// A name to recognise the key by.
        #[arg(long, env = "ENGRAM_KEY_NAME", default_value = "cli")]
        name: String,
        /// Comma-separated scopes (default: the owner's role permissions).
        #[arg(long, env = "ENGRAM_KEY_SCOPES", default_value = "")]
        scopes: String,
        /// live or test (test keys count against separate usage counters).
        #[arg(long, env = "ENGRAM_KEY_MODE", default_value = "live")]
        mode: String,
        /// hk (registry style) or hx (memory style).
        #[arg(long, env = "ENGRAM_KEY_STYLE", default_value = "hk")]
        style: String,
        /// Expiry time, RFC 3339 (e.g. 2027-01-01T00:00:00Z).
        #[arg(long, env = "ENGRAM_KEY_EXPIRES_AT")]
        expires_at: Option<String>,
    },
    /// List a tenant's keys (never the secrets).
    List {
        #[command(flatten)]
        data: DataDirArg,
        #[arg(long, env = "ENGRAM_TENANT")]
        tenant: Option<String>,
    },
    /// Revoke a key by id (effective on the server within seconds).
    Revoke {
        #[command(flatten)]
        data: DataDirArg,
        #[arg(long, env = "ENGRAM_TENANT")]
        tenant: Option<String>,
        /// The key id (key_…).
        id: String,
    },
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Create a tenant with an OWNER developer and print its admin key.
    Create {
        #[command(flatten)]
        data: DataDirArg,
        #[arg(long, env = "ENGRAM_TENANT_NAME")]
        name: String,
        /// Plan: free, developer, pro, enterprise. Default: ENGRAM_DEFAULT_PLAN when set — the
        /// variable behind `serve --default-plan`, so the CLI and the operator API give new
        /// tenants the same plan — else pro. (A `--default-plan` flag given to a running server
        /// is not seen here: set ENGRAM_DEFAULT_PLAN, or pass --plan.)
        #[arg(long, env = "ENGRAM_DEFAULT_PLAN", default_value = "pro")]
        plan: Plan,
        /// The owner's email.
        #[arg(long, env = "ENGRAM_TENANT_EMAIL", default_value = "owner@localhost")]
        email: String,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Delete a tenant with all its data and keys (not the tenant created at first start).
    Delete {
        #[command(flatten)]
        data: DataDirArg,
        tenant: String,
    },
    /// Delete a tenant's data (memory, agents, projects, vault); developers, the plan and usage
    /// counters stay, and its keys too unless --drop-keys. A running server drops the index
    /// entries of the deleted data as it meets them; `engram reindex` (server stopped) clears them.
    /// With --all instead of a tenant: reset everything, like POST /v1/admin/reset (server
    /// stopped): the tenant created at first start is reset (its keys stay), every other tenant
    /// is deleted, the index is cleared to match, and --seed is imported again.
    Reset {
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        embeddings: EmbeddingArgs,
        /// The tenant to reset (ten_…); or --all.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        tenant: Option<String>,
        /// Reset every tenant (the data dir's lock is taken: stop the server first, or use
        /// POST /v1/admin/reset on it).
        #[arg(long)]
        all: bool,
        /// Delete the tenant's API keys too (not with --all: the first-start tenant keeps its keys,
        /// the others are deleted).
        #[arg(long, conflicts_with = "all")]
        drop_keys: bool,
        /// With --all: an export imported after the reset, as `serve --seed` does (the same
        /// ENGRAM_SEED), so the data dir returns to its seeded state.
        #[arg(long, env = "ENGRAM_SEED")]
        seed: Option<PathBuf>,
    },
    /// Change a tenant's plan (applied by a running server within seconds).
    SetPlan {
        #[command(flatten)]
        data: DataDirArg,
        tenant: String,
        plan: Plan,
    },
    /// Override a tenant's limits with a JSON object, e.g. '{"requestsPerMinute": 5000, "burst": 100}'
    /// (keys: requestsPerMinute burst eventsPerMonth invocationsPerMonth agents; null = unlimited).
    /// An empty string clears the overrides.
    SetLimits {
        #[command(flatten)]
        data: DataDirArg,
        tenant: String,
        limits: String,
    },
}

#[derive(Subcommand)]
enum VaultCommand {
    /// Re-encrypt every vault value under a new master key (stop the server first). With a key
    /// file the new key replaces `vault.key`; with ENGRAM_VAULT_KEY the new key is printed once
    /// and ENGRAM_VAULT_KEY must be set to it before the next start.
    RotateKey {
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Subcommand)]
enum ConnectorsCommand {
    /// Add an MCP server to the catalogue, or replace the entry with the same slug (shipped
    /// entries included: an operator entry is kept across upgrades).
    Add {
        #[command(flatten)]
        data: DataDirArg,
        /// Display name, e.g. "Epic FHIR".
        #[arg(long, env = "ENGRAM_CONNECTOR_NAME")]
        name: String,
        /// MCP endpoint: an absolute http(s) URL.
        #[arg(long, env = "ENGRAM_CONNECTOR_URL")]
        url: String,
        /// Category, e.g. EHR, Data, Payments.
        #[arg(long, env = "ENGRAM_CONNECTOR_CATEGORY")]
        category: String,
        /// Status shown to clients, e.g. Verified, Community, Beta.
        #[arg(long, env = "ENGRAM_CONNECTOR_STATUS", default_value = "Verified")]
        status: String,
        /// Catalogue slug (default: derived from the name).
        #[arg(long, env = "ENGRAM_CONNECTOR_SLUG")]
        slug: Option<String>,
    },
    /// List the catalogue (shipped and operator entries).
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Remove an entry by slug (a shipped entry stays removed across restarts).
    Remove {
        #[command(flatten)]
        data: DataDirArg,
        slug: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = DATABASE.set(cli.database.filter(|d| !d.trim().is_empty()));
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Keys { command } => keys_command(command),
        Command::Tenants { command } => tenants_command(command),
        Command::Connectors { command } => connectors_command(command),
        Command::Reindex(r) => reindex(&r.data.data_dir, &r.embeddings),
        Command::Migrate {
            data,
            to,
            batch_rows,
        } => migrate(&data.data_dir, to.as_deref(), batch_rows),
        Command::Vault {
            command: VaultCommand::RotateKey { data },
        } => rotate_vault_key(&data.data_dir),
        Command::Backup { data, to } => backup(&data.data_dir, &to),
        Command::Export { data, tenant, to } => export(&data.data_dir, &tenant, to.as_deref()),
        Command::Import {
            data,
            embeddings,
            from,
        } => import(&data.data_dir, &embeddings, from.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engram: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ENGRAM_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn serve(a: ServeArgs) -> Result<(), String> {
    let mut config = Config::for_data_dir(&a.data.data_dir);
    config.listen = a.listen;
    config.public_url = a.public_url;
    config.log_format = match a.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    config.default_plan = a.default_plan;
    config.bootstrap_key = std::env::var("ENGRAM_BOOTSTRAP_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    if let Some(k) = &config.bootstrap_key {
        if keys::parse_format(k).is_none() {
            return Err("ENGRAM_BOOTSTRAP_KEY is not a well-formed key (hk_live_/hk_test_/hx_live_/hx_test_ followed by at least 32 base62 characters)".into());
        }
    }
    config.print_bootstrap = true;
    config.capture_workers = a.capture_workers.max(1);
    config.learn_workers = a.learn_workers.max(1);
    config.read_pool_size = a.read_pool.max(1);
    config.job_lease = Duration::from_secs(a.job_lease_secs.max(1));
    config.database = database().map(str::to_string);
    config.auto_learn_every = a.auto_learn_every;
    config.auto_learn_sweep = Duration::from_secs(a.auto_learn_sweep_secs);
    config.header_read_timeout = Duration::from_secs(a.header_read_timeout_secs.max(1));
    config.shutdown_grace = Duration::from_secs(a.shutdown_grace_secs);
    config.idle_timeout = Duration::from_secs(a.idle_timeout_secs.max(1));
    config.body_read_timeout = Duration::from_secs(a.body_read_timeout_secs.max(1));
    config.body_min_rate = a.body_min_rate;
    config.write_stall_timeout = Duration::from_secs(a.write_stall_timeout_secs.max(1));
    config.max_connections = a.max_connections.unwrap_or(0);
    for p in a.trusted_proxies.iter().filter(|p| !p.trim().is_empty()) {
        config
            .trusted_proxies
            .push(p.parse().map_err(|e| format!("--trusted-proxy: {e}"))?);
    }
    for entry in a.allow_outbound.iter().filter(|p| !p.trim().is_empty()) {
        config.outbound.allow.push(
            entry
                .parse()
                .map_err(|e| format!("--allow-outbound: {e}"))?,
        );
    }
    config.outbound.allow_private = a.allow_private_outbound;
    config.vault_reveals_per_minute = a.vault_reveals_per_minute.max(1);
    config.learn_wait = Duration::from_secs(a.learn_wait_secs);
    config.max_backlog = a.max_backlog;
    config.journal_size = a.journal_size;
    config.seed = a.seed;
    config.journal_bodies = a.journal_bodies;
    if let Some(t) = a.admin_token.filter(|t| !t.is_empty()) {
        if t.len() < 16 || t.chars().any(char::is_whitespace) {
            return Err("--admin-token must be at least 16 characters without spaces".into());
        }
        config.admin_token = Some(t);
    }
    config.vault_key = vault_key_from_env();
    config.limits_enabled = !a.disable_limits;
    if let Some(n) = a.search_concurrency {
        config.search_concurrency = n.max(1);
    }
    config.openai_base_url = a.openai_base_url;
    config.openai_api_key = a.openai_api_key;
    config.anthropic_base_url = a.anthropic_base_url;
    config.anthropic_api_key = a.anthropic_api_key;
    config.model_providers = Config::parse_model_providers(&a.model_providers)
        .map_err(|e| format!("--model-providers: {e}"))?;
    config.embeddings = a.embeddings.config()?;
    init_logging(config.log_format);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("engram-http")
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let running = engram::start(config).await.map_err(|e| e.to_string())?;
        // A stable line for scripts and the test harness to find the bound address.
        eprintln!("engram listening on http://{}", running.addr);
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests and jobs");
        running.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The data dir's database, beside a server that may be running: migrated only under the
/// data-dir lock (`datadir::open_db`).
fn open(data_dir: &std::path::Path) -> Result<store::Direct, String> {
    match database() {
        Some(url) => store::open_direct_postgres(url).map_err(|e| e.to_string()),
        None => engram::datadir::open_db(data_dir, None),
    }
}

/// Runs `f` in one IMMEDIATE transaction (waits for a running server's writer if needed).
fn in_tx<T>(
    db: &mut store::Direct,
    f: impl FnOnce(&store::Conn) -> engram::error::Result<T>,
) -> Result<T, String> {
    db.transaction(f).map_err(|e| e.to_string())
}

fn resolve_tenant(conn: &store::Conn, tenant: Option<String>) -> Result<String, String> {
    match tenant {
        Some(t) => match tenants::get(conn, &t).map_err(|e| e.to_string())? {
            Some(_) => Ok(t),
            None => Err(format!("no tenant {t}")),
        },
        None => tenants::default_tenant_id(conn)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                "this data dir has no default tenant yet: start `engram serve` once, or pass --tenant"
                    .to_string()
            }),
    }
}

fn keys_command(cmd: KeysCommand) -> Result<(), String> {
    match cmd {
        KeysCommand::Create {
            data,
            tenant,
            developer,
            name,
            scopes,
            mode,
            style,
            expires_at,
        } => {
            if !matches!(mode.as_str(), "live" | "test") {
                return Err(format!("--mode must be live or test, got '{mode}'"));
            }
            if !matches!(style.as_str(), "hk" | "hx") {
                return Err(format!("--style must be hk or hx, got '{style}'"));
            }
            let scopes = Scopes::parse_list(scopes.split(',').filter(|s| !s.trim().is_empty()))
                .map_err(|e| format!("--scopes: {e}"))?;
            if let Some(e) = &expires_at {
                if engram::time::parse(e).is_none() {
                    return Err(format!("--expires-at: '{e}' is not an RFC 3339 time"));
                }
            }
            let mut conn = open(&data.data_dir)?;
            let (key, row) = in_tx(&mut conn, |c| {
                let tenant_id =
                    resolve_tenant(c, tenant).map_err(engram::error::Error::NotFound)?;
                let developer_id = match &developer {
                    None => {
                        tenants::first_owner(c, &tenant_id)?
                            .ok_or_else(|| engram::error::Error::not_found("tenant owner"))?
                            .id
                    }
                    Some(d) => {
                        let (role, project_admin) = keys::developer_grant(c, &tenant_id, d)?
                            .ok_or_else(|| {
                                engram::error::Error::NotFound(format!(
                                    "developer {d} not found in tenant {tenant_id}"
                                ))
                            })?;
                        let theirs = engram::auth::developer_scopes(role, project_admin);
                        if !scopes.is_subset_of(theirs) {
                            return Err(engram::error::Error::Forbidden(format!(
                                "--scopes exceed what developer {d} ({role}) may do: {}",
                                theirs.to_list().join(",")
                            )));
                        }
                        d.clone()
                    }
                };
                let key = keys::generate(&style, &mode);
                let row = keys::insert(
                    c,
                    &tenant_id,
                    &developer_id,
                    &name,
                    scopes,
                    &key,
                    expires_at.as_deref(),
                )?;
                Ok((key, row))
            })?;
            println!("{key}");
            eprintln!(
                "created {} ({}) for developer {} of tenant {}; scopes: {}. The key is shown \
                 only once.",
                row.id,
                row.name,
                row.developer_id,
                row.tenant_id,
                if row.scopes.is_empty() {
                    "the developer's role".to_string()
                } else {
                    row.scopes.to_list().join(",")
                }
            );
            Ok(())
        }
        KeysCommand::List { data, tenant } => {
            require_existing(&data.data_dir)?;
            let conn = open(&data.data_dir)?;
            let tenant_id = resolve_tenant(&conn.conn(), tenant)?;
            let rows = keys::list(&conn.conn(), &tenant_id, true).map_err(|e| e.to_string())?;
            println!(
                "{:<32} {:<20} {:<14} {:<6} {:<10} SCOPES",
                "ID", "NAME", "KEY", "MODE", "STATE"
            );
            for k in rows {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else if k
                    .expires_at
                    .as_deref()
                    .and_then(engram::time::parse)
                    .is_some_and(|t| t <= engram::time::now())
                {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<32} {:<20} {:<14} {:<6} {:<10} {}",
                    k.id,
                    k.name,
                    format!("{}…{}", k.prefix, k.last4),
                    k.mode,
                    state,
                    if k.scopes.is_empty() {
                        "(role)".to_string()
                    } else {
                        k.scopes.to_list().join(",")
                    }
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { data, tenant, id } => {
            let mut conn = open(&data.data_dir)?;
            let done = in_tx(&mut conn, |c| {
                let tenant_id =
                    resolve_tenant(c, tenant).map_err(engram::error::Error::NotFound)?;
                keys::revoke(c, &tenant_id, &id)
            })?;
            if done {
                eprintln!("revoked {id}");
                Ok(())
            } else {
                Err(format!("no active key {id} in this tenant"))
            }
        }
    }
}

fn tenants_command(cmd: TenantsCommand) -> Result<(), String> {
    match cmd {
        TenantsCommand::Create {
            data,
            name,
            plan,
            email,
        } => {
            let mut conn = open(&data.data_dir)?;
            let created = in_tx(&mut conn, |c| {
                tenants::create_with_owner(c, &name, plan, &email, None)
            })?;
            println!("{}", created.key);
            eprintln!(
                "created tenant {} ({}, plan {}) with owner {} and admin key {} (shown only once)",
                created.tenant.id, name, plan, created.owner.id, created.key_id
            );
            Ok(())
        }
        TenantsCommand::Delete { data, tenant } => {
            let mut conn = open(&data.data_dir)?;
            let deleted = in_tx(&mut conn, |c| {
                if tenants::default_tenant_id(c)?.as_deref() == Some(tenant.as_str()) {
                    return Err(engram::error::Error::Conflict(
                        "the tenant created at first start cannot be deleted; reset it instead"
                            .into(),
                    ));
                }
                tenants::delete(c, &tenant)
            })?;
            if !deleted {
                return Err(format!("no tenant {tenant}"));
            }
            eprintln!("deleted tenant {tenant} with all its data and keys");
            Ok(())
        }
        TenantsCommand::Reset {
            data,
            embeddings,
            tenant,
            all,
            drop_keys,
            seed,
        } => {
            let Some(tenant) = tenant.filter(|_| !all) else {
                return reset_everything(&data.data_dir, &embeddings, seed.as_deref());
            };
            // ENGRAM_SEED (set for `serve`) is no mistake here, but `--seed` given with a tenant is.
            if seed.is_some() && seed.map(Into::into) != std::env::var_os("ENGRAM_SEED") {
                return Err(
                    "--seed goes with --all (a reset of everything imports the seed \
                            again); a tenant's reset keeps no seed"
                        .into(),
                );
            }
            let mut conn = open(&data.data_dir)?;
            let found = in_tx(&mut conn, |c| tenants::reset_data(c, &tenant, !drop_keys))?;
            if !found {
                return Err(format!("no tenant {tenant}"));
            }
            eprintln!(
                "reset tenant {tenant}: its data is gone{}",
                if drop_keys {
                    ", and its keys"
                } else {
                    "; its keys still work"
                }
            );
            Ok(())
        }
        TenantsCommand::List { data } => {
            require_existing(&data.data_dir)?;
            let conn = open(&data.data_dir)?;
            let default = tenants::default_tenant_id(&conn.conn()).map_err(|e| e.to_string())?;
            println!("{:<32} {:<11} {:<24} LIMIT OVERRIDES", "ID", "PLAN", "NAME");
            for t in tenants::list(&conn.conn()).map_err(|e| e.to_string())? {
                let mark = if default.as_deref() == Some(t.id.as_str()) {
                    " (default)"
                } else {
                    ""
                };
                println!(
                    "{:<32} {:<11} {:<24} {}",
                    t.id,
                    t.plan,
                    format!("{}{mark}", t.name),
                    t.limits.map(|l| l.to_string()).unwrap_or_default()
                );
            }
            Ok(())
        }
        TenantsCommand::SetPlan { data, tenant, plan } => {
            let mut conn = open(&data.data_dir)?;
            in_tx(&mut conn, |c| tenants::set_plan(c, &tenant, plan))?;
            eprintln!("tenant {tenant} is now on plan {plan}");
            Ok(())
        }
        TenantsCommand::SetLimits {
            data,
            tenant,
            limits,
        } => {
            let parsed = if limits.trim().is_empty() {
                None
            } else {
                let v: serde_json::Value = serde_json::from_str(&limits)
                    .map_err(|e| format!("limits must be a JSON object: {e}"))?;
                let obj = v.as_object().ok_or("limits must be a JSON object")?;
                const KNOWN: [&str; 5] = [
                    "requestsPerMinute",
                    "burst",
                    "eventsPerMonth",
                    "invocationsPerMonth",
                    "agents",
                ];
                for (k, val) in obj {
                    if !KNOWN.contains(&k.as_str()) {
                        return Err(format!(
                            "unknown limit '{k}' (expected {})",
                            KNOWN.join(", ")
                        ));
                    }
                    if !(val.is_null() || val.as_u64().is_some()) {
                        return Err(format!(
                            "limit '{k}' must be a non-negative integer or null"
                        ));
                    }
                }
                Some(v)
            };
            let mut conn = open(&data.data_dir)?;
            in_tx(&mut conn, |c| {
                tenants::set_limits(c, &tenant, parsed.as_ref())
            })?;
            eprintln!("tenant {tenant} limits updated");
            Ok(())
        }
    }
}

fn connectors_command(cmd: ConnectorsCommand) -> Result<(), String> {
    use engram::catalog;
    match cmd {
        ConnectorsCommand::Add {
            data,
            name,
            url,
            category,
            status,
            slug,
        } => {
            let mut conn = open(&data.data_dir)?;
            let entry = in_tx(&mut conn, |c| {
                catalog::seed(c)?;
                catalog::add(c, slug.as_deref(), &name, &category, &status, &url)
            })?;
            eprintln!(
                "catalogue entry '{}' ({}) saved; a running server lists it at once",
                entry.slug, entry.name
            );
            Ok(())
        }
        ConnectorsCommand::List { data } => {
            require_existing(&data.data_dir)?;
            let mut conn = open(&data.data_dir)?;
            let entries = in_tx(&mut conn, |c| {
                catalog::seed(c)?;
                catalog::list(c, None)
            })?;
            println!(
                "{:<20} {:<30} {:<20} {:<10} {:<8} URL",
                "SLUG", "NAME", "CATEGORY", "STATUS", "ORIGIN"
            );
            for e in entries {
                println!(
                    "{:<20} {:<30} {:<20} {:<10} {:<8} {}",
                    e.slug,
                    e.name,
                    e.category,
                    e.status,
                    if e.builtin { "shipped" } else { "operator" },
                    e.mcp_url.unwrap_or_default()
                );
            }
            Ok(())
        }
        ConnectorsCommand::Remove { data, slug } => {
            let mut conn = open(&data.data_dir)?;
            let removed = in_tx(&mut conn, |c| {
                catalog::seed(c)?;
                catalog::remove(c, &slug)
            })?;
            if removed {
                eprintln!("removed '{slug}' from the catalogue");
                Ok(())
            } else {
                Err(format!("no catalogue entry '{slug}'"))
            }
        }
    }
}

/// Commands that only read a data dir refuse one that does not exist (exit 2) instead of creating
/// an empty one and answering from it.
fn require_existing(data_dir: &std::path::Path) -> Result<(), String> {
    if database().is_some() || data_dir.join("engram.db").is_file() {
        return Ok(());
    }
    eprintln!(
        "engram: {} is not an engram data dir (no engram.db there); give the right --data-dir \
         or ENGRAM_DATA_DIR",
        data_dir.display()
    );
    std::process::exit(2);
}

fn export(
    data_dir: &std::path::Path,
    tenant: &str,
    to: Option<&std::path::Path>,
) -> Result<(), String> {
    use std::io::Write;
    require_existing(data_dir)?;
    let conn = open(data_dir)?;
    let total = store::transfer::record_count(&conn.conn(), tenant).map_err(|e| e.to_string())?;
    let mut out: Box<dyn Write> = match to {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let progress = Progress::new("export", "records");
    let mut done = 0u64;
    let result = store::transfer::export(&conn.conn(), tenant, &mut |line| {
        out.write_all(line.as_bytes())
            .map_err(|e| engram::error::Error::Unavailable(format!("cannot write: {e}")))?;
        done += 1;
        if done % 1000 == 0 {
            progress.update(done.min(total), total);
        }
        Ok(())
    });
    let n = match result {
        Ok(n) => n,
        Err(e) => {
            drop(out);
            if let Some(path) = to {
                let _ = std::fs::remove_file(path);
            }
            return Err(e.public_message());
        }
    };
    out.flush().map_err(|e| format!("cannot write: {e}"))?;
    progress.update(n, n);
    eprintln!("exported tenant {tenant}: {n} records");
    Ok(())
}

/// A data dir opened by a command that rewrites it while no server runs: its lock (refused,
/// naming the holder, while a server or another such command has it), the database (migrated
/// under the lock), the vault key loaded and recorded as `serve` does (ENGRAM_VAULT_KEY, else
/// `<data-dir>/vault.key`), and the search index, rebuilt first when it needs it. Dropping it
/// commits the index, closes the database and releases the lock.
struct Offline {
    db: store::Db,
    search: Option<engram::search::Search>,
    _lock: engram::datadir::DirLock,
}

impl Offline {
    fn open(
        data_dir: &std::path::Path,
        embeddings: &EmbeddingArgs,
        what: &str,
    ) -> Result<Offline, String> {
        let embeddings = embeddings.config()?;
        let lock = engram::datadir::DirLock::acquire(data_dir, what)?;
        let embedder = embeddings.embedder().map_err(|e| e.to_string())?;
        let mut cfg = engram::config::Config::for_data_dir(data_dir);
        cfg.vault_key = vault_key_from_env();
        let mut dir = Offline {
            db: match database() {
                Some(url) => store::Db::open_postgres(url, 2),
                None => store::Db::open(&cfg.db_path(), 2),
            }
            .map_err(|e| e.to_string())?,
            search: None,
            _lock: lock,
        };
        engram::open_vault_key(&dir.db, &cfg).map_err(|e| e.public_message())?;
        let search = engram::search::Search::open(&cfg.index_dir(), embedder)
            .map_err(|e| e.public_message())?;
        // A PostgreSQL node rebuilds its own index when it starts (following the search feed
        // from where the rebuild began); a command has no feed position to record.
        let rebuild = search.needs_rebuild && !dir.db.is_postgres();
        let search = dir.search.insert(search);
        if rebuild {
            let progress = Progress::new("index rebuild", "documents");
            engram::search::rebuild::rebuild(&dir.db, search, |done, total| {
                progress.update(done, total)
            })
            .map_err(|e| e.public_message())?;
        }
        Ok(dir)
    }

    /// Runs `f` on the database and the index.
    fn run<T>(
        &self,
        f: impl FnOnce(&store::Db, &engram::search::Search) -> engram::error::Result<T>,
    ) -> Result<T, String> {
        let search = self.search.as_ref().ok_or("the search index is not open")?;
        f(&self.db, search).map_err(|e| e.public_message())
    }
}

impl Drop for Offline {
    fn drop(&mut self) {
        if let Some(search) = &self.search {
            search.close();
        }
        self.db.close();
    }
}

/// The vault key from the environment (never a flag: it would show in `ps`).
fn vault_key_from_env() -> Option<String> {
    std::env::var(engram::vault::KEY_ENV)
        .ok()
        .filter(|k| !k.trim().is_empty())
}

fn import(
    data_dir: &std::path::Path,
    embeddings: &EmbeddingArgs,
    from: Option<&std::path::Path>,
) -> Result<(), String> {
    use std::io::Read;
    let text = match from {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            s
        }
    };
    let dir = Offline::open(data_dir, embeddings, "import")?;
    let total = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    let progress = std::sync::Arc::new(Progress::new("import", "records"));
    let p = progress.clone();
    let (imported, indexed) = dir.run(|db, search| {
        let imported = db.write_blocking(move |c| {
            store::transfer::import_text(c, &text, &mut |n| {
                p.update(n, total.saturating_sub(2).max(n))
            })
        })?;
        progress.update(imported.records, imported.records);
        let indexed = engram::search::rebuild::index_tenant(db, search, &imported.tenant_id)?;
        Ok((imported, indexed))
    })?;
    drop(dir);
    eprintln!(
        "imported tenant {}: {} records, {indexed} documents indexed",
        imported.tenant_id, imported.records
    );
    Ok(())
}

/// `engram tenants reset --all [--seed FILE]`: what POST /v1/admin/reset does, on a stopped data
/// dir.
fn reset_everything(
    data_dir: &std::path::Path,
    embeddings: &EmbeddingArgs,
    seed: Option<&std::path::Path>,
) -> Result<(), String> {
    require_existing(data_dir)?;
    let seed = seed
        .map(engram::transfer::Seed::read)
        .transpose()
        .map_err(|e| e.public_message())?;
    let dir = Offline::open(data_dir, embeddings, "tenants reset --all")
        .map_err(|e| format!("{e} (on a running server: POST /v1/admin/reset)"))?;
    let done = dir.run(|db, search| engram::transfer::reset_all(db, search, seed.as_ref()))?;
    drop(dir);
    eprintln!(
        "reset everything: {} deleted, {}{}",
        plural(done.deleted.len(), "tenant"),
        match &done.kept {
            Some(t) => format!("{t} (created at first start) reset, its keys kept"),
            None => "no first-start tenant".to_string(),
        },
        match (&done.seeded, &seed) {
            (Some(s), Some(file)) => format!(
                "; seed {} imported again: tenant {}, {} records, {} documents indexed",
                file.path.display(),
                s.tenant_id,
                s.records,
                done.indexed
            ),
            _ => String::new(),
        }
    );
    Ok(())
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// `engram migrate`: the schema upgrade, under the data-dir lock.
fn migrate(
    data_dir: &std::path::Path,
    postgres: Option<&str>,
    batch_rows: usize,
) -> Result<(), String> {
    if let Some(url) = database() {
        if postgres.is_some() {
            return Err(
                "--to copies the data dir's SQLite database; drop --database (or \
                 ENGRAM_DATABASE_URL), which names PostgreSQL as the source"
                    .into(),
            );
        }
        // A server on this data dir runs on that database: it is not migrated under it.
        let _lock = data_dir
            .is_dir()
            .then(|| engram::datadir::DirLock::acquire(data_dir, "migrate"))
            .transpose()?;
        let mut db = store::open_direct_postgres(url).map_err(|e| e.to_string())?;
        let v = db.schema_version().map_err(|e| e.to_string())?;
        eprintln!(
            "{}: schema version {v} is this engram's; nothing to migrate",
            store::postgres::redacted(url)
        );
        return db.migrate().map_err(|e| e.to_string());
    }
    require_existing(data_dir)?;
    let _lock = engram::datadir::DirLock::acquire(data_dir, "migrate")?;
    let mut db = store::open_unmigrated(data_dir).map_err(|e| e.to_string())?;
    let (from, to) = (|| {
        let from = db.schema_version()?;
        db.migrate()?;
        Ok::<_, engram::error::Error>((from, db.schema_version()?))
    })()
    .map_err(|e| e.to_string())?;
    if from == to {
        eprintln!(
            "{}: schema version {to} is this engram's; nothing to migrate",
            data_dir.display()
        );
    } else {
        eprintln!(
            "{}: migrated the schema from version {from} to version {to}",
            data_dir.display()
        );
    }
    if let Some(url) = postgres {
        copy_to_postgres(&mut db, data_dir, url, batch_rows)?;
    }
    Ok(())
}

/// `engram migrate --to postgres://…`: the copy with a progress bar, then a table of the counts.
fn copy_to_postgres(
    db: &mut store::Direct,
    data_dir: &std::path::Path,
    url: &str,
    batch_rows: usize,
) -> Result<(), String> {
    if let Some(p) = store::postgres::url_problem(url) {
        return Err(format!("--to: {p}"));
    }
    let shown = store::postgres::redacted(url);
    eprintln!("copying {} into {shown}", data_dir.display());
    let progress = Progress::new("copy", "rows");
    let report = store::postgres::copy_to_postgres(db, url, batch_rows, |done, total| {
        progress.update(done, total)
    })
    .map_err(|e| e.to_string())?;
    let sent: u64 = report.tables.iter().map(|t| t.sent).sum();
    if !report.created_schema && sent == 0 {
        eprintln!("the database already held a complete copy of this data dir");
    } else if !report.created_schema {
        eprintln!("resumed an earlier, interrupted copy of this data dir");
    }
    println!("{:<20} {:>12} {:>12}", "TABLE", "ROWS", "SENT NOW");
    for t in &report.tables {
        println!("{:<20} {:>12} {:>12}", t.table, t.rows, t.sent);
    }
    let rows: u64 = report.tables.iter().map(|t| t.rows).sum();
    eprintln!(
        "copied and verified {rows} rows in {} tables (data dir {}); the vault's master key is not in \
         the database: nodes serving from it need the same key (vault.key or ENGRAM_VAULT_KEY)",
        report.tables.len(),
        report.source
    );
    Ok(())
}

fn reindex(data_dir: &std::path::Path, embeddings: &EmbeddingArgs) -> Result<(), String> {
    require_existing(data_dir)?;
    let embeddings = embeddings.config()?;
    let _lock = engram::datadir::DirLock::acquire(data_dir, "reindex")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let embedder = embeddings.embedder().map_err(|e| e.to_string())?;
    eprintln!("embedding model: {}", embedder.model_id());
    let progress = Progress::new("reindex", "documents");
    let n = runtime.block_on(async {
        engram::search::rebuild::rebuild_data_dir(
            data_dir,
            database(),
            embedder,
            move |done, total| progress.update(done, total),
        )
        .await
        .map_err(|e| e.to_string())
    })?;
    eprintln!("reindexed {n} documents");
    Ok(())
}

/// Progress of a long command: a bar on a terminal, a plain line every tenth otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    label: &'static str,
    unit: &'static str,
    last_tenth: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new(label: &'static str, unit: &'static str) -> Progress {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(label);
            b
        });
        Progress {
            bar,
            label,
            unit,
            last_tenth: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }

    fn update(&self, done: u64, total: u64) {
        match &self.bar {
            Some(b) => {
                b.set_length(total);
                b.set_position(done);
                if done >= total {
                    b.finish();
                }
            }
            None => {
                let tenth = (done * 10).checked_div(total).unwrap_or(10);
                let before = self
                    .last_tenth
                    .swap(tenth, std::sync::atomic::Ordering::Relaxed);
                if tenth != before {
                    eprintln!("{}: {done}/{total} {}", self.label, self.unit);
                }
            }
        }
    }
}

fn rotate_vault_key(data_dir: &std::path::Path) -> Result<(), String> {
    use engram::store::vault as v;
    use engram::vault::{MasterKey, KEY_ENV};
    require_existing(data_dir)?;
    let lock = engram::datadir::DirLock::acquire(data_dir, "vault rotate-key")?;
    let mut conn = match database() {
        Some(url) => store::open_direct_postgres(url).map_err(|e| e.to_string())?,
        None => engram::datadir::open_db(data_dir, Some(&lock))?,
    };
    let expected = store::meta_get(&conn.conn(), v::FINGERPRINT_META).map_err(|e| e.to_string())?;
    let env = vault_key_from_env();
    let old = MasterKey::load(data_dir, env.as_deref(), expected.as_deref())?;
    if expected.as_deref().is_some_and(|f| f != old.fingerprint()) {
        return Err(format!(
            "the current vault key (fingerprint {}) is not the one this vault was encrypted with \
             (fingerprint {}); nothing was changed",
            old.fingerprint(),
            expected.unwrap_or_default()
        ));
    }
    let next = MasterKey::generate(old.source.clone());
    old.stage_rotation(&next)?;
    let n = in_tx(&mut conn, |c| {
        let all = v::all_sealed(c)?;
        for (tenant, id, sealed) in &all {
            let value = old
                .open(tenant, id, &sealed.nonce, &sealed.ciphertext)
                .ok_or_else(|| {
                    engram::error::Error::Internal(format!(
                        "vault item {id} does not decrypt with the current key; nothing was changed"
                    ))
                })?;
            let (nonce, ciphertext) = next.seal(tenant, id, &value);
            v::reseal(c, tenant, id, &v::Sealed { nonce, ciphertext })?;
        }
        store::meta_set(c, v::FINGERPRINT_META, &next.fingerprint())?;
        Ok(all.len())
    });
    let n = match n {
        Ok(n) => n,
        Err(e) => {
            // Not committed: the staged key is discarded at the next load.
            let _ = MasterKey::load(data_dir, env.as_deref(), expected.as_deref());
            return Err(e);
        }
    };
    old.finish_rotation()?;
    match &old.source {
        engram::vault::Source::Env => {
            println!("{}", next.to_hex());
            eprintln!(
                "re-encrypted {n} vault values under a new key (fingerprint {}). Set {KEY_ENV} to \
                 the key printed above before the next start; the old key no longer works.",
                next.fingerprint()
            );
        }
        engram::vault::Source::File(p) => eprintln!(
            "re-encrypted {n} vault values under a new key (fingerprint {}), now in {}",
            next.fingerprint(),
            p.display()
        ),
    }
    Ok(())
}

fn backup(data_dir: &std::path::Path, to: &std::path::Path) -> Result<(), String> {
    if to.exists() {
        return Err(format!("{} already exists", to.display()));
    }
    require_existing(data_dir)?;
    open(data_dir)?.backup_to(to).map_err(|e| e.to_string())?;
    eprintln!("wrote {}", to.display());
    Ok(())
}
