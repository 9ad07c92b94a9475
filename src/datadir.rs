//! One server per data dir: `serve` (and `reindex`, which rewrites the index) hold an exclusive
//! lock on `<data-dir>/engram.lock` for as long as they run, with the holder's pid written in it.
//! A second one refuses at once, naming that pid, instead of starting "healthy" on a database and
//! an index another process is writing. The lock is `flock`, so it goes away with its process,
//! however that process ends. Commands that are safe beside a running server (keys, tenants,
//! connectors, backup) take no lock.

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

impl DirLock {
    /// Takes the lock of `data_dir` for `what` (e.g. "serve"), or says who holds it.
    pub fn acquire(data_dir: &Path, what: &str) -> Result<DirLock, String> {
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
                Ok(DirLock { _file: file, path })
            }
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                Err(format!(
                    "data dir {} is in use by another engram ({}); stop it first, or use another \
                     --data-dir",
                    data_dir.display(),
                    if holder.is_empty() {
                        "pid unknown"
                    } else {
                        holder
                    }
                ))
            }
            Err(e) => Err(format!("cannot lock {}: {e}", path.display())),
        }
    }
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
