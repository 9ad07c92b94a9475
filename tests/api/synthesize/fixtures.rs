//! Fixtures for the synthesize tests: memories and artifacts written to SQLite and indexed the way
//! capture and learn do, and checks every pack must pass.

use crate::support::*;
use engram::search::{docs, IndexOp};
use reqwest::Method;
use serde_json::{json, Value};

/// A memory row written to SQLite and indexed like capture/learn do.
pub struct Mem<'a> {
    pub id: String,
    pub kind: &'a str,
    pub content: String,
    pub confidence: f64,
    pub salience: f64,
    pub agent: Option<&'a str>,
    pub session: Option<&'a str>,
    pub tags: Vec<&'a str>,
    /// Seconds after a fixed base time.
    pub at: u32,
}

pub fn mem<'a>(kind: &'a str, content: &str, at: u32) -> Mem<'a> {
    Mem {
        id: engram::ids::new("mem"),
        kind,
        content: content.to_string(),
        confidence: 0.6,
        salience: 0.5,
        agent: None,
        session: Some("sess-1"),
        tags: Vec::new(),
        at,
    }
}

fn stamp(at: u32) -> String {
    format!(
        "2026-11-20T{:02}:{:02}:{:02}.000Z",
        10 + at / 3600,
        (at / 60) % 60,
        at % 60
    )
}

pub async fn insert_memory(srv: &TestServer, tenant: &str, m: Mem<'_>) -> String {
    let tags: Vec<String> = m.tags.iter().map(|t| t.to_string()).collect();
    let d = docs::memory_doc(
        tenant,
        &m.id,
        m.kind,
        m.agent,
        m.session,
        tags.clone(),
        &m.content,
        &stamp(m.at),
        m.confidence,
        m.salience,
    );
    let (t, id, kind, content) = (
        tenant.to_string(),
        m.id.clone(),
        m.kind.to_string(),
        m.content.clone(),
    );
    let (agent, session) = (m.agent.map(str::to_string), m.session.map(str::to_string));
    let (conf, sal, ts) = (m.confidence, m.salience, stamp(m.at));
    srv.state()
        .db
        .write(move |c| {
            c.test_exec(
                "INSERT INTO memories(id, tenant_id, kind, agent_id, session_id, content, tags_json,
                    confidence, salience, status, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'active', ?10, ?10)",
                &[
                    &id,
                    &t,
                    &kind,
                    &agent,
                    &session,
                    &content,
                    &serde_json::to_string(&tags).unwrap(),
                    &conf,
                    &sal,
                    &ts,
                ],
            )?;
            Ok(())
        })
        .await
        .expect("memory inserted");
    srv.state().search.submit(IndexOp::Upsert(Box::new(d)));
    m.id
}

pub async fn insert_artifact(
    srv: &TestServer,
    tenant: &str,
    kind: &str,
    title: &str,
    content: Value,
    confidence: f64,
) -> String {
    let id = engram::ids::new("art");
    let d = docs::artifact_doc(
        tenant,
        &id,
        kind,
        None,
        title,
        &content,
        &stamp(100),
        confidence,
    );
    let (t, i, k, ti) = (
        tenant.to_string(),
        id.clone(),
        kind.to_string(),
        title.to_string(),
    );
    srv.state()
        .db
        .write(move |c| {
            c.test_exec(
                "INSERT INTO artifacts(id, tenant_id, type, signature, title, status, confidence,
                    evidence_count, token_count, content_json, compiled_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?1, ?4, 'active', ?5, 3, 10, ?6, ?7, ?7, ?7)",
                &[
                    &i,
                    &t,
                    &k,
                    &ti,
                    &confidence,
                    &content.to_string(),
                    &stamp(100),
                ],
            )?;
            Ok(())
        })
        .await
        .expect("artifact inserted");
    srv.state().search.submit(IndexOp::Upsert(Box::new(d)));
    id
}

/// The tenant of a key (from the memory envelope's meta).
pub async fn tenant_of(srv: &TestServer, key: &str) -> String {
    let (s, b) = send(
        srv.req_as(key, Method::POST, "/v1/synthesize")
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    b["meta"]["tenantId"].as_str().unwrap().to_string()
}

pub async fn synth(srv: &TestServer, key: &str, body: Value) -> Value {
    let (s, b) = send(srv.req_as(key, Method::POST, "/v1/synthesize").json(&body)).await;
    assert_eq!(s, 200, "{body} → {b}");
    b["data"].clone()
}

pub fn ids(pack: &Value) -> Vec<String> {
    pack["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["provenance"][0]["sourceId"].as_str().unwrap().to_string())
        .collect()
}

/// Every invariant of a pack's shape and budget.
pub fn check_pack(p: &Value) {
    let entries = p["entries"].as_array().unwrap();
    let sections = p["sections"].as_array().unwrap();
    assert_eq!(entries.len(), sections.len());
    let limit = p["budget"]["limit"].as_u64().unwrap();
    let used = p["budget"]["used"].as_u64().unwrap();
    assert!(used <= limit, "used {used} > limit {limit}");
    let mut sum = 0;
    for (e, s) in entries.iter().zip(sections) {
        let content = e["content"].as_str().unwrap();
        assert_eq!(e["tokens"].as_u64().unwrap(), docs::count_tokens(content));
        sum += e["tokens"].as_u64().unwrap();
        assert_eq!(s["content"], e["content"]);
        assert_eq!(s["source"], e["provenance"][0]["sourceId"]);
        assert_eq!(s["type"], e["provenance"][0]["sourceType"]);
    }
    assert_eq!(sum, used);
    assert_eq!(p["budget"]["entriesIncluded"], entries.len());
    assert_eq!(p["totalTokens"], used);
    assert_eq!(p["contextPack"]["entries"], entries.len());
    assert_eq!(p["contextPack"]["estimatedTokens"], used);
    assert_eq!(p["contextPack"]["maxTokens"], limit);
    assert!(p["packId"].as_str().unwrap().starts_with("pack_"));
}
