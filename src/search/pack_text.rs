//! A context pack serialised straight to JSON text.
//!
//! `Pack::to_json` builds the memory-family `data` object as a `serde_json::Value`; the synthesize
//! reply only needs its text, and building the tree first (a map and a key string per field, a
//! copy of every entry's content, twice) was a measurable part of a small pack's cost. This writes
//! the same object through borrowed `Serialize` views instead. Invariant: `to_json_text(p)` parses
//! to exactly `to_json(p)` (unit-tested), so the reply is the same whichever is used.

use super::pack::{Pack, PackEntry};
use serde::Serialize;

#[derive(Serialize)]
struct Provenance<'a> {
    #[serde(rename = "sourceType")]
    source_type: &'a str,
    #[serde(rename = "sourceId")]
    source_id: &'a str,
    #[serde(rename = "evidenceCount")]
    evidence_count: i64,
    #[serde(rename = "artifactType", skip_serializing_if = "Option::is_none")]
    artifact_type: Option<&'a str>,
    #[serde(rename = "memoryType", skip_serializing_if = "Option::is_none")]
    memory_type: Option<&'a str>,
    #[serde(rename = "eventId", skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    #[serde(rename = "sessionId", skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
}

#[derive(Serialize)]
struct Entry<'a> {
    section: &'a str,
    content: &'a str,
    confidence: f64,
    tokens: u64,
    provenance: Vec<Provenance<'a>>,
}

#[derive(Serialize)]
struct Section<'a> {
    #[serde(rename = "type")]
    source_type: &'a str,
    content: &'a str,
    source: &'a str,
    confidence: f64,
    section: &'a str,
    tokens: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Budget {
    limit: u32,
    used: u64,
    compression_ratio: f64,
    entries_included: usize,
    entries_dropped: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContextPack {
    entries: usize,
    estimated_tokens: u64,
    max_tokens: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
    pack_id: &'a str,
    query: Option<&'a str>,
    entries: Vec<Entry<'a>>,
    sections: Vec<Section<'a>>,
    budget: Budget,
    total_tokens: u64,
    context_pack: ContextPack,
}

fn provenance(e: &PackEntry) -> Provenance<'_> {
    let artifact = e.source_type == "artifact";
    Provenance {
        source_type: e.source_type,
        source_id: &e.source_id,
        evidence_count: e.evidence_count,
        artifact_type: artifact.then_some(e.detail_type.as_str()),
        memory_type: (!artifact).then_some(e.detail_type.as_str()),
        event_id: e.event_id.as_deref(),
        session_id: e.session_id.as_deref(),
    }
}

/// The text of `pack.to_json(include_provenance)`.
pub fn to_json_text(pack: &Pack, include_provenance: bool) -> String {
    let n = pack.entries.len();
    let data = Data {
        pack_id: &pack.pack_id,
        query: pack.query.as_deref(),
        entries: pack
            .entries
            .iter()
            .map(|e| Entry {
                section: e.section,
                content: &e.content,
                confidence: e.confidence,
                tokens: e.tokens,
                provenance: if include_provenance {
                    vec![provenance(e)]
                } else {
                    Vec::new()
                },
            })
            .collect(),
        sections: pack
            .entries
            .iter()
            .map(|e| Section {
                source_type: e.source_type,
                content: &e.content,
                source: &e.source_id,
                confidence: e.confidence,
                section: e.section,
                tokens: e.tokens,
            })
            .collect(),
        budget: Budget {
            limit: pack.limit,
            used: pack.used,
            compression_ratio: pack.compression_ratio(),
            entries_included: n,
            entries_dropped: pack.dropped,
        },
        total_tokens: pack.used,
        context_pack: ContextPack {
            entries: n,
            estimated_tokens: pack.used,
            max_tokens: pack.limit,
        },
    };
    serde_json::to_string(&data).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::to_json_text;
    use crate::search::pack::{Pack, PackEntry};
    use serde_json::Value;

    fn entry(source_type: &'static str, id: &str, event: Option<&str>) -> PackEntry {
        PackEntry {
            section: if source_type == "artifact" {
                "procedures"
            } else {
                "context"
            },
            source_type,
            source_id: id.into(),
            content: format!("content of {id} with \"quotes\", unicode é and a\nnewline"),
            confidence: 0.73,
            tokens: 17,
            detail_type: if source_type == "artifact" {
                "task_schema".into()
            } else {
                "episodic".into()
            },
            evidence_count: 3,
            event_id: event.map(String::from),
            session_id: event.map(|_| "sess-1".to_string()),
        }
    }

    #[test]
    fn text_is_the_json_value() {
        let packs = [
            Pack {
                pack_id: "pack_1".into(),
                query: Some("deploy the service".into()),
                entries: vec![
                    entry("memory", "mem_1", Some("evt_1")),
                    entry("artifact", "art_1", None),
                    entry("memory", "mem_2", None),
                ],
                limit: 1000,
                used: 51,
                source_tokens: 140,
                dropped: 4,
            },
            Pack {
                pack_id: "pack_2".into(),
                query: None,
                entries: Vec::new(),
                limit: 10,
                used: 0,
                source_tokens: 0,
                dropped: 0,
            },
        ];
        for p in &packs {
            for provenance in [true, false] {
                let text: Value = serde_json::from_str(&to_json_text(p, provenance)).unwrap();
                assert_eq!(text, p.to_json(provenance), "provenance {provenance}");
            }
        }
    }
}
