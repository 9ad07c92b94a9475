//! Rate limits and monthly quotas: buckets per key and per tenant, the `X-RateLimit-*` headers,
//! both families' 429 bodies, throttling of bad keys per address, quotas that survive restarts
//! and count test keys apart, and operator changes applied without a restart.

use crate::support::*;
use engram::auth::{Principal, Scopes};
use engram::limits::Quota;
use engram::plans::Plan;
use engram::store::{keys, tenants};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A tenant made for one test, with its limits set before any key of it is seen.
pub struct Tenant {
    pub id: String,
    pub key: String,
    pub owner: String,
}

/// Creates a tenant on `plan` with operator overrides.
pub async fn tenant(srv: &TestServer, plan: Plan, overrides: Option<Value>) -> Tenant {
    srv.state()
        .db
        .write(move |c| {
            let t = tenants::create_with_owner(c, "limited", plan, "owner@example.com", None)?;
            tenants::set_limits(c, &t.tenant.id, overrides.as_ref())?;
            Ok(Tenant {
                id: t.tenant.id,
                key: t.key,
                owner: t.owner.id,
            })
        })
        .await
        .expect("tenant created")
}

/// Adds a key (`live` or `test`) to a tenant directly in the database.
pub async fn add_key(srv: &TestServer, t: &Tenant, mode: &str) -> String {
    let (tenant, owner, key) = (t.id.clone(), t.owner.clone(), keys::generate("hx", mode));
    let k = key.clone();
    srv.state()
        .db
        .write(move |c| keys::insert(c, &tenant, &owner, "extra", Scopes::EMPTY, &k, None))
        .await
        .expect("key stored");
    key
}

/// The principal of a key, as the request pipeline sees it.
pub async fn principal(srv: &TestServer, key: &str) -> Principal {
    srv.state()
        .auth
        .authenticate(Some(&format!("Bearer {key}")))
        .await
        .expect("key authenticates")
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Status, rate-limit headers (limit, remaining, reset, retry-after) and body of one request.
struct Seen {
    status: u16,
    limit: Option<u64>,
    remaining: Option<u64>,
    reset: Option<u64>,
    retry_after: Option<u64>,
    body: Value,
}

async fn call(srv: &TestServer, key: &str, method: Method, path: &str) -> Seen {
    seen(srv.req_as(key, method, path).send().await.expect("sent")).await
}

/// The status, rate-limit headers and body of a response.
async fn seen(resp: reqwest::Response) -> Seen {
    let h = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().parse::<u64>().expect("numeric header"))
    };
    let (limit, remaining, reset, retry_after) = (
        h("x-ratelimit-limit"),
        h("x-ratelimit-remaining"),
        h("x-ratelimit-reset"),
        h("retry-after"),
    );
    let (status, body) = json_of(resp).await;
    Seen {
        status,
        limit,
        remaining,
        reset,
        retry_after,
        body,
    }
}

async fn me(srv: &TestServer, key: &str) -> Seen {
    call(srv, key, Method::GET, "/v1/me").await
}

#[tokio::test]
async fn burst_then_refusal_at_the_exact_count_with_consistent_headers() {
    let srv = TestServer::start().await;
    // One request a minute, bursts of five: nothing refills while the test runs.
    let t = tenant(
        &srv,
        Plan::Free,
        Some(json!({"requestsPerMinute": 1, "burst": 5})),
    )
    .await;
    for i in 1..=5u64 {
        let before = epoch_now();
        let s = me(&srv, &t.key).await;
        assert_eq!(s.status, 200, "request {i}: {}", s.body);
        assert_eq!(s.limit, Some(1));
        assert_eq!(s.remaining, Some(5 - i), "remaining after request {i}");
        assert_eq!(s.retry_after, None);
        // The bucket is i requests short; each takes a minute to earn back.
        let reset = s.reset.expect("reset header");
        assert!(
            reset >= before + (i - 1) * 60 && reset <= epoch_now() + i * 60 + 1,
            "reset {reset} after request {i} (now {before})"
        );
    }
    let before = epoch_now();
    let refused = me(&srv, &t.key).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.body["error"], "rate_limit_exceeded");
    let retry = refused.retry_after.expect("Retry-After on a 429");
    assert_eq!(refused.body["retry_after"], retry);
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains(&format!("retry after {retry} second")),
        "{}",
        refused.body
    );
    // The first request was made moments ago: its minute has barely started.
    assert!((50..=60).contains(&retry), "retry after {retry}");
    assert_eq!(refused.limit, Some(1));
    assert_eq!(refused.remaining, Some(0));
    let reset = refused.reset.expect("reset on a 429");
    // Full again once the next request is allowed plus four more minutes.
    assert!(
        reset >= before + retry - 1 + 4 * 60 && reset <= epoch_now() + retry + 4 * 60 + 1,
        "reset {reset}, retry {retry}, now {before}"
    );
    // Refusals keep refusing and do not move the bucket.
    let again = me(&srv, &t.key).await;
    assert_eq!(again.status, 429);
    assert!(again.retry_after.unwrap() <= retry);
    srv.shutdown().await;
}

#[tokio::test]
async fn memory_family_refusal_has_its_own_body() {
    let srv = TestServer::start().await;
    let t = tenant(
        &srv,
        Plan::Free,
        Some(json!({"requestsPerMinute": 1, "burst": 2})),
    )
    .await;
    for _ in 0..2 {
        let s = call(&srv, &t.key, Method::GET, "/v1/api-keys").await;
        assert_eq!(s.status, 200, "{}", s.body);
    }
    let s = call(&srv, &t.key, Method::GET, "/v1/api-keys").await;
    assert_eq!(s.status, 429, "{}", s.body);
    assert_eq!(s.body["ok"], false);
    assert_eq!(s.body["error"]["code"], "rate_limited");
    let retry = s.retry_after.expect("Retry-After");
    assert_eq!(s.body["error"]["details"]["retryAfter"], retry);
    assert_eq!(s.body["error"]["retryAfter"], retry);
    assert!(s.body["meta"]["requestId"]
        .as_str()
        .unwrap()
        .starts_with("req_"));
    assert_eq!(s.remaining, Some(0));
    srv.shutdown().await;
}

#[tokio::test]
async fn every_authenticated_response_carries_the_headers() {
    let srv = TestServer::start().await;
    let t = tenant(&srv, Plan::Developer, None).await;
    // Whatever the outcome (not available, 404, 200), the headers are there.
    let a = call(&srv, &t.key, Method::GET, "/v1/events/evt_nope").await;
    let b = call(&srv, &t.key, Method::DELETE, "/v1/api-keys/key_nope").await;
    let c = me(&srv, &t.key).await;
    for s in [a, b, c] {
        assert_eq!(s.limit, Some(300), "status {} {}", s.status, s.body);
        assert!(s.remaining.expect("remaining") < 100);
        assert!(s.reset.expect("reset") >= epoch_now());
    }
    // Unauthenticated and unauthorized responses carry none (no key, no bucket).
    let anon = send_raw(&srv, None).await;
    assert_eq!(anon.status, 401);
    assert_eq!(anon.limit, None);
    srv.shutdown().await;
}

async fn send_raw(srv: &TestServer, key: Option<&str>) -> Seen {
    let mut rb = srv.http.get(srv.url("/v1/me"));
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    seen(rb.send().await.expect("sent")).await
}

#[tokio::test]
async fn keys_have_their_own_buckets_within_the_tenants_bucket() {
    let srv = TestServer::start().await;
    // Keys: bursts of 2 at one a minute; the tenant: four times that (8, one every 15 s).
    let t = tenant(
        &srv,
        Plan::Free,
        Some(json!({"requestsPerMinute": 1, "burst": 2})),
    )
    .await;
    let mut ks = vec![t.key.clone()];
    for _ in 0..4 {
        ks.push(add_key(&srv, &t, "live").await);
    }
    // The first key spends its burst; its third request is refused by its own bucket.
    for expect in [1, 0] {
        let s = me(&srv, &ks[0]).await;
        assert_eq!((s.status, s.remaining), (200, Some(expect)), "{}", s.body);
        assert_eq!(s.limit, Some(1));
    }
    let s = me(&srv, &ks[0]).await;
    assert_eq!(s.status, 429);
    assert!(s.body["message"].as_str().unwrap().contains("this API key"));
    // The other keys are not affected by the first key's refusal...
    for k in &ks[1..4] {
        for _ in 0..2 {
            let s = me(&srv, k).await;
            assert_eq!(s.status, 200, "{}", s.body);
        }
    }
    // ...but together they spent the tenant's 8: a fresh key is refused by the tenant's bucket,
    // and the headers then describe that bucket.
    let s = me(&srv, &ks[4]).await;
    assert_eq!(s.status, 429, "{}", s.body);
    assert!(
        s.body["message"].as_str().unwrap().contains("this tenant"),
        "{}",
        s.body
    );
    assert_eq!(s.limit, Some(4));
    assert_eq!(s.remaining, Some(0));
    let retry = s.retry_after.unwrap();
    assert!((1..=15).contains(&retry), "retry after {retry}");
    // Another tenant is untouched.
    let other = tenant(
        &srv,
        Plan::Free,
        Some(json!({"requestsPerMinute": 1, "burst": 2})),
    )
    .await;
    assert_eq!(me(&srv, &other.key).await.status, 200);
    srv.shutdown().await;
}

#[tokio::test]
async fn the_tighter_bucket_fills_the_headers() {
    let srv = TestServer::start().await;
    let t = tenant(
        &srv,
        Plan::Free,
        Some(json!({"requestsPerMinute": 1, "burst": 3})),
    )
    .await;
    let second = add_key(&srv, &t, "live").await;
    // Tenant bucket: 12. Key one spends 3 (tenant 9 left), key two then has 3 of its own.
    for _ in 0..3 {
        assert_eq!(me(&srv, &t.key).await.status, 200);
    }
    let s = me(&srv, &second).await;
    // Key: 2 left; tenant: 8 left → the key decides.
    assert_eq!((s.limit, s.remaining), (Some(1), Some(2)));
    srv.shutdown().await;
}

#[tokio::test]
async fn plan_changes_apply_without_a_restart() {
    let srv = TestServer::start().await;
    let t = tenant(&srv, Plan::Free, None).await;
    let mut remaining = Vec::new();
    for _ in 0..10 {
        let s = me(&srv, &t.key).await;
        assert_eq!(s.status, 200);
        assert_eq!(s.limit, Some(60));
        remaining.push(s.remaining.unwrap());
    }
    // Free: bursts of 10, one back a second; a request may have been earned back meanwhile.
    assert!(remaining[0] == 9 && remaining[9] <= 1, "{remaining:?}");
    let dir = srv.data_dir().to_str().unwrap().to_string();
    let (ok, _, err) = run_cli(&["tenants", "set-plan", "--data-dir", &dir, &t.id, "pro"]);
    assert!(ok, "{err}");
    let s = wait_for("the pro plan's bucket", Duration::from_secs(10), || async {
        let s = me(&srv, &t.key).await;
        (s.limit == Some(1000)).then_some(s)
    })
    .await;
    assert_eq!(s.status, 200);
    // A fresh bucket of the new size.
    assert!(s.remaining.unwrap() >= 490, "{:?}", s.remaining);

    // Operator overrides apply the same way.
    let (ok, _, err) = run_cli(&[
        "tenants",
        "set-limits",
        "--data-dir",
        &dir,
        &t.id,
        r#"{"requestsPerMinute": 1, "burst": 1}"#,
    ]);
    assert!(ok, "{err}");
    wait_for("the overridden bucket", Duration::from_secs(10), || async {
        let s = me(&srv, &t.key).await;
        (s.limit == Some(1)).then_some(())
    })
    .await;
    let s = me(&srv, &t.key).await;
    assert_eq!(s.status, 429, "{}", s.body);
    srv.shutdown().await;
}

#[tokio::test]
async fn unlimited_plans_and_disabled_limits_send_no_headers() {
    let srv = TestServer::start().await;
    let t = tenant(&srv, Plan::Enterprise, None).await;
    for _ in 0..20 {
        let s = me(&srv, &t.key).await;
        assert_eq!(s.status, 200);
        assert_eq!((s.limit, s.remaining, s.reset), (None, None, None));
    }
    srv.shutdown().await;

    let srv = TestServer::start_with(|c| c.limits_enabled = false).await;
    let t = tenant(
        &srv,
        Plan::Free,
        Some(json!({"requestsPerMinute": 1, "burst": 1, "eventsPerMonth": 0})),
    )
    .await;
    for _ in 0..15 {
        let s = me(&srv, &t.key).await;
        assert_eq!(s.status, 200);
        assert_eq!(s.limit, None);
    }
    let p = principal(&srv, &t.key).await;
    srv.state()
        .limits
        .reserve(&p, Quota::Events, 100)
        .expect("no quota when limits are off")
        .commit(100);
    // Requests are still counted for usage figures.
    assert_eq!(srv.state().limits.requests_this_minute(&t.id), 15);
    srv.shutdown().await;
}

#[tokio::test]
async fn bad_keys_are_throttled_per_address() {
    let srv = TestServer::start().await;
    let unknown = keys::generate("hk", "live");
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(send_raw(&srv, Some(&unknown)).await);
    }
    let first_refused = statuses
        .iter()
        .position(|s| s.status == 429)
        .expect("a flood of bad keys gets refused");
    // A burst of 30 (one more may have been earned back while sending).
    assert!((30..=31).contains(&first_refused), "{first_refused}");
    assert!(statuses[..first_refused].iter().all(|s| s.status == 401));
    let refused = &statuses[first_refused];
    assert_eq!(refused.body["error"], "rate_limit_exceeded");
    let retry = refused.retry_after.expect("Retry-After");
    assert!((1..=2).contains(&retry), "{retry}");
    // While the address is throttled, a request with a valid key from it is still served: only
    // failed authentications are limited.
    let valid = send_raw(&srv, Some(&srv.key)).await;
    assert_eq!(valid.status, 200);
    // Bad keys stay refused until the bucket refills, then get their 401 again.
    assert_eq!(send_raw(&srv, Some(&unknown)).await.status, 429);
    wait_for("the throttle to lapse", Duration::from_secs(10), || async {
        (send_raw(&srv, Some(&unknown)).await.status == 401).then_some(())
    })
    .await;
    srv.shutdown().await;
}

#[tokio::test]
async fn requests_this_minute_counts_a_tenants_requests() {
    // The count is per minute of the server's clock, set to a minute's start: the test is over
    // long before that minute is.
    let srv = TestServer::start_at("2031-03-14T10:30:00Z").await;
    let t = tenant(&srv, Plan::Pro, None).await;
    let other = tenant(&srv, Plan::Pro, None).await;
    let before = srv.state().limits.requests_this_minute(&t.id);
    for _ in 0..7 {
        assert_eq!(me(&srv, &t.key).await.status, 200);
    }
    me(&srv, &other.key).await;
    assert_eq!(
        srv.state().limits.requests_this_minute(&t.id),
        before + 7,
        "seven requests of this tenant, one of another"
    );
    // The next minute starts from nothing.
    srv.clock().advance(std::time::Duration::from_secs(60));
    assert_eq!(srv.state().limits.requests_this_minute(&t.id), 0);
    me(&srv, &t.key).await;
    assert_eq!(srv.state().limits.requests_this_minute(&t.id), 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn idle_buckets_are_forgotten() {
    let srv = TestServer::start().await;
    // Buckets that refill in a millisecond are full again almost at once.
    let t = tenant(
        &srv,
        Plan::Free,
        Some(json!({"requestsPerMinute": 60000, "burst": 1})),
    )
    .await;
    let mut ks = Vec::new();
    for _ in 0..20 {
        ks.push(add_key(&srv, &t, "live").await);
    }
    for k in &ks {
        assert_eq!(me(&srv, k).await.status, 200);
    }
    let limits = &srv.state().limits;
    assert!(limits.tracked_buckets() >= 20);
    wait_for(
        "idle buckets to be swept",
        Duration::from_secs(10),
        || async {
            limits.cleanup();
            (limits.tracked_buckets() == 0).then_some(())
        },
    )
    .await;
    srv.shutdown().await;
}

mod http_quotas;
mod quotas;
mod registry_quotas;
