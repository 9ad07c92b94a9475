//! A context pack as the memory-family `data` object of `POST /v1/synthesize` (docs/api.md "Memory family", the
//! superset of documented and SDK fields), serialised straight to JSON text.
//!
//! The reply only needs the text: building a `serde_json::Value` tree first (a map and a key
//! string per field, a copy of every entry's content, twice) was a measurable part of a small
//! pack's cost, so the object is written through borrowed `Serialize` views instead.

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

/// An entry's provenance: its own source, then every turn joined into it.
fn provenances(e: &PackEntry) -> Vec<Provenance<'_>> {
    let mut out = vec![provenance(e)];
    out.extend(e.joined.iter().map(|j| Provenance {
        source_type: "memory",
        source_id: &j.source_id,
        evidence_count: 1,
        artifact_type: None,
        memory_type: Some(j.detail_type.as_str()),
        event_id: j.event_id.as_deref(),
        session_id: j.session_id.as_deref(),
    }));
    out
}

/// The `data` object of a synthesize reply, as JSON text.
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
                    provenances(e)
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
    use serde_json::{json, Value};

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
            joined: Vec::new(),
        }
    }

    #[test]
    fn text_is_the_data_object() {
        let pack = Pack {
            pack_id: "pack_1".into(),
            query: Some("deploy the service".into()),
            entries: vec![
                entry("memory", "mem_1", Some("evt_1")),
                entry("artifact", "art_1", None),
            ],
            limit: 1000,
            used: 34,
            source_tokens: 140,
            dropped: 4,
        };
        let content =
            |id: &str| format!("content of {id} with \"quotes\", unicode é and a\nnewline");
        let text: Value = serde_json::from_str(&to_json_text(&pack, true)).unwrap();
        assert_eq!(
            text,
            json!({
                "packId": "pack_1",
                "query": "deploy the service",
                "entries": [
                    {"section": "context", "content": content("mem_1"), "confidence": 0.73,
                     "tokens": 17, "provenance": [{"sourceType": "memory", "sourceId": "mem_1",
                     "evidenceCount": 3, "memoryType": "episodic", "eventId": "evt_1",
                     "sessionId": "sess-1"}]},
                    {"section": "procedures", "content": content("art_1"), "confidence": 0.73,
                     "tokens": 17, "provenance": [{"sourceType": "artifact", "sourceId": "art_1",
                     "evidenceCount": 3, "artifactType": "task_schema"}]},
                ],
                "sections": [
                    {"type": "memory", "content": content("mem_1"), "source": "mem_1",
                     "confidence": 0.73, "section": "context", "tokens": 17},
                    {"type": "artifact", "content": content("art_1"), "source": "art_1",
                     "confidence": 0.73, "section": "procedures", "tokens": 17},
                ],
                "budget": {"limit": 1000, "used": 34, "compressionRatio": 4.12,
                           "entriesIncluded": 2, "entriesDropped": 4},
                "totalTokens": 34,
                "contextPack": {"entries": 2, "estimatedTokens": 34, "maxTokens": 1000},
            })
        );
        let bare: Value = serde_json::from_str(&to_json_text(&pack, false)).unwrap();
        assert_eq!(bare["entries"][0]["provenance"], json!([]));
        let empty = Pack {
            pack_id: "pack_2".into(),
            query: None,
            entries: Vec::new(),
            limit: 10,
            used: 0,
            source_tokens: 0,
            dropped: 0,
        };
        let text: Value = serde_json::from_str(&to_json_text(&empty, true)).unwrap();
        assert_eq!(text["query"], Value::Null);
        assert_eq!(text["budget"]["compressionRatio"], json!(0.0));
        assert_eq!(text["entries"], json!([]));
    }
}
