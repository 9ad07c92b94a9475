//! Raw tantivy: one shared index (`tenant AND …`) against an index of the tenant alone, on the
//! same documents and queries (the measurement behind the per-tenant layout).

use super::*;
use engram::search::schema;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{doc, Index, IndexWriter, Term};

fn build(dir: &std::path::Path, z: &Zipf, tenants: usize, n: usize) -> Index {
    let index = Index::create_in_dir(dir, schema::build()).expect("index");
    let f = schema::Fields::from_schema(&index.schema());
    let mut w: IndexWriter = index.writer(400_000_000).expect("writer");
    for t in 0..tenants {
        for from in (0..n).step_by(20_000) {
            for r in tenant_rows(z, t, n, from, from + 20_000) {
                w.add_document(doc!(f.tenant => format!("T{t}"), f.doc_id => r.id,
                                    f.text => r.content))
                    .expect("add");
            }
        }
    }
    w.commit().expect("commit");
    w.wait_merging_threads().expect("merges");
    index
}

fn run(index: &Index, qs: &[String], n: usize, filtered: bool) -> Lat {
    let reader = index.reader().expect("reader");
    let searcher = reader.searcher();
    let f = schema::Fields::from_schema(&index.schema());
    let started = Instant::now();
    let mut lat = Vec::new();
    for q in qs.iter().cycle().take(n) {
        if started.elapsed() > TIME_CAP {
            break;
        }
        let t = Instant::now();
        let text = query::text_query(query::QueryTerms {
            stemmed: Vec::new(),
            exact: query::terms(index, f.text, q),
        });
        let query: Box<dyn Query> = if filtered {
            let tenant: Box<dyn Query> = Box::new(TermQuery::new(
                Term::from_field_text(f.tenant, "T0"),
                IndexRecordOption::Basic,
            ));
            Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(ConstScoreQuery::new(tenant, 0.0))),
                (Occur::Must, text),
            ]))
        } else {
            text
        };
        let hits = searcher
            .search(query.as_ref(), &TopDocs::with_limit(10).order_by_score())
            .expect("search");
        std::hint::black_box(hits);
        lat.push(t.elapsed());
    }
    Lat(lat)
}

pub fn compare(z: &Zipf, qs: &[String], a: &Args) {
    println!("layout: raw tantivy, one thread, top-10, tenant 0's queries");
    let shared_dir = tempfile::tempdir().expect("dir");
    let own_dir = tempfile::tempdir().expect("dir");
    let t = Instant::now();
    let shared = build(shared_dir.path(), z, a.tenants, a.docs);
    let own = build(own_dir.path(), z, 1, a.docs);
    println!("  built both in {:.1?}", t.elapsed());
    let n = a.requests;
    let _ = run(&shared, qs, n / 4, true);
    let _ = run(&own, qs, n / 4, false);
    let w = Instant::now();
    run(&shared, qs, n, true).row(
        &format!("shared index, {} docs, tenant AND (…)", a.docs * a.tenants),
        w.elapsed(),
    );
    let w = Instant::now();
    run(&own, qs, n, false).row(&format!("per-tenant index, {} docs", a.docs), w.elapsed());
}
