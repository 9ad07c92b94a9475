//! The index schema (one tantivy index per tenant, all with this schema).
//!
//! `tenant`, `doc_id`, `kind`, `section`, `agent`, `tags` and `tenant_session` are exact-match
//! strings; `text` is tokenized (lower-cased simple words), scored with BM25 and stored, because it
//! is also the content a context pack shows. Ranking and packing read only fast fields:
//! `created`, `confidence`, `salience`, `tokens` (cl100k_base count of `text`), `section_no`,
//! `doc_key` (a stable hash of the doc id, the deterministic tie-break) and `recency`
//! (`created_ms << 20 | low 20 bits of doc_key`: "most recent first" without ties on a millisecond).

use tantivy::schema::{Field, Schema, FAST, INDEXED, STORED, STRING, TEXT};
use tantivy::Index;

#[derive(Clone, Copy, Debug)]
pub struct Fields {
    pub tenant: Field,
    pub doc_id: Field,
    pub kind: Field,
    pub section: Field,
    pub agent: Field,
    pub tags: Field,
    pub tenant_session: Field,
    pub text: Field,
    pub created: Field,
    pub confidence: Field,
    pub salience: Field,
    pub tokens: Field,
    pub section_no: Field,
    pub doc_key: Field,
    pub recency: Field,
}

/// Section names in `section_no` order.
pub const SECTIONS: [&str; 6] = [
    "procedures",
    "failures",
    "decisions",
    "facts",
    "causal",
    "context",
];

pub fn section_no(section: &str) -> u64 {
    SECTIONS
        .iter()
        .position(|s| *s == section)
        .unwrap_or(SECTIONS.len() - 1) as u64
}

pub fn build() -> Schema {
    let mut b = Schema::builder();
    b.add_text_field("tenant", STRING);
    b.add_text_field("doc_id", STRING | STORED);
    b.add_text_field("kind", STRING | STORED);
    b.add_text_field("section", STRING);
    b.add_text_field("agent", STRING);
    b.add_text_field("tags", STRING);
    b.add_text_field("tenant_session", STRING);
    b.add_text_field("text", TEXT | STORED);
    b.add_u64_field("created", INDEXED | FAST);
    b.add_f64_field("confidence", INDEXED | FAST);
    b.add_f64_field("salience", FAST);
    b.add_u64_field("tokens", FAST);
    b.add_u64_field("section_no", FAST);
    b.add_u64_field("doc_key", FAST);
    b.add_u64_field("recency", FAST);
    b.build()
}

impl Fields {
    pub fn from_schema(s: &Schema) -> Fields {
        let f = |n: &str| s.get_field(n).expect("field in schema");
        Fields {
            tenant: f("tenant"),
            doc_id: f("doc_id"),
            kind: f("kind"),
            section: f("section"),
            agent: f("agent"),
            tags: f("tags"),
            tenant_session: f("tenant_session"),
            text: f("text"),
            created: f("created"),
            confidence: f("confidence"),
            salience: f("salience"),
            tokens: f("tokens"),
            section_no: f("section_no"),
            doc_key: f("doc_key"),
            recency: f("recency"),
        }
    }
}

/// Custom tokenizers (none: the default tokenizer lower-cases and splits on non-alphanumerics,
/// and the query side tokenizes with the same analyzer, see `query::terms`).
pub fn register_tokenizers(_index: &Index) {}

/// The term that ties a document to a tenant's session (for forgetting a session).
pub fn tenant_session(tenant_id: &str, session_id: &str) -> String {
    format!("{tenant_id}\u{1f}{session_id}")
}

/// A stable 64-bit key of a doc id (first 8 bytes of its SHA-256): the same on every machine and
/// every rebuild, unlike tantivy's internal doc addresses.
pub fn doc_key(doc_id: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(doc_id.as_bytes());
    u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]])
}

/// The "most recent first" sort key: milliseconds in the high 44 bits (good until the year 2527),
/// then 20 bits of the doc key so documents of one millisecond still sort the same way everywhere.
pub fn recency_key(created_ms: u64, doc_key: u64) -> u64 {
    (created_ms.min((1 << 44) - 1) << 20) | (doc_key & 0xF_FFFF)
}
