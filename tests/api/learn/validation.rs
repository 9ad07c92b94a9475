//! Every validation error of learn and the artifact routes, and permissions.

use super::*;
use crate::support::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn every_validation_error_names_its_field() {
    let srv = server().await;
    expect_422(&srv, json!([1]), "body").await;
    expect_422(&srv, json!({"agentId": 5}), "agentId").await;
    expect_422(&srv, json!({"agentId": ""}), "agentId").await;
    expect_422(&srv, json!({"sessionId": "x".repeat(257)}), "sessionId").await;
    expect_422(&srv, json!({"eventIds": "evt_1"}), "eventIds").await;
    expect_422(&srv, json!({"eventIds": []}), "eventIds").await;
    expect_422(&srv, json!({"eventIds": ["evt_1", 2]}), "eventIds[1]").await;
    expect_422(&srv, json!({"scope": "partial"}), "scope").await;
    expect_422(&srv, json!({"options": 3}), "options").await;
    expect_422(
        &srv,
        json!({"options": {"maxEvents": 0}}),
        "options.maxEvents",
    )
    .await;
    expect_422(
        &srv,
        json!({"options": {"maxEvents": "ten"}}),
        "options.maxEvents",
    )
    .await;
    expect_422(
        &srv,
        json!({"options": {"artifactType": "poem"}}),
        "options.artifactType",
    )
    .await;
    expect_422(
        &srv,
        json!({"options": {"artifactTypes": "task_schema"}}),
        "options.artifactTypes",
    )
    .await;
    expect_422(
        &srv,
        json!({"options": {"artifactTypes": ["task_schema", "x"]}}),
        "options.artifactTypes[1]",
    )
    .await;
    expect_422(
        &srv,
        json!({"options": {"minPatternStrength": 1.5}}),
        "options.minPatternStrength",
    )
    .await;
    expect_422(
        &srv,
        json!({"options": {"minPatternStrength": "high"}}),
        "options.minPatternStrength",
    )
    .await;
    let (s, b) = send(srv.req(Method::POST, "/v1/learn").body("{not json")).await;
    assert_eq!(s, 422, "{b}");
    let (s, b) = send(
        srv.req(Method::POST, "/v1/learn?wait=maybe")
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    // Nothing was enqueued by a rejected request.
    let jobs = srv
        .state()
        .db
        .read(|c| {
            Ok(c.test_column::<i64>("SELECT count(*) FROM jobs WHERE kind = 'learn'", &[])?[0])
        })
        .await
        .unwrap();
    assert_eq!(jobs, 0);

    for q in [
        "type=poem",
        "status=gone",
        "sort=name",
        "order=sideways",
        "limit=0",
        "limit=101",
        "offset=-1",
        "cursor=garbage",
        "limit=x",
    ] {
        let (s, b) = srv.get(&format!("/v1/artifacts?{q}")).await;
        assert_eq!(s, 400, "{q}: {b}");
        let field = q.split('=').next().unwrap();
        assert_eq!(b["error"]["details"][0]["field"], field, "{q}: {b}");
    }
    let (s, _) = srv.get("/v1/artifacts/art_missing").await;
    assert_eq!(s, 404);
    let (s, _) = srv.get("/v1/learn/job_missing").await;
    assert_eq!(s, 404);
    let (s, b) = send(
        srv.req(Method::PATCH, "/v1/artifacts/art_missing")
            .json(&json!({"status": "active"})),
    )
    .await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = send(
        srv.req(Method::PATCH, "/v1/artifacts/art_missing")
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["details"][0]["field"], "status");
    let (s, b) = send(
        srv.req(Method::PATCH, "/v1/artifacts/art_missing")
            .json(&json!({"status": "superseded"})),
    )
    .await;
    assert_eq!(s, 422, "{b}");

    // Permissions: read keys cannot learn or deprecate; they can list.
    let read = srv.create_key(&["read"]).await;
    let (s, _) = send(
        srv.req_as(&read, Method::POST, "/v1/learn")
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(srv.req_as(&read, Method::DELETE, "/v1/artifacts/art_x")).await;
    assert_eq!(s, 403);
    let (s, _) = send(srv.req_as(&read, Method::GET, "/v1/artifacts")).await;
    assert_eq!(s, 200);
}
