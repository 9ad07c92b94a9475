//! Authentication and permissions: a bearer key becomes a `Principal`.
//!
//! Keys are looked up by the SHA-256 of the presented key and the stored hash is compared in
//! constant time. A small cache (a few seconds) keeps the hot path off SQLite; revoking a key
//! through the API evicts it at once, and changes made by another process (the CLI) are seen
//! within the cache lifetime. Expiry is checked on every request, cached or not.
//!
//! Effective permissions: a key with no scopes has its developer's role permissions; a key with
//! scopes has those scopes intersected with the role's (a key never exceeds its creator's role,
//! even after the developer is demoted).

use crate::error::{Error, Result};
pub use crate::perms::{developer_scopes, Role, Scope, Scopes};
use crate::plans::Plan;
use crate::store::{keys, Db};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Who is calling: resolved from the key on every authenticated request.
#[derive(Clone, Debug)]
pub struct Principal {
    pub tenant_id: String,
    pub developer_id: String,
    pub key_id: String,
    pub role: Role,
    /// Effective permissions of this key.
    pub scopes: Scopes,
    /// The permissions of the key's developer (`developer_scopes`): a key without scopes has
    /// exactly these, a key with scopes at most these.
    pub grant: Scopes,
    /// `live` or `test`: test keys count against separate usage counters.
    pub mode: &'static str,
    pub plan: Plan,
    /// The operator's per-tenant limit overrides.
    pub limits_override: Option<serde_json::Value>,
}

impl Principal {
    /// 403 unless this key has `scope`.
    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "this API key lacks the '{}' permission",
                scope.as_str()
            )))
        }
    }

    /// 403 unless this key has at least one of `scopes`.
    pub fn require_any(&self, scopes: &[Scope]) -> Result<()> {
        if scopes.iter().any(|s| self.scopes.contains(*s)) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "this API key needs one of the permissions: {}",
                scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }

    pub fn is_test(&self) -> bool {
        self.mode == "test"
    }
}

/// The token of a `Bearer` credential; the scheme is case-insensitive (RFC 9110 §11.1) and
/// any run of spaces or tabs may separate it from the token.
pub fn bearer_token(header: &str) -> Option<&str> {
    let header = header.trim();
    let split = header.find([' ', '\t'])?;
    let (scheme, rest) = header.split_at(split);
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

/// Characters of a presented key that identify it for failed-authentication limiting: the
/// style, the mode and the first eight characters of the secret.
const PREFIX_CHARS: usize = 16;

/// The prefix of the key an `Authorization` header presents, if it presents one.
pub fn presented_prefix(header: Option<&str>) -> Option<String> {
    let token = bearer_token(header?)?;
    Some(token.chars().take(PREFIX_CHARS).collect())
}

struct Cached {
    auth: keys::KeyAuth,
    fetched: Instant,
}

/// Resolves bearer keys to principals, with a short-lived cache.
pub struct Authenticator {
    db: Db,
    ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
    /// Key ids whose `last_used_at` was written recently.
    touched: Mutex<HashMap<String, Instant>>,
}

const CACHE_MAX: usize = 10_000;

impl Authenticator {
    pub fn new(db: Db) -> Authenticator {
        Authenticator {
            db,
            ttl: Duration::from_secs(2),
            cache: Mutex::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets a key at once (revocation through the API).
    pub fn evict_key_id(&self, key_id: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, c| c.auth.key.id != key_id);
    }

    /// Forgets every cached key of a tenant (plan or role changes).
    pub fn evict_tenant(&self, tenant_id: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, c| c.auth.key.tenant_id != tenant_id);
    }

    /// The principal for an `Authorization` header value, or 401.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal> {
        let header = header.ok_or_else(|| {
            Error::Unauthorized("missing API key: send 'Authorization: Bearer <key>'".to_string())
        })?;
        let key = bearer_token(header).ok_or_else(|| {
            Error::Unauthorized("the Authorization header must be 'Bearer <key>'".into())
        })?;
        let (_, mode) = keys::parse_format(key)
            .ok_or_else(|| Error::Unauthorized("malformed API key".into()))?;
        let hash = keys::hash(key);

        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .get(&hash)
                .filter(|c| c.fetched.elapsed() < self.ttl)
                .map(|c| c.auth.clone())
        };
        let auth = match cached {
            Some(a) => a,
            None => {
                let h = hash.clone();
                let found = self
                    .db
                    .read(move |conn| keys::lookup(conn, &h))
                    .await?
                    .ok_or_else(|| Error::Unauthorized("unknown API key".into()))?;
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                if cache.len() >= CACHE_MAX {
                    let ttl = self.ttl;
                    cache.retain(|_, c| c.fetched.elapsed() < ttl);
                    if cache.len() >= CACHE_MAX {
                        cache.clear();
                    }
                }
                cache.insert(
                    hash.clone(),
                    Cached {
                        auth: found.clone(),
                        fetched: Instant::now(),
                    },
                );
                found
            }
        };
        // Defence in depth: the row was found by hash; compare the hashes without early exit.
        if !bool::from(auth.key_hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(Error::Unauthorized("unknown API key".into()));
        }
        if auth.key.revoked_at.is_some() {
            return Err(Error::Unauthorized("this API key has been revoked".into()));
        }
        if let Some(exp) = &auth.key.expires_at {
            match crate::time::parse(exp) {
                Some(t) if t > crate::time::now() => {}
                _ => return Err(Error::Unauthorized("this API key has expired".into())),
            }
        }
        let role = auth.role;
        let grant = developer_scopes(role, auth.project_admin);
        let scopes = if auth.key.scopes.is_empty() {
            grant
        } else {
            auth.key.scopes.intersect(grant)
        };
        self.note_use(&auth.key.id);
        Ok(Principal {
            tenant_id: auth.key.tenant_id.clone(),
            developer_id: auth.key.developer_id.clone(),
            key_id: auth.key.id.clone(),
            role,
            scopes,
            grant,
            mode,
            plan: auth.plan,
            limits_override: auth
                .limits_json
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
        })
    }

    /// Writes `last_used_at` at most once a minute per key, off the request path.
    fn note_use(&self, key_id: &str) {
        {
            let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
            if touched
                .get(key_id)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
            {
                return;
            }
            if touched.len() >= CACHE_MAX {
                touched.clear();
            }
            touched.insert(key_id.to_string(), Instant::now());
        }
        let id = key_id.to_string();
        let at = crate::time::now_rfc3339();
        let db = self.db.clone();
        // Fire and forget: a lost `last_used_at` update is harmless.
        tokio::spawn(async move {
            if let Err(e) = db.write(move |c| keys::touch(c, &id, &at)).await {
                tracing::debug!(error = %e, "could not record key use");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{tenants, Db};

    #[test]
    fn bearer_tokens_are_read_leniently_and_other_schemes_refused() {
        assert_eq!(bearer_token("Bearer hk_live_abc"), Some("hk_live_abc"));
        assert_eq!(bearer_token("bearer \t hk_live_abc  "), Some("hk_live_abc"));
        assert_eq!(bearer_token("BEARER x"), Some("x"));
        assert_eq!(bearer_token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer   "), None);
        assert_eq!(bearer_token("hk_live_abc"), None);
        assert_eq!(
            presented_prefix(Some("Bearer hk_live_0123456789abcdef")).as_deref(),
            Some("hk_live_01234567")
        );
        assert_eq!(presented_prefix(None), None);
    }

    #[test]
    fn a_project_admin_may_invite_and_nobody_else_gains_it() {
        for role in [Role::Owner, Role::Admin, Role::Developer, Role::Viewer] {
            assert!(developer_scopes(role, true).contains(Scope::MembersInvite));
            assert_eq!(developer_scopes(role, false), role.scopes());
        }
        assert!(!Role::Developer.scopes().contains(Scope::MembersInvite));
        assert!(!Role::Viewer.scopes().contains(Scope::MembersInvite));
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        db: Db,
        auth: Authenticator,
        tenant: String,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("engram.db"), 2).unwrap();
        let tenant = db
            .write(|c| tenants::create(c, "t", Plan::Pro))
            .await
            .unwrap()
            .id;
        Fixture {
            auth: Authenticator::new(db.clone()),
            _dir: dir,
            db,
            tenant,
        }
    }

    /// A developer of `role` with a key of `scopes` (none: the role's permissions).
    async fn key(
        f: &Fixture,
        role: Role,
        scopes: &[Scope],
        expires: Option<&str>,
    ) -> (String, String) {
        let (t, expires) = (f.tenant.clone(), expires.map(str::to_string));
        let scopes = Scopes::of(scopes);
        let key = keys::generate("hk", "live");
        let k = key.clone();
        let row =
            f.db.write(move |c| {
                let email = format!("{}@example.org", crate::ids::new("dev"));
                let d = tenants::create_developer(c, &t, "d", &email, None, role, "active")?;
                keys::insert(c, &t, &d.id, "k", scopes, &k, expires.as_deref())
            })
            .await
            .unwrap();
        (format!("Bearer {key}"), row.id)
    }

    #[tokio::test]
    async fn a_key_never_exceeds_its_developers_role() {
        let f = fixture().await;
        // A viewer's key asking for write and deploy gets only what a viewer has of them.
        let (h, _) = key(
            &f,
            Role::Viewer,
            &[Scope::Read, Scope::Write, Scope::AgentsDeploy],
            None,
        )
        .await;
        let p = f.auth.authenticate(Some(&h)).await.unwrap();
        assert_eq!(p.role, Role::Viewer);
        assert_eq!(p.scopes, Scopes::of(&[Scope::Read]));
        assert!(p.require(Scope::Read).is_ok());
        assert!(matches!(p.require(Scope::Write), Err(Error::Forbidden(_))));
        assert!(p.require_any(&[Scope::Write, Scope::Read]).is_ok());
        assert_eq!(p.plan, Plan::Pro);
        assert_eq!(p.mode, "live");
        // A key without scopes has exactly its developer's permissions.
        let (h, _) = key(&f, Role::Developer, &[], None).await;
        let p = f.auth.authenticate(Some(&h)).await.unwrap();
        assert_eq!(p.scopes, Role::Developer.scopes());
        assert_eq!(p.grant, Role::Developer.scopes());
    }

    #[tokio::test]
    async fn unknown_revoked_and_expired_keys_are_refused_with_the_reason() {
        let f = fixture().await;
        let reason = |r: Result<Principal>| match r {
            Err(Error::Unauthorized(m)) => m,
            other => panic!("expected 401, got {other:?}"),
        };
        assert!(reason(f.auth.authenticate(None).await).contains("missing"));
        let unknown = format!("Bearer {}", keys::generate("hk", "live"));
        assert_eq!(
            reason(f.auth.authenticate(Some(&unknown)).await),
            "unknown API key"
        );

        // Revoked while cached: eviction makes the revocation immediate.
        let (h, id) = key(&f, Role::Developer, &[], None).await;
        f.auth.authenticate(Some(&h)).await.unwrap();
        let (t, i) = (f.tenant.clone(), id.clone());
        assert!(f.db.write(move |c| keys::revoke(c, &t, &i)).await.unwrap());
        f.auth.evict_key_id(&id);
        assert!(reason(f.auth.authenticate(Some(&h)).await).contains("revoked"));

        // Expiry is checked on every request, cached or not.
        let soon = crate::time::rfc3339(crate::time::now() + chrono::Duration::milliseconds(300));
        let (h, _) = key(&f, Role::Developer, &[], Some(&soon)).await;
        f.auth.authenticate(Some(&h)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(reason(f.auth.authenticate(Some(&h)).await).contains("expired"));
    }
}
