//! Tenant isolation on every capture route: another tenant's ids answer 404, lists and metrics
//! never show another tenant's data, and forgetting a session touches only the caller's tenant.

use super::{all_events, all_memories, ev, wait_processed};
use crate::support::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn tenants_never_see_or_touch_each_other() {
    let srv = TestServer::start().await;
    let other = srv.create_tenant("other", engram::plans::Plan::Pro).await;
    let (s, b) = srv
        .post(
            "/v1/capture",
            json!({"type": "message", "sessionId": "shared-name", "payload": {"content": "mine"},
                   "idempotencyKey": "k"}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let event_id = b["data"]["eventId"].as_str().unwrap().to_string();
    wait_processed(&srv, &srv.key, 1).await;
    let memory_id = all_memories(&srv, &srv.key, "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The other tenant: 404 for ids, empty lists, zero metrics.
    let (s, b) = send(srv.req_as(&other, Method::GET, &format!("/v1/events/{event_id}"))).await;
    assert_eq!(s, 404, "{b}");
    assert_eq!(b["error"]["code"], "not_found");
    let (s, _) = send(srv.req_as(&other, Method::GET, &format!("/v1/memories/{memory_id}"))).await;
    assert_eq!(s, 404);
    assert!(all_events(&srv, &other, "").await.is_empty());
    assert!(all_memories(&srv, &other, "").await.is_empty());
    // A cursor from another tenant reveals nothing either.
    let (s, b) = send(srv.req_as(
        &other,
        Method::GET,
        &format!("/v1/events?cursor={event_id}"),
    ))
    .await;
    assert_eq!(s, 200);
    assert!(b["data"]["items"].as_array().unwrap().is_empty());
    let (s, b) = send(srv.req_as(&other, Method::GET, "/v1/usage-metrics")).await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["usage"]["events"]["ingested"], 0);
    assert_eq!(b["data"]["totals"]["memories"], 0);

    // The same idempotency key in another tenant is a different event.
    let (s, b) = send(srv.req_as(&other, Method::POST, "/v1/capture").json(
        &json!({"type": "message", "sessionId": "shared-name", "payload": {"content": "theirs"},
                "idempotencyKey": "k"}),
    ))
    .await;
    assert_eq!(s, 202);
    assert_eq!(b["data"]["status"], "ingested");
    assert_ne!(b["data"]["eventId"].as_str().unwrap(), event_id);
    wait_processed(&srv, &other, 1).await;

    // Forgetting "shared-name" as the other tenant leaves ours alone.
    let (s, b) = send(srv.req_as(&other, Method::DELETE, "/v1/sessions/shared-name")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["eventsDeleted"], 1);
    let mine = all_events(&srv, &srv.key, "").await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["payload"]["content"], "mine");
    assert_eq!(all_memories(&srv, &srv.key, "").await.len(), 1);
    let (s, _) = send(srv.req_as(&other, Method::DELETE, "/v1/sessions/shared-name")).await;
    assert_eq!(s, 404);
    let (s, _) = srv.get(&format!("/v1/events/{event_id}")).await;
    assert_eq!(s, 200);
    // Batches are scoped too.
    let (s, _) = send(
        srv.req_as(&other, Method::POST, "/v1/capture/batch")
            .json(&json!({"events": [ev("b", "x")]})),
    )
    .await;
    assert_eq!(s, 202);
    assert_eq!(all_events(&srv, &srv.key, "").await.len(), 1);
}
