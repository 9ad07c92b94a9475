//! Ranking that depends on the live documents alone, not on the index's history.
//!
//! Two indexes holding the same documents can differ underneath: how documents were batched into
//! segments, and how many replaced or deleted documents still sit in them until a merge. That
//! happens between the nodes of a cluster (each indexes the search feed in its own rounds), and
//! between a live index and one rebuilt from the database. Tantivy's defaults let both leak into
//! results: BM25's statistics count deleted documents (`Searcher`'s `Bm25StatisticsProvider`
//! counts every document ever added to a segment), and its top-K breaks score ties by document
//! address. Here:
//! - `LiveStats` gives BM25 statistics of live documents only: their count; for each term, the
//!   live documents holding it (a segment without deletions answers from its term dictionary; one
//!   with deletions counts the term's live postings once, cached per segment state); and for
//!   each field the total of the live documents' field lengths as the index stores them
//!   (fieldnorms), cached per segment state.
//! - `StableTop` collects the top K by score with ties broken by the document's stable key
//!   (`doc_key`, a hash of its id), keeping tantivy's block-WAND pruning: it lowers the pruning
//!   threshold to just below the K-th score, so documents tied with it are still seen.

use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::index::SegmentId;
use tantivy::query::{Bm25StatisticsProvider, Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, DocId, DocSet, Score, Searcher, SegmentOrdinal, SegmentReader, Term};

/// A segment as it stands: its id and how many of its documents are deleted (deletions are the
/// only thing that changes in a segment).
type SegmentState = (SegmentId, u32);

/// Entries kept per cache before it is cleared.
const MAX_CACHED: usize = 100_000;

/// Per-segment statistics of live documents, computed once per segment state.
#[derive(Default)]
pub struct StatsCache {
    tokens: Mutex<HashMap<(SegmentState, Field), u64>>,
    doc_freq: Mutex<HashMap<(SegmentState, Term), u64>>,
}

fn state(reader: &SegmentReader) -> SegmentState {
    (reader.segment_id(), reader.num_deleted_docs())
}

impl StatsCache {
    fn tokens(&self, reader: &SegmentReader, field: Field) -> tantivy::Result<u64> {
        let key = (state(reader), field);
        if let Some(n) = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(*n);
        }
        let norms = reader.get_fieldnorms_reader(field)?;
        let n: u64 = match reader.alive_bitset() {
            Some(alive) => alive.iter_alive().map(|d| norms.fieldnorm(d) as u64).sum(),
            None => (0..reader.max_doc())
                .map(|d| norms.fieldnorm(d) as u64)
                .sum(),
        };
        let mut cache = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, n);
        Ok(n)
    }

    fn doc_freq(&self, reader: &SegmentReader, term: &Term) -> tantivy::Result<u64> {
        let inverted = reader.inverted_index(term.field())?;
        let Some(alive) = reader.alive_bitset() else {
            return Ok(inverted.doc_freq(term)? as u64);
        };
        let key = (state(reader), term.clone());
        if let Some(n) = self
            .doc_freq
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(*n);
        }
        let mut n = 0u64;
        if let Some(mut postings) = inverted.read_postings(term, IndexRecordOption::Basic)? {
            let mut doc = postings.doc();
            while doc != tantivy::TERMINATED {
                if alive.is_alive(doc) {
                    n += 1;
                }
                doc = postings.advance();
            }
        }
        let mut cache = self.doc_freq.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, n);
        Ok(n)
    }
}

/// BM25 statistics of a searcher's live documents.
pub struct LiveStats<'a> {
    pub searcher: &'a Searcher,
    pub cache: &'a StatsCache,
}

impl LiveStats<'_> {
    /// Live documents holding `term`.
    pub fn live_doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        let mut n = 0;
        for reader in self.searcher.segment_readers() {
            n += self.cache.doc_freq(reader, term)?;
        }
        Ok(n)
    }
}

impl Bm25StatisticsProvider for LiveStats<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        let mut n = 0;
        for reader in self.searcher.segment_readers() {
            n += self.cache.tokens(reader, field)?;
        }
        Ok(n)
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.searcher.num_docs())
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        self.live_doc_freq(term)
    }
}

/// A hit in the heap: the worst on top (lower score; on a tie, the larger key).
#[derive(Clone, Copy, PartialEq)]
struct Hit {
    score: Score,
    key: u64,
    doc: DocId,
}

impl Eq for Hit {}

impl Ord for Hit {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.key.cmp(&other.key))
    }
}

impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The top `limit` documents by score, ties broken by `doc_key`; best first.
pub struct StableTop {
    pub limit: usize,
    /// The `doc_key` column of each segment by ordinal, when the caller has them open (opening
    /// a column costs more than collecting a segment's hits); others are opened here.
    pub keys: Vec<tantivy::columnar::Column<u64>>,
}

pub struct StableTopSegment {
    limit: usize,
    segment_ord: SegmentOrdinal,
    keys: tantivy::columnar::Column<u64>,
    heap: BinaryHeap<Hit>,
}

impl StableTopSegment {
    fn push(&mut self, doc: DocId, score: Score) {
        let hit = Hit {
            score,
            key: self.keys.first(doc).unwrap_or(0),
            doc,
        };
        if self.heap.len() < self.limit {
            self.heap.push(hit);
        } else if let Some(worst) = self.heap.peek() {
            if hit < *worst {
                // `hit` ranks above the worst kept one (the heap's order is reversed).
                self.heap.pop();
                self.heap.push(hit);
            }
        }
    }

    /// Scores a document must pass to be seen: just below the worst kept one once the heap is
    /// full, so ties with it still come.
    fn threshold(&self) -> Score {
        match self.heap.peek() {
            Some(worst) if self.heap.len() >= self.limit => just_below(worst.score),
            _ => Score::MIN,
        }
    }
}

/// The largest score below `x` (`f32::next_down`, which is newer than this crate's MSRV).
fn just_below(x: Score) -> Score {
    if x.is_nan() || x == Score::NEG_INFINITY {
        return x;
    }
    if x == 0.0 {
        return -Score::from_bits(1);
    }
    let bits = x.to_bits();
    if x > 0.0 {
        Score::from_bits(bits - 1)
    } else {
        Score::from_bits(bits + 1)
    }
}

impl SegmentCollector for StableTopSegment {
    type Fruit = Vec<(Score, u64, DocAddress)>;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.push(doc, score);
    }

    fn harvest(self) -> Self::Fruit {
        let ord = self.segment_ord;
        self.heap
            .into_iter()
            .map(|h| (h.score, h.key, DocAddress::new(ord, h.doc)))
            .collect()
    }
}

impl Collector for StableTop {
    type Fruit = Vec<(Score, DocAddress)>;
    type Child = StableTopSegment;

    fn for_segment(
        &self,
        segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<StableTopSegment> {
        Ok(StableTopSegment {
            limit: self.limit.max(1),
            segment_ord,
            keys: match self.keys.get(segment_ord as usize) {
                Some(k) => k.clone(),
                None => reader.fast_fields().u64("doc_key")?,
            },
            heap: BinaryHeap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(
        &self,
        fruits: Vec<Vec<(Score, u64, DocAddress)>>,
    ) -> tantivy::Result<Self::Fruit> {
        let mut all: Vec<(Score, u64, DocAddress)> = fruits.into_iter().flatten().collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.truncate(self.limit.max(1));
        Ok(all.into_iter().map(|(s, _, a)| (s, a)).collect())
    }

    fn collect_segment(
        &self,
        weight: &dyn Weight,
        segment_ord: u32,
        reader: &SegmentReader,
    ) -> tantivy::Result<Vec<(Score, u64, DocAddress)>> {
        let mut seg = self.for_segment(segment_ord, reader)?;
        let alive = reader.alive_bitset();
        weight.for_each_pruning(Score::MIN, reader, &mut |doc, score| {
            if alive.map_or(true, |a| a.is_alive(doc)) {
                seg.push(doc, score);
            }
            seg.threshold()
        })?;
        Ok(seg.harvest())
    }
}
