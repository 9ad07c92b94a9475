//! The vault's master key and its encryption (docs/api.md "Vault", docs/security.md "Vault").
//!
//! Invariants:
//! - A value is encrypted with XChaCha20-Poly1305 under the master key, with a random 24-byte
//!   nonce and the tenant id and item id as associated data: a ciphertext copied to another row
//!   or tenant does not decrypt. Only ciphertext is stored; plaintext exists in memory only, for
//!   the request that stores or reveals it.
//! - The master key comes from `ENGRAM_VAULT_KEY` (64 hex digits) or from `vault.key` beside the
//!   database, created at first start with mode 0600. Lose it and the values are gone: nothing
//!   else can decrypt them.
//! - The database remembers the key's fingerprint (`meta.vault_key_fingerprint`); a server
//!   started with another key while the vault holds items refuses to start, instead of failing
//!   every reveal later.
//! - `engram vault rotate-key` re-encrypts every item in one transaction. With a key file, the new
//!   key is written to `vault.key.new` before that transaction and renamed over `vault.key` after
//!   it; a start that finds `vault.key.new` completes or discards the rotation by the fingerprint
//!   the database holds.
//!
//! This module is a leaf: it knows nothing of the server above it.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The key file's name in the data dir.
pub const KEY_FILE: &str = "vault.key";
const NEW_KEY_FILE: &str = "vault.key.new";
/// The environment variable that carries the key instead of the file.
pub const KEY_ENV: &str = "ENGRAM_VAULT_KEY";
const NONCE_LEN: usize = 24;

/// Where the master key came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Env,
    File(PathBuf),
}

#[derive(Clone)]
pub struct MasterKey {
    key: [u8; 32],
    pub source: Source,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        write!(f, "MasterKey({}, {:?})", self.fingerprint(), self.source)
    }
}

fn parse_hex(text: &str) -> Result<[u8; 32], String> {
    let t = text.trim();
    if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a vault key is 64 hexadecimal digits (32 bytes)".into());
    }
    let mut key = [0u8; 32];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(key)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `text` to `path` readable by its owner only (created or replaced), synced.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

impl MasterKey {
    pub fn generate(source: Source) -> MasterKey {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        MasterKey { key, source }
    }

    /// The key as 64 hex digits (for the key file, or to show once after a rotation).
    pub fn to_hex(&self) -> String {
        to_hex(&self.key)
    }

    /// A short public identifier of the key (never enough to recover it).
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"engram vault key fingerprint\0");
        h.update(self.key);
        to_hex(&h.finalize()[..8])
    }

    /// The key for `data_dir`: `env` when given, else the key file (created when missing, as
    /// `vault.key` with mode 0600). `expected` is the fingerprint the database holds, if any: it
    /// settles an interrupted rotation (`vault.key.new`).
    pub fn load(
        data_dir: &Path,
        env: Option<&str>,
        expected: Option<&str>,
    ) -> Result<MasterKey, String> {
        if let Some(text) = env.filter(|t| !t.trim().is_empty()) {
            let key = parse_hex(text).map_err(|e| format!("{KEY_ENV}: {e}"))?;
            return Ok(MasterKey {
                key,
                source: Source::Env,
            });
        }
        let path = data_dir.join(KEY_FILE);
        let new = data_dir.join(NEW_KEY_FILE);
        if new.exists() {
            let text =
                std::fs::read_to_string(&new).map_err(|e| format!("{}: {e}", new.display()))?;
            let candidate = MasterKey {
                key: parse_hex(&text).map_err(|e| format!("{}: {e}", new.display()))?,
                source: Source::File(path.clone()),
            };
            if expected == Some(candidate.fingerprint().as_str()) {
                // The rotation committed: its key is the key now.
                std::fs::rename(&new, &path).map_err(|e| format!("{}: {e}", path.display()))?;
            } else {
                std::fs::remove_file(&new).map_err(|e| format!("{}: {e}", new.display()))?;
            }
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(MasterKey {
                key: parse_hex(&text).map_err(|e| format!("{}: {e}", path.display()))?,
                source: Source::File(path),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let k = MasterKey::generate(Source::File(path.clone()));
                write_private(&path, &format!("{}\n", k.to_hex()))
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                tracing::info!(path = %path.display(), "created the vault master key file (mode 0600); back it up: without it the vault's values cannot be decrypted");
                Ok(k)
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Stages a rotation to `next`: with a key file, `next` is written to `vault.key.new` (the
    /// caller then re-encrypts and commits, then calls `finish_rotation`).
    pub fn stage_rotation(&self, next: &MasterKey) -> Result<(), String> {
        if let Source::File(path) = &self.source {
            let new = path.with_file_name(NEW_KEY_FILE);
            write_private(&new, &format!("{}\n", next.to_hex()))
                .map_err(|e| format!("cannot write {}: {e}", new.display()))?;
        }
        Ok(())
    }

    /// Completes a staged rotation once the re-encryption committed.
    pub fn finish_rotation(&self) -> Result<(), String> {
        if let Source::File(path) = &self.source {
            let new = path.with_file_name(NEW_KEY_FILE);
            std::fs::rename(&new, path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.key).into())
    }

    /// Encrypts `value` for item `item_id` of `tenant_id`: (nonce, ciphertext).
    pub fn seal(&self, tenant_id: &str, item_id: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated(tenant_id, item_id);
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption does not fail for in-memory buffers");
        (nonce.to_vec(), ct)
    }

    /// Decrypts what `seal` produced for the same tenant and item; `None` when the key, the
    /// binding or the bytes are wrong.
    pub fn open(&self, tenant_id: &str, item_id: &str, nonce: &[u8], ct: &[u8]) -> Option<String> {
        if nonce.len() != NONCE_LEN {
            return None;
        }
        let aad = associated(tenant_id, item_id);
        let plain = self
            .cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

fn associated(tenant_id: &str, item_id: &str) -> Vec<u8> {
    format!("engram vault v1\0{tenant_id}\0{item_id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_with_its_key_tenant_and_item() {
        let k = MasterKey::generate(Source::Env);
        let (n, ct) = k.seal("ten_a", "vit_1", "sk-secret");
        assert!(!ct.windows(9).any(|w| w == b"sk-secret"));
        assert_eq!(
            k.open("ten_a", "vit_1", &n, &ct).as_deref(),
            Some("sk-secret")
        );
        assert_eq!(k.open("ten_b", "vit_1", &n, &ct), None);
        assert_eq!(k.open("ten_a", "vit_2", &n, &ct), None);
        let other = MasterKey::generate(Source::Env);
        assert_eq!(other.open("ten_a", "vit_1", &n, &ct), None);
        assert_ne!(k.fingerprint(), other.fingerprint());
    }

    #[test]
    fn the_key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let a = MasterKey::load(dir.path(), None, None).unwrap();
        let b = MasterKey::load(dir.path(), None, None).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let env = MasterKey::load(dir.path(), Some(&"ab".repeat(32)), None).unwrap();
        assert_eq!(env.source, Source::Env);
        assert!(MasterKey::load(dir.path(), Some("short"), None).is_err());
    }

    #[test]
    fn an_interrupted_rotation_is_settled_by_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let old = MasterKey::load(dir.path(), None, None).unwrap();
        let next = MasterKey::generate(old.source.clone());
        old.stage_rotation(&next).unwrap();
        // Not committed: the database still expects the old key.
        let k = MasterKey::load(dir.path(), None, Some(&old.fingerprint())).unwrap();
        assert_eq!(k.fingerprint(), old.fingerprint());
        old.stage_rotation(&next).unwrap();
        // Committed: the database expects the new key.
        let k = MasterKey::load(dir.path(), None, Some(&next.fingerprint())).unwrap();
        assert_eq!(k.fingerprint(), next.fingerprint());
        assert!(!dir.path().join(NEW_KEY_FILE).exists());
    }
}
