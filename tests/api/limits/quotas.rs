//! Monthly quotas through the limits interface the capture and invoke handlers use: holds,
//! exhaustion with the seconds until the month resets, atomicity under concurrency, test keys
//! counted apart, and counters that survive a restart.

use super::{add_key, principal, tenant};
use crate::support::*;
use engram::error::Error;
use engram::limits::{Quota, Reservation};
use engram::plans::Plan;
use engram::store::usage;
use serde_json::json;
use std::sync::Arc;

/// Adds `n` to a usage counter, as a handler's transaction does.
async fn count(srv: &TestServer, tenant: &str, mode: &'static str, metric: &'static str, n: i64) {
    let tenant = tenant.to_string();
    srv.state()
        .db
        .write({
            let now = srv.clock().now();
            move |c| usage::incr(c, &tenant, mode, metric, n, now)
        })
        .await
        .expect("counted");
}

fn exceeded(r: Result<Reservation, Error>) -> (u64, serde_json::Value) {
    match r {
        Err(Error::QuotaExceeded {
            retry_after,
            details,
            ..
        }) => (retry_after, details),
        Err(e) => panic!("expected quota_exceeded, got {e}"),
        Ok(_) => panic!("expected quota_exceeded, got a reservation"),
    }
}

#[tokio::test]
async fn an_exhausted_quota_is_refused_until_the_month_ends() {
    let srv = TestServer::start_at("2031-03-14T10:30:00Z").await;
    let t = tenant(&srv, Plan::Free, Some(json!({"eventsPerMonth": 5}))).await;
    let p = principal(&srv, &t.key).await;
    let limits = &srv.state().limits;
    limits.prepare(&p).await.unwrap();

    let r = limits.reserve(&p, Quota::Events, 3).expect("3 of 5");
    count(&srv, &t.id, "live", usage::EVENTS, 3).await;
    r.commit(3);

    // A batch of 3 would cross the quota: refused whole, saying how many remain.
    let (retry, d) = exceeded(limits.reserve(&p, Quota::Events, 3));
    assert_eq!(d["limit"], 5);
    assert_eq!(d["used"], 3);
    assert_eq!(d["remaining"], 2);
    assert_eq!(d["requested"], 3);
    assert_eq!(d["quota"], "events");
    let now = srv.clock().now();
    let (_, month_end) = engram::time::month_bounds(now);
    let until_reset = (month_end - now).num_seconds() as u64;
    assert!(
        retry.abs_diff(until_reset) <= 2,
        "retry {retry} vs {until_reset}"
    );
    assert_eq!(d["resetAt"], "2031-04-01T00:00:00.000Z");

    // Held units count: with 2 held, nothing is left; dropping the hold gives them back.
    let held = limits.reserve(&p, Quota::Events, 2).expect("the last 2");
    exceeded(limits.reserve(&p, Quota::Events, 1));
    drop(held);
    let last = limits.reserve(&p, Quota::Events, 2).expect("released");
    count(&srv, &t.id, "live", usage::EVENTS, 1).await;
    // Committing less than was held (a duplicate in the batch) frees the rest.
    last.commit(1);
    limits
        .reserve(&p, Quota::Events, 1)
        .expect("one left")
        .commit(1);
    let (_, d) = exceeded(limits.reserve(&p, Quota::Events, 1));
    assert_eq!(
        (d["used"].as_u64(), d["remaining"].as_u64()),
        (Some(5), Some(0))
    );

    // Invocations are a separate quota.
    limits
        .reserve(&p, Quota::Invocations, 1)
        .expect("invocations untouched")
        .commit(1);

    // The month turns: the whole quota is there again.
    srv.clock()
        .set(engram::time::parse("2031-04-01T00:00:01Z").unwrap())
        .unwrap();
    limits.prepare(&p).await.unwrap();
    limits
        .reserve(&p, Quota::Events, 5)
        .expect("a new month")
        .commit(5);
    exceeded(limits.reserve(&p, Quota::Events, 1));
    srv.shutdown().await;
}

#[tokio::test]
async fn invocation_quota_and_its_status() {
    let srv = TestServer::start().await;
    let t = tenant(&srv, Plan::Free, Some(json!({"invocationsPerMonth": 2}))).await;
    let p = principal(&srv, &t.key).await;
    let limits = &srv.state().limits;
    limits.prepare(&p).await.unwrap();
    for _ in 0..2 {
        let r = limits
            .reserve(&p, Quota::Invocations, 1)
            .expect("within quota");
        count(&srv, &t.id, "live", usage::INVOCATIONS, 1).await;
        r.commit(1);
    }
    let (_, d) = exceeded(limits.reserve(&p, Quota::Invocations, 1));
    assert_eq!(d["quota"], "invocations");
    assert_eq!(d["remaining"], 0);
    let st = limits.quota_status(&p, Quota::Invocations).await.unwrap();
    assert_eq!((st.limit, st.used, st.remaining), (Some(2), 2, Some(0)));
    let ev = limits.quota_status(&p, Quota::Events).await.unwrap();
    // The free plan's events quota, untouched.
    assert_eq!(
        (ev.limit, ev.used, ev.remaining),
        (Some(1000), 0, Some(1000))
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn concurrent_reservations_never_cross_the_quota() {
    let srv = TestServer::start().await;
    let t = tenant(&srv, Plan::Free, Some(json!({"eventsPerMonth": 20}))).await;
    let p = Arc::new(principal(&srv, &t.key).await);
    srv.state().limits.prepare(&p).await.unwrap();
    let state = srv.running.as_ref().unwrap().state.clone();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (state, p) = (state.clone(), p.clone());
            std::thread::spawn(move || {
                let mut granted = Vec::new();
                for _ in 0..10 {
                    if let Ok(r) = state.limits.reserve(&p, Quota::Events, 1) {
                        granted.push(r);
                    }
                }
                let n = granted.len();
                for r in granted {
                    r.commit(1);
                }
                n
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 20);
    srv.shutdown().await;
}

#[tokio::test]
async fn test_keys_count_apart_and_counters_survive_a_restart() {
    let srv = TestServer::start().await;
    let t = tenant(&srv, Plan::Free, Some(json!({"eventsPerMonth": 10}))).await;
    let test_key = add_key(&srv, &t, "test").await;
    // Stored use this month: 9 live events, 2 test events.
    count(&srv, &t.id, "live", usage::EVENTS, 9).await;
    count(&srv, &t.id, "test", usage::EVENTS, 2).await;
    let dir = srv.shutdown().await;

    let srv = TestServer::start_in(dir, |_| {}).await;
    let live = principal(&srv, &t.key).await;
    let test = principal(&srv, &test_key).await;
    assert_eq!(test.mode, "test");
    let limits = &srv.state().limits;
    limits.prepare(&live).await.unwrap();
    limits.prepare(&test).await.unwrap();
    let (_, d) = exceeded(limits.reserve(&live, Quota::Events, 2));
    assert_eq!(
        (d["used"].as_u64(), d["remaining"].as_u64()),
        (Some(9), Some(1))
    );
    limits
        .reserve(&live, Quota::Events, 1)
        .expect("the last live one")
        .commit(1);
    // Test keys have their own 10, of which 2 are used.
    limits
        .reserve(&test, Quota::Events, 8)
        .expect("8 test events")
        .commit(8);
    exceeded(limits.reserve(&test, Quota::Events, 1));
    let st = limits.quota_status(&test, Quota::Events).await.unwrap();
    assert_eq!((st.used, st.remaining), (10, Some(0)));
    srv.shutdown().await;
}

#[tokio::test]
async fn a_reservation_without_prepare_loads_the_figure_itself() {
    let srv = TestServer::start().await;
    let t = tenant(&srv, Plan::Free, Some(json!({"eventsPerMonth": 4}))).await;
    count(&srv, &t.id, "live", usage::EVENTS, 4).await;
    let p = principal(&srv, &t.key).await;
    // No `prepare`: the reservation reads this month's counter on its own.
    let (_, d) = exceeded(srv.state().limits.reserve(&p, Quota::Events, 1));
    assert_eq!(d["used"], 4);
    srv.shutdown().await;
}
