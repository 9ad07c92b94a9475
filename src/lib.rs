//! engram: one binary that gives AI agents a home and a memory.
//!
//! `start` opens a data dir (SQLite file + search index), starts the writer, indexer and worker
//! threads, binds the HTTP listener and returns a handle. Tests and the CLI both use it, so the
//! server a test talks to is the real one.

#![forbid(unsafe_code)]

/// The process allocator. Request handling allocates and frees many small JSON values on every
/// runtime thread at once; glibc's malloc spent about a tenth of the request threads' time in its
/// own locking and consolidation under capture load, which mimalloc's thread-local heaps avoid.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod app;
pub mod auth;
pub mod capture;
pub mod catalog;
pub mod compiler;
pub mod config;
pub mod datadir;
pub mod dates;
pub mod domain;
pub mod embed;
pub mod error;
pub mod fields;
pub mod fixture;
pub mod http;
pub mod ids;
pub mod index_doc;
pub mod jobs;
pub mod limits;
pub mod outbound;
pub mod perms;
pub mod plans;
pub mod router;
pub mod runtime;
pub mod salience;
pub mod search;
pub mod server;
pub mod store;
pub mod time;
pub mod tokens;
pub mod transfer;
pub mod vault;

use app::AppState;
use config::Config;
use error::{Error, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    /// The admin key created at first start, if this start created it.
    pub bootstrap_key: Option<String>,
    pub state: Arc<AppState>,
    /// This server's hold on its data dir (`datadir`), released when it is dropped.
    _lock: datadir::DirLock,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Graceful shutdown: stop accepting, finish in-flight requests (up to the grace period),
    /// let workers finish their jobs, commit the index, close the database.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        // Jobs in hand get the same grace period as requests; an unfinished one is `running` in
        // the queue and runs again at the next start.
        let grace = self.state.config.shutdown_grace;
        let state = self.state.clone();
        let jobs = tokio::task::spawn_blocking(move || state.jobs.shutdown());
        if tokio::time::timeout(grace, jobs).await.is_err() {
            tracing::warn!(
                ?grace,
                "background jobs did not finish within the shutdown grace period; they resume at the next start"
            );
        }
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || {
            state.search.close();
            state.db.close();
        })
        .await;
    }

    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Where the first-start admin key is written when logs are JSON (never to the log itself).
pub const BOOTSTRAP_KEY_FILE: &str = "admin-key.txt";

fn print_bootstrap_banner(key: &str, tenant_id: &str, addr: SocketAddr) {
    let line = "=".repeat(78);
    eprintln!(
        "\n{line}\n  engram first start: created tenant {tenant_id} and its admin API key.\n\n    \
         {key}\n\n  It is shown only this once. Keep it: it has every permission.\n  \
         Try:  curl -H 'Authorization: Bearer {key}' http://{addr}/v1/me\n{line}\n"
    );
}

/// The vault's master key for this data dir (`cfg.vault_key`, else `<data-dir>/vault.key`,
/// created if missing), checked against the fingerprint the database remembers (`crate::vault`):
/// another key while the vault holds items refuses the start. The key's fingerprint is recorded
/// when the database has none yet. `serve` and the commands that write a stopped data dir
/// (`engram import`, `engram tenants reset --all`) load it alike.
pub fn open_vault_key(db: &store::Db, cfg: &Config) -> Result<vault::MasterKey> {
    use store::vault::FINGERPRINT_META as FINGERPRINT;
    let expected = db.read_blocking(|c| store::meta_get(c, FINGERPRINT))?;
    let key = vault::MasterKey::load(&cfg.data_dir, cfg.vault_key.as_deref(), expected.as_deref())
        .map_err(Error::Internal)?;
    let fp = key.fingerprint();
    if expected.as_deref() == Some(fp.as_str()) {
        return Ok(key);
    }
    let items = db.read_blocking(store::vault::item_count)?;
    if expected.is_some() && items > 0 {
        return Err(Error::Internal(format!(
            "the vault key ({}, fingerprint {fp}) is not the key this database's vault was \
             encrypted with (fingerprint {}); start with the right ENGRAM_VAULT_KEY or vault.key \
             — without it the {items} stored vault values cannot be decrypted",
            match &key.source {
                vault::Source::Env => "ENGRAM_VAULT_KEY".to_string(),
                vault::Source::File(p) => p.display().to_string(),
            },
            expected.unwrap_or_default()
        )));
    }
    db.write_blocking(move |c| store::meta_set(c, FINGERPRINT, &fp))?;
    Ok(key)
}

/// Opens the data dir and starts serving.
pub async fn start(config: Config) -> Result<Running> {
    let lock = datadir::DirLock::acquire(&config.data_dir, "serve").map_err(Error::Unavailable)?;
    let cfg = config.clone();
    let (db, search, bootstrap) = tokio::task::spawn_blocking(move || -> Result<_> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
            Error::Internal(format!(
                "cannot create data dir {}: {e}",
                cfg.data_dir.display()
            ))
        })?;
        let db = match &cfg.database {
            Some(url) => store::Db::open_postgres(url, cfg.read_pool_size)?,
            None => store::Db::open(&cfg.db_path(), cfg.read_pool_size)?,
        };
        tokens::warm_up();
        if cfg.embeddings.url.is_none() && !cfg.embeddings.off {
            embed::model::StaticModel::bundled();
        }
        let plan = cfg.default_plan;
        let key = cfg.bootstrap_key.clone();
        let bootstrap =
            db.write_blocking(move |c| store::tenants::ensure_bootstrap(c, plan, key.as_deref()))?;
        db.write_blocking(catalog::seed)?;
        let embedder = cfg.embeddings.embedder()?;
        let search = search::Search::open(&cfg.index_dir(), embedder)?;
        if db.is_postgres() {
            // The index follows the database's search feed, rebuilding first in the background
            // when it must (progress in /v1/health).
            search::feed::follow(&db, &search)?;
        } else if search.needs_rebuild || search::feed::has_progress(&search) {
            let n = search::rebuild::rebuild(&db, &search, |done, total| {
                if total > 0 && (done == total || done % 50_000 < 5_000) {
                    tracing::info!(done, total, "rebuilding the search index");
                }
            })?;
            // An index that followed a PostgreSQL feed is not this database's.
            search::feed::forget_progress(&search);
            if n > 0 {
                tracing::warn!(
                    documents = n,
                    "search index was missing, unreadable or another database's; rebuilt it"
                );
            }
        }
        Ok((db, search, bootstrap))
    })
    .await
    .map_err(Error::internal)??;

    let vault_key = {
        let (db, cfg) = (db.clone(), config.clone());
        tokio::task::spawn_blocking(move || open_vault_key(&db, &cfg))
            .await
            .map_err(Error::internal)??
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::Internal(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener.local_addr().map_err(Error::internal)?;

    if let Some(b) = &bootstrap {
        if config.print_bootstrap {
            match config.log_format {
                config::LogFormat::Text => print_bootstrap_banner(&b.key, &b.tenant.id, addr),
                // Structured logs are shipped and stored: the key goes to a private file
                // instead, and the log says where.
                config::LogFormat::Json => {
                    let path = config.data_dir.join(BOOTSTRAP_KEY_FILE);
                    vault::write_private(&path, &format!("{}\n", b.key)).map_err(|e| {
                        Error::Internal(format!("cannot write {}: {e}", path.display()))
                    })?;
                    tracing::warn!(
                        tenant = %b.tenant.id,
                        path = %path.display(),
                        "first start: the admin API key was written to this file (mode 0600), \
                         not to the log; read it once, store it safely, then delete the file"
                    );
                }
            }
        }
        tracing::info!(tenant = %b.tenant.id, "first start: default tenant and admin key created");
    } else if let Some(key) = config.bootstrap_key.clone() {
        // The data dir was set up before: the key is only meaningful if it is one of its keys.
        let hash = store::keys::hash(&key);
        let known = db
            .read(move |c| store::keys::lookup(c, &hash))
            .await?
            .filter(|k| k.key.revoked_at.is_none());
        match known {
            Some(k) => tracing::info!(
                tenant = %k.key.tenant_id,
                key = %k.key.id,
                "ENGRAM_BOOTSTRAP_KEY is an existing key of this data dir; it is accepted as is"
            ),
            None => tracing::warn!(
                "ENGRAM_BOOTSTRAP_KEY was IGNORED: this data dir was initialised earlier and \
                 the key is not one of its (unrevoked) keys, so requests with it get 401. \
                 Start on an empty data dir to bootstrap with it, or create a key with \
                 `engram keys create`."
            ),
        }
    }

    let state = Arc::new(AppState {
        auth: auth::Authenticator::new(db.clone()),
        jobs: jobs::Jobs::new(
            db.clone(),
            &[jobs::CAPTURE, jobs::LEARN],
            &[jobs::LEARN],
            config.job_lease,
        ),
        limits: limits::Limits::new(
            config.limits_enabled,
            config.vault_reveals_per_minute,
            db.clone(),
            config.clock.clone(),
        ),
        vault: vault_key,
        runtime: runtime::Runtime::new(&config),
        capture: capture::combiner::Combiner::new(db.clone()),
        backlog: capture::backlog::Backlog::new(config.max_backlog),
        searchable: Default::default(),
        fixture: fixture::Fixture::new(
            if config.admin_token.is_some() {
                config.journal_size
            } else {
                0
            },
            config.journal_bodies,
        ),
        config,
        db,
        search,
        started: Instant::now(),
        bound: addr,
        inflight: Default::default(),
    });

    {
        let state = state.clone();
        let specs = vec![jobs::capture::spec(&state), jobs::learn::spec(&state)];
        tokio::task::spawn_blocking(move || state.jobs.start(specs))
            .await
            .map_err(Error::internal)??;
    }

    if let Some(seed) = state.config.seed.clone() {
        match transfer::seed(&state, &seed).await {
            Ok((tenant, true)) => tracing::info!(%tenant, seed = %seed.display(), "seeded"),
            Ok((tenant, false)) => {
                tracing::info!(%tenant, "the seed's tenant exists already; seed not imported")
            }
            Err(e) => {
                state.jobs.shutdown();
                return Err(e);
            }
        }
    }

    let (stop, stop_rx) = watch::channel(false);
    capture::autolearn::start_sweep(state.clone(), stop_rx.clone());
    capture::backlog::start(state.clone(), stop_rx.clone());
    let server = tokio::spawn(server::serve(listener, state.clone(), stop_rx));
    tracing::info!(%addr, "engram listening");
    Ok(Running {
        addr,
        bootstrap_key: bootstrap.map(|b| b.key),
        state,
        _lock: lock,
        stop,
        server,
    })
}
