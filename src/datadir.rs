//! One server per data dir: `serve` (and `reindex`, `import`, `migrate`, `vault rotate-key`,
//! `tenants reset --all`, which rewrite the database or the index) hold an exclusive lock on `<data-dir>/engram.lock`
//! for as long as they run, with the holder's pid written in it. A second one refuses at once,
//! naming that pid, instead of starting "healthy" on a database and an index another process is
//! writing. The lock is `flock`, so it goes away with its process, however that process ends.
//! Commands that are safe beside a running server (keys, tenants, connectors, backup, export)
//! take no lock — except to migrate the schema (`open_db`): a database is only ever migrated by
//! the holder of the lock, so a newer binary's CLI never migrates the database under a running
//! (older) server.

use crate::store;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "engram.lock";

/// A held data-dir lock; released when dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    pub path: PathBuf,
}

/// Who holds a data dir's lock: what its lock file says, e.g. `pid 4242 (serve)`.
#[derive(Debug)]
pub struct InUse {
    pub holder: String,
}

impl DirLock {
    /// Takes the lock of `data_dir` for `what` (e.g. "serve"), or says who holds it.
    pub fn acquire(data_dir: &Path, what: &str) -> Result<DirLock, String> {
        DirLock::try_acquire(data_dir, what)?.map_err(|busy| {
            format!(
                "data dir {} is in use by another engram ({}); stop it first, or use another \
                 --data-dir",
                data_dir.display(),
                busy.holder
            )
        })
    }

    /// Takes the lock of `data_dir` for `what`; `Ok(Err(_))` names the holder when another
    /// process has it, `Err` is a failure to create or lock the file.
    pub fn try_acquire(data_dir: &Path, what: &str) -> Result<Result<DirLock, InUse>, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                let note = format!("pid {} ({what})\n", std::process::id());
                let _ = file.set_len(0);
                let _ = file.rewind();
                let _ = file.write_all(note.as_bytes());
                let _ = file.sync_all();
                Ok(Ok(DirLock { _file: file, path }))
            }
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "pid unknown".to_string(),
                    h => h.to_string(),
                };
                Ok(Err(InUse { holder }))
            }
            Err(e) => Err(format!("cannot lock {}: {e}", path.display())),
        }
    }
}

/// The database of a data dir for a one-off command (the CLI), which may run beside a server.
/// A database at this binary's schema version opens as is. One that needs its schema created or
/// migrated is migrated only under the data-dir lock: `held` when the command holds it already,
/// else taken for the migration and released after; when another process holds it, the command
/// is refused, naming the holder — a running server's database is never migrated under it. A
/// database written by a newer engram is refused.
pub fn open_db(data_dir: &Path, held: Option<&DirLock>) -> Result<store::Direct, String> {
    let mut db = store::open_unmigrated(data_dir).map_err(|e| e.to_string())?;
    let version = db.schema_version().map_err(|e| e.to_string())?;
    if version == store::SCHEMA_VERSION {
        return Ok(db);
    }
    if version < store::SCHEMA_VERSION && held.is_none() {
        let _lock = match DirLock::try_acquire(data_dir, "migrate")? {
            Ok(lock) => lock,
            Err(busy) => {
                return Err(format!(
                    "data dir {} has schema version {version} and this engram needs version {}, \
                     but the dir is in use by another engram ({}), so it is not migrated under \
                     it: stop that server and run `engram migrate --data-dir {}` (or start this \
                     engram's server there), or use the engram that server runs",
                    data_dir.display(),
                    store::SCHEMA_VERSION,
                    busy.holder,
                    data_dir.display()
                ))
            }
        };
        db.migrate().map_err(|e| e.to_string())?;
        return Ok(db);
    }
    // Under the caller's lock, or a newer schema (which `migrate` refuses, saying so).
    db.migrate().map_err(|e| e.to_string())?;
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "serve").unwrap();
        let err = DirLock::acquire(dir.path(), "reindex").unwrap_err();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("(serve)"), "{err}");
        drop(first);
        DirLock::acquire(dir.path(), "reindex").expect("free again");
    }
}
