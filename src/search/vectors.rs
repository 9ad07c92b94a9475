//! The vector side of a tenant's index: each document's embedding lives in the `vec` bytes fast
//! field of its tantivy document (so segments, merges, deletes and rebuilds carry it with the
//! text), and is read once per segment into one contiguous int8 array (`SegmentVectors`, cached
//! by segment id like the fast-field columns). A query is scored against every document that
//! passes the search's filters by an exact integer dot product: no approximate index, so the same
//! data gives the same neighbours everywhere, and a tenant's query cost depends only on that
//! tenant's documents (one index per tenant).
//!
//! Memory: 4 + dims bytes per document (260 B with the bundled 256-dim model: 260 MB per million
//! documents), plus 4 bytes of ordinal per document.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::index::SegmentId;
use tantivy::{DocAddress, DocId, Score, Searcher, SegmentOrdinal, SegmentReader};

const NONE: u32 = u32::MAX;

/// One segment's vectors: per document the index of its vector (or `NONE`), and the distinct
/// vectors' scales and values.
pub struct SegmentVectors {
    slot: Vec<u32>,
    scales: Vec<f32>,
    values: Vec<u8>,
    dims: usize,
}

impl SegmentVectors {
    fn load(reader: &SegmentReader) -> tantivy::Result<SegmentVectors> {
        let max_doc = reader.max_doc() as usize;
        let mut out = SegmentVectors {
            slot: vec![NONE; max_doc],
            scales: Vec::new(),
            values: Vec::new(),
            dims: 0,
        };
        let Some(column) = reader.fast_fields().bytes("vec")? else {
            return Ok(out);
        };
        // The dictionary holds the distinct vectors in ordinal order; documents point at them.
        let mut ord_slot: Vec<u32> = Vec::with_capacity(column.num_terms());
        let mut stream = column.dictionary().stream()?;
        while stream.advance() {
            match crate::embed::dequantize_parts(stream.key()) {
                Some((scale, values)) if out.dims == 0 || values.len() == out.dims => {
                    out.dims = values.len();
                    ord_slot.push(out.scales.len() as u32);
                    out.scales.push(scale);
                    out.values.extend_from_slice(values);
                }
                _ => ord_slot.push(NONE),
            }
        }
        for doc in 0..max_doc as DocId {
            if let Some(ord) = column.ords().first(doc) {
                out.slot[doc as usize] = ord_slot.get(ord as usize).copied().unwrap_or(NONE);
            }
        }
        Ok(out)
    }

    /// The similarity of document `doc` to the query (`None` without a vector).
    #[inline]
    pub fn similarity(&self, doc: DocId, query: &QueryVector) -> Option<f32> {
        let s = *self.slot.get(doc as usize)?;
        if s == NONE || self.dims != query.values.len() {
            return None;
        }
        let at = s as usize * self.dims;
        let dot = crate::embed::dot_i8(&self.values[at..at + self.dims], &query.values);
        Some(dot as f32 * self.scales[s as usize] * query.scale)
    }

    pub fn bytes(&self) -> usize {
        self.values.len() + self.scales.len() * 4 + self.slot.len() * 4
    }
}

/// A query's vector, quantised like the stored ones.
#[derive(Debug)]
pub struct QueryVector {
    scale: f32,
    values: Vec<u8>,
}

impl QueryVector {
    pub fn new(unit: &[f32]) -> Option<QueryVector> {
        let q = crate::embed::quantize(unit);
        let (scale, values) = crate::embed::dequantize_parts(&q)?;
        Some(QueryVector {
            scale,
            values: values.to_vec(),
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
#[derive(Clone, Copy, Debug)]
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
    pub query: Arc<QueryVector>,
    pub segments: Vec<Arc<SegmentVectors>>,
}

pub struct SegmentTop {
    segment: SegmentOrdinal,
    vectors: Arc<SegmentVectors>,
    query: Arc<QueryVector>,
    k: usize,
    heap: BinaryHeap<Worst>,
}

impl Collector for TopVectors {
    type Fruit = Vec<VectorHit>;
    type Child = SegmentTop;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        _reader: &SegmentReader,
    ) -> tantivy::Result<SegmentTop> {
        let vectors = self
            .segments
            .get(segment as usize)
            .cloned()
            .ok_or_else(|| {
                tantivy::TantivyError::InternalError("segment vectors missing".into())
            })?;
        Ok(SegmentTop {
            segment,
            vectors,
            query: self.query.clone(),
            k: self.k.max(1),
            heap: BinaryHeap::new(),
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
        let Some(sim) = self.vectors.similarity(doc, &self.query) else {
            return;
        };
        if self.heap.len() < self.k {
            self.heap.push(Worst(sim, self.segment, doc));
        } else if let Some(worst) = self.heap.peek() {
            if sim > worst.0 {
                self.heap.pop();
                self.heap.push(Worst(sim, self.segment, doc));
            }
        }
    }

    fn harvest(self) -> Vec<VectorHit> {
        self.heap
            .into_iter()
            .map(|Worst(similarity, segment_ord, doc_id)| VectorHit {
                similarity,
                addr: DocAddress::new(segment_ord, doc_id),
            })
            .collect()
    }
}
