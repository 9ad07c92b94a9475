//! Export, import and seed of whole tenants (docs/api.md "Export and import"). The store writes
//! and reads the records (`store::transfer`); this adds what a running server does around an
//! import: index the tenant's memories and artifacts, wake the workers for its queued jobs, drop
//! cached credentials — and the reset of everything, which returns a seeded server to its seed.

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::search::{IndexOp, Search};
use crate::store::transfer::{self, Imported};
use crate::store::{tenants, Db};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Imports an export (its whole text) into the running server; answers once the tenant is
/// stored and searchable.
pub async fn import(state: &Arc<AppState>, text: String) -> Result<(Imported, u64)> {
    let imported = state
        .db
        .write(move |c| transfer::import_text(c, &text, &mut |_| {}))
        .await?;
    let tenant = imported.tenant_id.clone();
    state.auth.evict_tenant(&tenant);
    let st = state.clone();
    let indexed = tokio::task::spawn_blocking(move || {
        crate::search::rebuild::index_tenant(&st.db, &st.search, &tenant)
    })
    .await
    .map_err(Error::internal)??;
    ring_queued(state, &imported);
    Ok((imported, indexed))
}

/// Wakes the workers for the jobs an import queued.
fn ring_queued(state: &AppState, imported: &Imported) {
    for kind in imported.queued_jobs.keys() {
        state.jobs.ring(*kind);
    }
}

/// A seed file (`serve --seed`, `engram tenants reset --all --seed`): an export, read whole.
pub struct Seed {
    pub path: PathBuf,
    /// The tenant it holds.
    pub tenant_id: String,
    text: Arc<str>,
}

impl Seed {
    /// Reads a seed file and checks its header; a file that cannot be read or is not an export
    /// is refused naming it.
    pub fn read(path: &Path) -> Result<Seed> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Unavailable(format!("cannot read the seed file {}: {e}", path.display()))
        })?;
        let header = transfer::parse_header(text.lines().next().unwrap_or("")).map_err(|e| {
            Error::Unavailable(format!(
                "seed file {}: {}",
                path.display(),
                e.public_message()
            ))
        })?;
        Ok(Seed {
            path: path.to_path_buf(),
            tenant_id: header.tenant_id,
            text: text.into(),
        })
    }

    /// An import error said in terms of this file.
    fn failed(&self, e: Error) -> Error {
        Error::Unavailable(format!(
            "seed file {}: {}",
            self.path.display(),
            e.public_message()
        ))
    }
}

/// `serve --seed FILE`: imports the file's tenant unless it exists. Answers the tenant id and
/// whether it was imported.
pub async fn seed(state: &Arc<AppState>, path: &Path) -> Result<(String, bool)> {
    let seed = Seed::read(path)?;
    let check = seed.tenant_id.clone();
    if state.db.read(move |c| tenants::exists(c, &check)).await? {
        return Ok((seed.tenant_id, false));
    }
    import(state, seed.text.to_string())
        .await
        .map_err(|e| seed.failed(e))?;
    Ok((seed.tenant_id, true))
}

/// What a reset of everything did.
#[derive(Debug)]
pub struct ResetAll {
    /// The tenant created at first start: its data reset, its keys kept (`None` if there is none).
    pub kept: Option<String>,
    /// Every other tenant, deleted with its keys.
    pub deleted: Vec<String>,
    /// The seed's tenant, re-imported from the seed file.
    pub seeded: Option<Imported>,
    /// The seed tenant's documents indexed.
    pub indexed: u64,
}

impl ResetAll {
    /// The tenants whose data went away (their cached credentials and sessions are stale).
    pub fn touched(&self) -> impl Iterator<Item = &String> {
        self.kept.iter().chain(self.deleted.iter())
    }
}

/// Resets everything — the tenant created at first start keeps its keys, every other tenant is
/// deleted — and re-imports `seed`, so a seeded server returns to its seeded state. The database
/// part is one write (all or nothing: a seed that fails to import leaves everything as it was);
/// then the index forgets the tenants' documents and indexes the seed's tenant. When the seed's
/// tenant is the one created at first start, it is replaced by the seed's. Blocking; shared by
/// `POST /v1/admin/reset` and `engram tenants reset --all`.
pub fn reset_all(db: &Db, search: &Search, seed: Option<&Seed>) -> Result<ResetAll> {
    // Counts of requests answered before the reset are written first, so none lands on a
    // re-imported tenant after it.
    db.flush_usage_blocking()?;
    let seed_text = seed.map(|s| (s.tenant_id.clone(), s.text.clone()));
    let mut done = db
        .write_blocking(move |c| {
            let (kept, deleted) = tenants::reset_all(c)?;
            let seeded = match seed_text {
                Some((id, text)) => {
                    if kept.as_deref() == Some(id.as_str()) {
                        tenants::delete(c, &id)?;
                    }
                    Some(transfer::import_text(c, &text, &mut |_| {})?)
                }
                None => None,
            };
            Ok(ResetAll {
                kept,
                deleted,
                seeded,
                indexed: 0,
            })
        })
        .map_err(|e| match seed {
            Some(s) => s.failed(e),
            None => e,
        })?;
    for tenant_id in done.touched() {
        search.submit(IndexOp::DeleteTenant {
            tenant_id: tenant_id.clone(),
        });
    }
    search.flush_blocking();
    if let Some(s) = &done.seeded {
        done.indexed = crate::search::rebuild::index_tenant(db, search, &s.tenant_id)?;
    }
    Ok(done)
}

/// `POST /v1/admin/reset` on the running server: `reset_all` with the server's seed file (read
/// again, so an edited seed applies), then its caches forget the tenants and the workers run
/// what the seed queued.
pub async fn reset_server(state: &Arc<AppState>) -> Result<ResetAll> {
    let st = state.clone();
    let done = tokio::task::spawn_blocking(move || {
        let seed = st.config.seed.as_deref().map(Seed::read).transpose()?;
        reset_all(&st.db, &st.search, seed.as_ref())
    })
    .await
    .map_err(Error::internal)??;
    for tenant_id in done.touched() {
        state.auth.evict_tenant(tenant_id);
        state.runtime.sessions.forget_tenant(tenant_id);
    }
    if let Some(imported) = &done.seeded {
        state.auth.evict_tenant(&imported.tenant_id);
        ring_queued(state, imported);
    }
    Ok(done)
}
