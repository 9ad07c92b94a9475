//! Export, import and seed of whole tenants (docs/api.md "Export and import"). The store writes
//! and reads the records (`store::transfer`); this adds what a running server does around an
//! import: index the tenant's memories and artifacts, wake the workers for its queued jobs, drop
//! cached credentials.

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::store::transfer::{self, Imported};
use std::sync::Arc;

/// Imports an export (its whole text) into the running server; answers once the tenant is
/// stored and searchable.
pub async fn import(state: &Arc<AppState>, text: String) -> Result<(Imported, u64)> {
    let imported = state
        .db
        .write(move |c| {
            transfer::import(
                c,
                text.lines().enumerate().map(|(i, l)| (i + 1, l)),
                &mut |_| {},
            )
        })
        .await?;
    let tenant = imported.tenant_id.clone();
    state.auth.evict_tenant(&tenant);
    let st = state.clone();
    let indexed = tokio::task::spawn_blocking(move || {
        crate::search::rebuild::index_tenant(&st.db, &st.search, &tenant)
    })
    .await
    .map_err(Error::internal)??;
    for kind in imported.queued_jobs.keys() {
        state.jobs.ring(*kind);
    }
    Ok((imported, indexed))
}

/// `serve --seed FILE`: imports the file's tenant unless it exists. Answers the tenant id and
/// whether it was imported.
pub async fn seed(state: &Arc<AppState>, path: &std::path::Path) -> Result<(String, bool)> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Unavailable(format!("cannot read the seed file {}: {e}", path.display()))
    })?;
    let first = text.lines().next().unwrap_or("");
    let header = transfer::parse_header(first).map_err(|e| {
        Error::Unavailable(format!(
            "seed file {}: {}",
            path.display(),
            e.public_message()
        ))
    })?;
    let id = header.tenant_id.clone();
    let check = id.clone();
    if state
        .db
        .read(move |c| crate::store::tenants::exists(c, &check))
        .await?
    {
        return Ok((id, false));
    }
    import(state, text).await.map_err(|e| {
        Error::Unavailable(format!(
            "seed file {}: {}",
            path.display(),
            e.public_message()
        ))
    })?;
    Ok((id, true))
}
