//! Search documents and the index operations the storage layer hands to the indexer, and how
//! stored rows become search documents (a leaf module: `store` builds them, `search` consumes
//! them).
//!
//! How stored rows become search documents. Capture, learn and rebuild all go through here, so a
//! rebuilt index holds exactly what live indexing produced.
//!
//! A document's `text` is both what BM25 scores and what a context pack shows, so artifacts are
//! rendered here as readable text (a heading, then their content field by field in a fixed order),
//! and the token count of that text (cl100k_base) is computed once, here, on the caller's thread.

use crossbeam_channel::Sender;
use serde_json::Value;
use std::fmt::Write;

/// One searchable item.
#[derive(Clone, Debug)]
pub struct SearchDoc {
    pub tenant_id: String,
    /// `mem_…` or `art_…`.
    pub doc_id: String,
    /// `episodic`, `semantic` or `artifact`.
    pub kind: &'static str,
    /// The synthesize section: procedures failures decisions facts causal context.
    pub section: &'static str,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub tags: Vec<String>,
    /// The content shown in context packs (and scored by BM25).
    pub text: String,
    /// cl100k_base tokens of `text`.
    pub tokens: u64,
    pub created_ms: u64,
    pub confidence: f64,
    pub salience: f64,
}

pub enum IndexOp {
    /// Adds a document, replacing any with the same `doc_id` in its tenant's index.
    Upsert(Box<SearchDoc>),
    /// Removes a document by id from whichever tenant index holds it (prefer `DeleteDoc`, which
    /// touches only one tenant's index).
    Delete { doc_id: String },
    /// Removes a document of a known tenant.
    DeleteDoc { tenant_id: String, doc_id: String },
    /// Removes every document of a tenant's session.
    DeleteSession {
        tenant_id: String,
        session_id: String,
    },
    /// Removes every document of a tenant (its data was reset or deleted).
    DeleteTenant { tenant_id: String },
    /// Removes everything (before a rebuild).
    DeleteAll,
    /// Commits what is pending and answers once it is searchable.
    Flush(Sender<()>),
}

/// The synthesize section of a memory kind.
pub fn memory_section(kind: &str) -> &'static str {
    match kind {
        "semantic" => "facts",
        _ => "context",
    }
}

/// The synthesize section of an artifact type (docs/api.md "Memory family").
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

/// The number of cl100k_base tokens of `text` (the budget unit of context packs).
pub fn count_tokens(text: &str) -> u64 {
    crate::tokens::count(text)
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
        tokens: count_tokens(content),
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

fn heading(artifact_type: &str) -> &'static str {
    match artifact_type {
        "task_schema" => "Procedure",
        "failure_playbook" => "Failure playbook",
        "decision_policy" => "Decision policy",
        "causal_pattern" => "Causal pattern",
        _ => "Knowledge",
    }
}

/// The content fields of each artifact type in reading order; others follow alphabetically.
fn field_order(artifact_type: &str) -> &'static [&'static str] {
    match artifact_type {
        "task_schema" => &["steps", "preconditions", "postconditions", "variations"],
        "failure_playbook" => &["symptoms", "rootCauses", "recoverySteps", "successRate"],
        "decision_policy" => &["condition", "actions", "recommendation"],
        "causal_pattern" => &["cause", "effect", "frequency", "confidence", "mitigation"],
        _ => &[],
    }
}

/// `recoverySteps` → `Recovery steps`.
fn label(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for (i, c) in key.chars().enumerate() {
        if c == '_' {
            out.push(' ');
        } else if i == 0 {
            out.extend(c.to_uppercase());
        } else if c.is_uppercase() {
            out.push(' ');
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A scalar or a small object on one line.
fn inline(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Bool(b) => out.push_str(if *b { "yes" } else { "no" }),
        Value::Null => out.push('-'),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str("; ");
                }
                inline(x, out);
            }
        }
        Value::Object(m) => {
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{}: ", label(k));
                inline(x, out);
            }
        }
    }
}

fn render_field(key: &str, v: &Value, out: &mut String) {
    match v {
        Value::Array(items) if items.is_empty() => {}
        Value::Array(items) => {
            let _ = writeln!(out, "{}:", label(key));
            let numbered = key.to_ascii_lowercase().contains("steps");
            for (i, item) in items.iter().enumerate() {
                if numbered {
                    let _ = write!(out, "  {}. ", i + 1);
                } else {
                    out.push_str("  - ");
                }
                inline(item, out);
                out.push('\n');
            }
        }
        Value::Null => {}
        _ => {
            let _ = write!(out, "{}: ", label(key));
            inline(v, out);
            out.push('\n');
        }
    }
}

/// Content fields for identity and detail (normalised signatures, per-variant counts): kept in
/// the artifact, left out of the text a pack shows.
const DETAIL_FIELDS: [&str; 5] = [
    "signature",
    "stepDetails",
    "causeSignature",
    "effectSignature",
    "variants",
];

/// `v` without `DETAIL_FIELDS`, at any depth.
fn presentable(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !DETAIL_FIELDS.contains(&k.as_str()))
                .map(|(k, x)| (k.clone(), presentable(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(presentable).collect()),
        other => other.clone(),
    }
}

/// An artifact as readable text: `Procedure: <title>` and its content field by field.
pub fn render_artifact(artifact_type: &str, title: &str, content: &Value) -> String {
    let mut out = String::with_capacity(256);
    let _ = writeln!(out, "{}: {}", heading(artifact_type), title.trim());
    let content = &presentable(content);
    match content {
        Value::Object(m) => {
            let order = field_order(artifact_type);
            for key in order {
                if let Some(v) = m.get(*key) {
                    render_field(key, v, &mut out);
                }
            }
            for (key, v) in m.iter().filter(|(k, _)| !order.contains(&k.as_str())) {
                render_field(key, v, &mut out);
            }
        }
        Value::Null => {}
        other => {
            inline(other, &mut out);
            out.push('\n');
        }
    }
    while out.ends_with('\n') {
        out.pop();
    }
    out
}

/// An artifact row as a document (its readable rendering, see `render_artifact`).
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
    let text = render_artifact(artifact_type, title, content);
    SearchDoc {
        tenant_id: tenant_id.to_string(),
        doc_id: id.to_string(),
        kind: "artifact",
        section: artifact_section(artifact_type),
        agent_id: agent_id.map(str::to_string),
        session_id: None,
        tags: vec![artifact_type.to_string()],
        tokens: count_tokens(&text),
        text,
        created_ms: millis(updated_at),
        confidence,
        salience: confidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_artifacts_readably() {
        let text = render_artifact(
            "task_schema",
            "Deploy payment service",
            &json!({"steps": ["run tests", "deploy"], "preconditions": ["green build"], "extra": 3}),
        );
        assert_eq!(
            text,
            "Procedure: Deploy payment service\nSteps:\n  1. run tests\n  2. deploy\n\
             Preconditions:\n  - green build\nExtra: 3"
        );
        assert!(count_tokens(&text) > 5);
    }
}
