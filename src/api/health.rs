//! `GET /v1/health`: real figures from every subsystem; 503 when any is not healthy.
//! Health never needs the write lock: it reads pool state, the index reader and queue counts
//! through a pooled read connection.

use crate::domain::{JobKind, JobStatus};
use crate::error::Result;
use crate::http::{Ctx, Reply};
use crate::store::jobs as queue;
use serde::Serialize;
use std::collections::BTreeMap;

/// Backlog above which the workers count as degraded (they are not keeping up).
const BACKLOG_DEGRADED: u64 = 1_000_000;

/// The body of `GET /v1/health`.
#[derive(Serialize)]
struct HealthReport<'a> {
    /// `healthy`, `degraded` or `unhealthy`.
    status: &'static str,
    version: &'static str,
    uptime: u64,
    timestamp: String,
    subsystems: SubsystemsHealth<'a>,
    alerts: AlertList,
}

#[derive(Serialize)]
struct SubsystemsHealth<'a> {
    /// The database, under the name of its backend (`sqlite`, or `postgres` with `--database`).
    #[serde(skip_serializing_if = "Option::is_none")]
    sqlite: Option<SqliteHealth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    postgres: Option<SqliteHealth>,
    search: SearchHealth<'a>,
    workers: WorkersHealth,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SqliteHealth {
    status: &'static str,
    path: String,
    size_bytes: u64,
    wal_bytes: u64,
    write_queue: usize,
    commits: u64,
    connections: PoolHealth,
}

/// The read connection pool.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PoolHealth {
    total: u32,
    idle: u32,
    waiting: usize,
    max: u32,
    utilization_percent: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SearchHealth<'a> {
    status: &'static str,
    documents: u64,
    segments: usize,
    last_commit_at: Option<&'a str>,
    pending_documents: u64,
    captured_seq: i64,
    searchable_seq: i64,
    embeddings: EmbeddingsHealth<'a>,
    /// PostgreSQL nodes: how this node's index follows the search feed.
    #[serde(skip_serializing_if = "Option::is_none")]
    feed: Option<FeedHealth>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FeedHealth {
    /// The index is being rebuilt from the database (a new or wiped node).
    rebuilding: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    rebuild: Option<RebuildHealth>,
    /// Feed rounds completed since the start, and documents they indexed or removed.
    rounds: u64,
    documents_applied: u64,
    /// The database's clock at the snapshot of the last completed round: everything committed
    /// before it is searchable on this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    caught_up_to: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RebuildHealth {
    documents_done: u64,
    documents_total: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbeddingsHealth<'a> {
    model: &'a str,
    documents_without_vector: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WorkersHealth {
    status: &'static str,
    /// By job kind.
    queues: BTreeMap<String, QueueHealth>,
    total_backlog: u64,
    capture: CaptureHealth,
}

#[derive(Serialize)]
struct QueueHealth {
    waiting: u64,
    active: usize,
    failed: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CaptureHealth {
    pending_events: u64,
    max_backlog: u64,
    saturated: bool,
}

#[derive(Serialize)]
struct AlertList {
    firing: usize,
    items: Vec<Alert>,
}

#[derive(Serialize)]
struct Alert {
    subsystem: &'static str,
    /// `critical` or `warning`.
    severity: &'static str,
    message: String,
}

impl Alert {
    fn new(subsystem: &'static str, severity: &'static str, message: impl Into<String>) -> Alert {
        Alert {
            subsystem,
            severity,
            message: message.into(),
        }
    }
}

pub async fn health(ctx: Ctx) -> Result<Reply> {
    let state = ctx.state.clone();
    let counts = state
        .db
        .read(|c| {
            let mut out = Vec::new();
            for kind in JobKind::ALL {
                out.push((
                    *kind,
                    queue::count(c, *kind, JobStatus::Queued)?,
                    queue::count(c, *kind, JobStatus::Failed)?,
                ));
            }
            Ok((out, crate::store::events::watermarks(c)?))
        })
        .await;
    let (counts, (captured_seq, processed_seq)) = match counts {
        Ok((c, w)) => (Ok(c), w),
        Err(e) => (Err(e), (0, 0)),
    };
    let db = state.db.stats();
    let search = state.search.stats();
    // Processed events are searchable once the index operations submitted before the watermark
    // was read are committed (`app::Searchable`); it never overstates.
    let searchable_seq = {
        let mut s = state.searchable.lock().unwrap_or_else(|p| p.into_inner());
        if counts.is_ok() {
            s.advance(processed_seq, &search)
        } else {
            s.seq.min(processed_seq)
        }
    };

    let mut alerts: Vec<Alert> = Vec::new();
    let backend = if state.db.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    let sqlite_ok = db.writer_alive && counts.is_ok();
    if !db.writer_alive {
        alerts.push(Alert::new(
            backend,
            "critical",
            "the database writer is not running",
        ));
    }
    if let Err(e) = &counts {
        tracing::error!(error = %e, "health: queue counts unavailable");
        alerts.push(Alert::new(
            backend,
            "critical",
            "the database cannot be read",
        ));
    }
    if !search.healthy {
        alerts.push(Alert::new(
            "search",
            "critical",
            "the search indexer is not running or its last commit failed",
        ));
    }
    if search.embed_failures > 0 {
        alerts.push(Alert::new(
            "search",
            "warning",
            format!(
                "{} documents were indexed without a vector (the embeddings provider failed); run engram reindex",
                search.embed_failures
            ),
        ));
    }
    let mut queues = BTreeMap::new();
    let mut backlog = 0u64;
    for (kind, waiting, failed) in counts.as_deref().unwrap_or(&[]) {
        backlog += waiting;
        queues.insert(
            kind.to_string(),
            QueueHealth {
                waiting: *waiting,
                active: state.jobs.active(*kind),
                failed: *failed,
            },
        );
    }
    let workers_ok = backlog < BACKLOG_DEGRADED;
    if !workers_ok {
        alerts.push(Alert::new(
            "workers",
            "warning",
            format!("{backlog} jobs are waiting"),
        ));
    }
    let rebuilding = search.feed.as_ref().and_then(|f| f.rebuilding);
    if let Some((done, total)) = rebuilding {
        alerts.push(Alert::new(
            "search",
            "warning",
            format!(
                "this node is rebuilding its search index from the database ({done} of {total} \
                 documents): packs may miss documents until it is done"
            ),
        ));
    }
    let search_ok = search.healthy && rebuilding.is_none();
    let status_of = |ok: bool| if ok { "healthy" } else { "degraded" };
    let overall = if !sqlite_ok {
        "unhealthy"
    } else if !search_ok || !workers_ok {
        "degraded"
    } else {
        "healthy"
    };
    let utilization = ((db.total - db.idle.min(db.total)) * 100)
        .checked_div(db.max)
        .unwrap_or(0) as u64;
    let database = SqliteHealth {
        status: status_of(sqlite_ok),
        path: db.path.display().to_string(),
        size_bytes: db.size_bytes,
        wal_bytes: db.wal_bytes,
        write_queue: db.write_queue,
        commits: db.commits,
        connections: PoolHealth {
            total: db.total,
            idle: db.idle,
            waiting: db.waiting,
            max: db.max,
            utilization_percent: utilization,
        },
    };
    let (sqlite, postgres) = if state.db.is_postgres() {
        (None, Some(database))
    } else {
        (Some(database), None)
    };
    let data = HealthReport {
        status: overall,
        version: env!("CARGO_PKG_VERSION"),
        uptime: state.started.elapsed().as_secs(),
        timestamp: crate::time::now_rfc3339(),
        subsystems: SubsystemsHealth {
            sqlite,
            postgres,
            search: SearchHealth {
                status: status_of(search_ok),
                documents: search.documents,
                segments: search.segments,
                last_commit_at: search.last_commit_at.as_deref(),
                pending_documents: search.pending,
                captured_seq,
                searchable_seq,
                embeddings: EmbeddingsHealth {
                    model: &search.embedding_model,
                    documents_without_vector: search.embed_failures,
                },
                feed: search.feed.as_ref().map(|f| FeedHealth {
                    rebuilding: f.rebuilding.is_some(),
                    rebuild: f.rebuilding.map(|(done, total)| RebuildHealth {
                        documents_done: done,
                        documents_total: total,
                    }),
                    rounds: f.rounds,
                    documents_applied: f.applied,
                    caught_up_to: (f.last_round_db_ms > 0)
                        .then(|| {
                            chrono::DateTime::from_timestamp_millis(f.last_round_db_ms as i64)
                                .map(crate::time::rfc3339)
                        })
                        .flatten(),
                }),
            },
            workers: WorkersHealth {
                status: status_of(workers_ok),
                queues,
                total_backlog: backlog,
                capture: CaptureHealth {
                    pending_events: state.backlog.pending(),
                    max_backlog: state.backlog.max(),
                    saturated: state.backlog.saturated(),
                },
            },
        },
        alerts: AlertList {
            firing: alerts.len(),
            items: alerts,
        },
    };
    Ok(Reply::json(
        if overall == "healthy" { 200 } else { 503 },
        data,
    ))
}
