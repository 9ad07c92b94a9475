//! `GET /v1/health`: real figures from every subsystem; 503 when any is not healthy.
//! Health never needs the write lock: it reads pool state, the index reader and queue counts
//! through a pooled read connection.

use crate::domain::{JobKind, JobStatus};
use crate::error::Result;
use crate::http::{Ctx, Reply};
use crate::store::jobs as queue;
use serde_json::{json, Value};

/// Backlog above which the workers count as degraded (they are not keeping up).
const BACKLOG_DEGRADED: u64 = 1_000_000;

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

    let mut alerts: Vec<Value> = Vec::new();
    let sqlite_ok = db.writer_alive && counts.is_ok();
    if !db.writer_alive {
        alerts.push(json!({"subsystem": "sqlite", "severity": "critical", "message": "the database writer is not running"}));
    }
    if let Err(e) = &counts {
        tracing::error!(error = %e, "health: queue counts unavailable");
        alerts.push(json!({"subsystem": "sqlite", "severity": "critical", "message": "the database cannot be read"}));
    }
    if !search.healthy {
        alerts.push(json!({"subsystem": "search", "severity": "critical", "message": "the search indexer is not running or its last commit failed"}));
    }
    if search.embed_failures > 0 {
        alerts.push(json!({"subsystem": "search", "severity": "warning", "message": format!(
            "{} documents were indexed without a vector (the embeddings provider failed); run engram reindex",
            search.embed_failures)}));
    }
    let mut queues = serde_json::Map::new();
    let mut backlog = 0u64;
    for (kind, waiting, failed) in counts.as_deref().unwrap_or(&[]) {
        backlog += waiting;
        queues.insert(
            kind.to_string(),
            json!({"waiting": waiting, "active": state.jobs.active(*kind), "failed": failed}),
        );
    }
    let workers_ok = backlog < BACKLOG_DEGRADED;
    if !workers_ok {
        alerts.push(json!({"subsystem": "workers", "severity": "warning", "message": format!("{backlog} jobs are waiting")}));
    }
    let status_of = |ok: bool| if ok { "healthy" } else { "degraded" };
    let overall = if !sqlite_ok {
        "unhealthy"
    } else if !search.healthy || !workers_ok {
        "degraded"
    } else {
        "healthy"
    };
    let utilization = ((db.total - db.idle.min(db.total)) * 100)
        .checked_div(db.max)
        .unwrap_or(0) as u64;
    let data = json!({
        "status": overall,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": state.started.elapsed().as_secs(),
        "timestamp": crate::time::now_rfc3339(),
        "subsystems": {
            "sqlite": {
                "status": status_of(sqlite_ok),
                "path": db.path.display().to_string(),
                "sizeBytes": db.size_bytes,
                "walBytes": db.wal_bytes,
                "writeQueue": db.write_queue,
                "commits": db.commits,
                "connections": {
                    "total": db.total, "idle": db.idle, "waiting": db.waiting, "max": db.max,
                    "utilizationPercent": utilization,
                },
            },
            "search": {
                "status": status_of(search.healthy),
                "documents": search.documents,
                "segments": search.segments,
                "lastCommitAt": search.last_commit_at,
                "pendingDocuments": search.pending,
                "capturedSeq": captured_seq,
                "searchableSeq": searchable_seq,
                "embeddings": {
                    "model": search.embedding_model,
                    "documentsWithoutVector": search.embed_failures,
                },
            },
            "workers": {
                "status": status_of(workers_ok),
                "queues": queues,
                "totalBacklog": backlog,
                "capture": {
                    "pendingEvents": state.backlog.pending(),
                    "maxBacklog": state.backlog.max(),
                    "saturated": state.backlog.saturated(),
                },
            },
        },
        "alerts": {"firing": alerts.len(), "items": alerts},
    });
    Ok(Reply::json(
        if overall == "healthy" { 200 } else { 503 },
        data,
    ))
}
