//! The vector side of a tenant's index: each document's embedding lives in the `vec` bytes fast
//! field of its tantivy document (so segments, merges, deletes and rebuilds carry it with the
//! text), and is read once per segment into arrays in document order (`SegmentVectors`, cached by
//! segment id like the fast-field columns): the int8 values and scales, and a sketch of one sign
//! bit per dimension.
//!
//! A query is scored in two phases over every document that passes the search's filters: the
//! Hamming distance between sketches (a sequential scan of 32 bytes a document), then the exact
//! integer dot product for the `EXACT_AT_LEAST` (or 16 × k) documents with the closest sketches,
//! shared among segments by size. A tenant with fewer documents than that is scored exactly
//! throughout. Both phases are
//! deterministic (ties go to the lower document), so the same data gives the same neighbours on
//! every machine, and a tenant's query cost depends only on that tenant's documents (one index per
//! tenant).
//!
//! Memory: 4 + dims + dims / 8 bytes per document (292 B with the bundled 256-dim model: 292 MB
//! per million documents).

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::index::SegmentId;
use tantivy::{DocAddress, DocId, Score, Searcher, SegmentOrdinal, SegmentReader};

/// Documents scored exactly at least (over all of a search's segments, shared in proportion to
/// their size), whatever the sketches say.
const EXACT_AT_LEAST: usize = 2_000;

/// One segment's vectors, in document order.
pub struct SegmentVectors {
    dims: usize,
    /// u64 words of sign bits per document.
    words: usize,
    has: Vec<bool>,
    scales: Vec<f32>,
    values: Vec<u8>,
    sketches: Vec<u64>,
}

/// One bit per dimension: set when the value is positive.
fn sketch_into(values: &[u8], out: &mut [u64]) {
    for (i, &v) in values.iter().enumerate() {
        if (v as i8) > 0 {
            out[i / 64] |= 1 << (i % 64);
        }
    }
}

impl SegmentVectors {
    fn load(reader: &SegmentReader) -> tantivy::Result<SegmentVectors> {
        let max_doc = reader.max_doc() as usize;
        let mut out = SegmentVectors {
            dims: 0,
            words: 0,
            has: vec![false; max_doc],
            scales: Vec::new(),
            values: Vec::new(),
            sketches: Vec::new(),
        };
        let Some(column) = reader.fast_fields().bytes("vec")? else {
            return Ok(out);
        };
        // The dictionary holds the distinct vectors in ordinal order; documents point at them.
        let mut distinct: Vec<Option<(f32, Vec<u8>)>> = Vec::with_capacity(column.num_terms());
        let mut stream = column.dictionary().stream()?;
        while stream.advance() {
            distinct.push(
                crate::embed::dequantize_parts(stream.key())
                    .filter(|(_, v)| out.dims == 0 || v.len() == out.dims)
                    .map(|(scale, v)| {
                        out.dims = v.len();
                        (scale, v.to_vec())
                    }),
            );
        }
        if out.dims == 0 {
            return Ok(out);
        }
        out.words = out.dims.div_ceil(64);
        out.scales = vec![0.0; max_doc];
        out.values = vec![0; max_doc * out.dims];
        out.sketches = vec![0; max_doc * out.words];
        for doc in 0..max_doc {
            let Some(ord) = column.ords().first(doc as DocId) else {
                continue;
            };
            let Some(Some((scale, v))) = distinct.get(ord as usize) else {
                continue;
            };
            if v.len() != out.dims {
                continue;
            }
            out.has[doc] = true;
            out.scales[doc] = *scale;
            out.values[doc * out.dims..(doc + 1) * out.dims].copy_from_slice(v);
            sketch_into(v, &mut out.sketches[doc * out.words..(doc + 1) * out.words]);
        }
        Ok(out)
    }

    /// The similarity of document `doc` to the query (`None` without a vector).
    #[inline]
    pub fn similarity(&self, doc: DocId, query: &QueryVector) -> Option<f32> {
        let d = doc as usize;
        if !*self.has.get(d)? || self.dims != query.values.len() {
            return None;
        }
        let dot = crate::embed::dot_i8(
            &self.values[d * self.dims..(d + 1) * self.dims],
            &query.values,
        );
        Some(dot as f32 * self.scales[d] * query.scale)
    }

    /// The Hamming distance between the sketches of `doc` and the query (`None` without a
    /// vector).
    #[inline]
    fn distance(&self, doc: DocId, query: &QueryVector) -> Option<u32> {
        let d = doc as usize;
        if !*self.has.get(d)? || self.words != query.sketch.len() {
            return None;
        }
        let mine = &self.sketches[d * self.words..(d + 1) * self.words];
        Some(
            mine.iter()
                .zip(&query.sketch)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum(),
        )
    }

    pub fn bytes(&self) -> usize {
        self.values.len() + self.scales.len() * 4 + self.sketches.len() * 8 + self.has.len()
    }
}

/// A query's vector, quantised like the stored ones, with its sketch.
#[derive(Debug)]
pub struct QueryVector {
    scale: f32,
    values: Vec<u8>,
    sketch: Vec<u64>,
}

impl QueryVector {
    pub fn new(unit: &[f32]) -> Option<QueryVector> {
        let q = crate::embed::quantize(unit);
        let (scale, values) = crate::embed::dequantize_parts(&q)?;
        let mut sketch = vec![0u64; values.len().div_ceil(64)];
        sketch_into(values, &mut sketch);
        Some(QueryVector {
            scale,
            values: values.to_vec(),
            sketch,
        })
    }
}

/// Loaded segment vectors by segment id; entries of segments no longer in use are dropped when a
/// new segment is loaded.
#[derive(Default)]
pub struct VectorCache(Mutex<HashMap<SegmentId, Arc<SegmentVectors>>>);

impl VectorCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<SegmentId, Arc<SegmentVectors>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The vectors of every segment of `searcher`, in segment order.
    pub fn segments(&self, searcher: &Searcher) -> tantivy::Result<Vec<Arc<SegmentVectors>>> {
        let mut out = Vec::with_capacity(searcher.segment_readers().len());
        let mut loaded = false;
        for reader in searcher.segment_readers() {
            let id = reader.segment_id();
            if let Some(v) = self.lock().get(&id) {
                out.push(v.clone());
                continue;
            }
            let v = Arc::new(SegmentVectors::load(reader)?);
            self.lock().insert(id, v.clone());
            out.push(v);
            loaded = true;
        }
        if loaded {
            let live: HashSet<SegmentId> = searcher
                .segment_readers()
                .iter()
                .map(|r| r.segment_id())
                .collect();
            self.lock().retain(|k, _| live.contains(k));
        }
        Ok(out)
    }
}

/// A hit of the vector search: similarity, then the document.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VectorHit {
    pub similarity: f32,
    pub addr: DocAddress,
}

/// Heap order: the worst hit on top (lowest similarity; on a tie the later address), so the heap
/// keeps the best `k` and the kept set does not depend on the order documents are visited in.
#[derive(PartialEq)]
struct Worst(f32, u32, u32);

impl Eq for Worst {}

impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Worst {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .0
            .total_cmp(&self.0)
            .then((self.1, self.2).cmp(&(other.1, other.2)))
    }
}

/// Collects the `k` documents most similar to the query among those the query matched.
pub struct TopVectors {
    pub k: usize,
    /// Documents in all the searched segments (`Searcher::num_docs` plus deleted: max docs).
    pub total_docs: u64,
    pub query: Arc<QueryVector>,
    pub segments: Vec<Arc<SegmentVectors>>,
}

pub struct SegmentTop {
    segment: SegmentOrdinal,
    /// Documents of this segment scored exactly at most.
    exact: usize,
    vectors: Arc<SegmentVectors>,
    query: Arc<QueryVector>,
    k: usize,
    /// Matched documents (in document order) and their sketch distances.
    matched: Vec<(DocId, u16)>,
    /// How many matched documents are at each sketch distance.
    histogram: Vec<u32>,
}

impl Collector for TopVectors {
    type Fruit = Vec<VectorHit>;
    type Child = SegmentTop;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentTop> {
        let vectors = self
            .segments
            .get(segment as usize)
            .cloned()
            .ok_or_else(|| {
                tantivy::TantivyError::InternalError("segment vectors missing".into())
            })?;
        let share = reader.max_doc() as f64 / self.total_docs.max(1) as f64;
        let exact =
            ((EXACT_AT_LEAST.max(self.k * 16) as f64 * share).ceil() as usize).max(self.k * 4);
        Ok(SegmentTop {
            segment,
            exact,
            vectors,
            query: self.query.clone(),
            k: self.k.max(1),
            matched: Vec::with_capacity(reader.num_docs() as usize),
            histogram: vec![
                0;
                self.segments
                    .get(segment as usize)
                    .map_or(0, |v| v.dims + 1)
            ],
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<VectorHit>>) -> tantivy::Result<Vec<VectorHit>> {
        let mut all: Vec<VectorHit> = fruits.into_iter().flatten().collect();
        all.sort_by(|a, b| {
            b.similarity
                .total_cmp(&a.similarity)
                .then(a.addr.segment_ord.cmp(&b.addr.segment_ord))
                .then(a.addr.doc_id.cmp(&b.addr.doc_id))
        });
        all.truncate(self.k.max(1));
        Ok(all)
    }
}

impl SegmentCollector for SegmentTop {
    type Fruit = Vec<VectorHit>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if let Some(d) = self.vectors.distance(doc, &self.query) {
            self.matched.push((doc, d as u16));
            if let Some(h) = self.histogram.get_mut(d as usize) {
                *h += 1;
            }
        }
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        for &doc in docs {
            self.collect(doc, 0.0);
        }
    }

    fn harvest(self) -> Vec<VectorHit> {
        // Phase 1: the `exact` documents with the closest sketches (every document of a small
        // segment): all below the distance where the count reaches it, then the first ones at
        // that distance in document order.
        let (mut below, mut cut) = (0usize, self.histogram.len());
        for (d, n) in self.histogram.iter().enumerate() {
            if below + *n as usize >= self.exact {
                cut = d;
                break;
            }
            below += *n as usize;
        }
        let mut at_cut = self.exact.saturating_sub(below);
        // Phase 2: exact similarity, the best k kept.
        let mut heap: BinaryHeap<Worst> = BinaryHeap::with_capacity(self.k + 1);
        for &(doc, dist) in &self.matched {
            let dist = dist as usize;
            if dist > cut {
                continue;
            }
            if dist == cut {
                if at_cut == 0 {
                    continue;
                }
                at_cut -= 1;
            }
            let Some(sim) = self.vectors.similarity(doc, &self.query) else {
                continue;
            };
            if heap.len() < self.k {
                heap.push(Worst(sim, self.segment, doc));
            } else if let Some(worst) = heap.peek() {
                if Worst(sim, self.segment, doc) < *worst {
                    heap.pop();
                    heap.push(Worst(sim, self.segment, doc));
                }
            }
        }
        heap.into_iter()
            .map(|Worst(similarity, segment_ord, doc_id)| VectorHit {
                similarity,
                addr: DocAddress::new(segment_ord, doc_id),
            })
            .collect()
    }
}
