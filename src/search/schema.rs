//! The index schema. `tenant`, `doc_id`, `kind`, `section`, `agent`, `tags` and `tenant_session`
//! are exact-match strings; `text` is tokenized (lower-cased, simple words) and scored with BM25;
//! `created`, `confidence` and `salience` are fast fields for ranking.

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
}

pub fn build() -> Schema {
    let mut b = Schema::builder();
    b.add_text_field("tenant", STRING);
    b.add_text_field("doc_id", STRING | STORED);
    b.add_text_field("kind", STRING | STORED);
    b.add_text_field("section", STRING | STORED);
    b.add_text_field("agent", STRING);
    b.add_text_field("tags", STRING);
    b.add_text_field("tenant_session", STRING);
    b.add_text_field("text", TEXT);
    b.add_u64_field("created", INDEXED | FAST);
    b.add_f64_field("confidence", FAST);
    b.add_f64_field("salience", FAST);
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
        }
    }
}

/// Custom tokenizers (none yet: the default tokenizer lower-cases and splits on non-alphanumerics).
pub fn register_tokenizers(_index: &Index) {}

/// The term that ties a document to a tenant's session (for forgetting a session).
pub fn tenant_session(tenant_id: &str, session_id: &str) -> String {
    format!("{tenant_id}\u{1f}{session_id}")
}
