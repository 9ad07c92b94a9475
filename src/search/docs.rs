//! How stored rows become search documents. Capture, learn and rebuild all go through here, so a
//! rebuilt index holds exactly what live indexing produced.

use super::SearchDoc;
use serde_json::Value;

/// The synthesize section of a memory kind.
pub fn memory_section(kind: &str) -> &'static str {
    match kind {
        "semantic" => "facts",
        _ => "context",
    }
}

/// The synthesize section of an artifact type (API.md §2).
pub fn artifact_section(artifact_type: &str) -> &'static str {
    match artifact_type {
        "task_schema" => "procedures",
        "failure_playbook" => "failures",
        "decision_policy" => "decisions",
        "causal_pattern" => "causal",
        _ => "context",
    }
}

fn kind_static(kind: &str) -> &'static str {
    match kind {
        "semantic" => "semantic",
        "artifact" => "artifact",
        _ => "episodic",
    }
}

fn millis(rfc3339: &str) -> u64 {
    crate::time::parse(rfc3339)
        .map(|t| t.timestamp_millis().max(0) as u64)
        .unwrap_or(0)
}

/// A memory row as a document.
#[allow(clippy::too_many_arguments)]
pub fn memory_doc(
    tenant_id: &str,
    id: &str,
    kind: &str,
    agent_id: Option<&str>,
    session_id: Option<&str>,
    tags: Vec<String>,
    content: &str,
    created_at: &str,
    confidence: f64,
    salience: f64,
) -> SearchDoc {
    SearchDoc {
        tenant_id: tenant_id.to_string(),
        doc_id: id.to_string(),
        kind: kind_static(kind),
        section: memory_section(kind),
        agent_id: agent_id.map(str::to_string),
        session_id: session_id.map(str::to_string),
        tags,
        text: content.to_string(),
        created_ms: millis(created_at),
        confidence,
        salience,
    }
}

/// Every string and number inside a JSON value, in document order, as searchable text.
pub fn json_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Number(n) => {
            out.push_str(&n.to_string());
            out.push(' ');
        }
        Value::Array(a) => a.iter().for_each(|x| json_text(x, out)),
        Value::Object(m) => m.values().for_each(|x| json_text(x, out)),
        _ => {}
    }
}

/// An artifact row as a document (title plus all the text of its content).
#[allow(clippy::too_many_arguments)]
pub fn artifact_doc(
    tenant_id: &str,
    id: &str,
    artifact_type: &str,
    agent_id: Option<&str>,
    title: &str,
    content: &Value,
    updated_at: &str,
    confidence: f64,
) -> SearchDoc {
    let mut text = String::with_capacity(256);
    text.push_str(title);
    text.push(' ');
    json_text(content, &mut text);
    SearchDoc {
        tenant_id: tenant_id.to_string(),
        doc_id: id.to_string(),
        kind: "artifact",
        section: artifact_section(artifact_type),
        agent_id: agent_id.map(str::to_string),
        session_id: None,
        tags: vec![artifact_type.to_string()],
        text,
        created_ms: millis(updated_at),
        confidence,
        salience: confidence,
    }
}
