//! The bundled static embedding model (potion-base-8M, MIT; `models/potion-base-8M/README.md`):
//! a token → vector table compiled into the binary, so embedding needs no file, no network and no
//! model runtime. A text's vector is the mean of its tokens' rows, L2-normalised (the Model2Vec
//! recipe); the table is stored int8 with one scale per row.

use super::wordpiece::WordPiece;
use std::sync::OnceLock;

static TABLE: &[u8] = include_bytes!("../../models/potion-base-8M/embeddings.bin");
static VOCAB: &str = include_str!("../../models/potion-base-8M/vocab.txt");

/// The id stored with an index built with this model (a change of model or of its quantisation
/// must change it: vectors of two models are never mixed).
pub const MODEL_ID: &str = "potion-base-8M@bf8b0566-q8";
/// Tokens embedded per text at most (Model2Vec's default).
const MAX_TOKENS: usize = 512;
const MAGIC: &[u8; 8] = b"ENGRAMQ8";

pub struct StaticModel {
    tokenizer: WordPiece,
    rows: usize,
    dims: usize,
    scales: Vec<f32>,
    /// `rows × dims` int8 values, row-major (borrowed from the binary).
    values: &'static [u8],
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl StaticModel {
    fn parse(table: &'static [u8], vocab: &str) -> Option<StaticModel> {
        if table.get(..8)? != MAGIC {
            return None;
        }
        let rows = u32_at(table, 8)? as usize;
        let dims = u32_at(table, 12)? as usize;
        let scales_at = 16;
        let values_at = scales_at + rows * 4;
        let values = table.get(values_at..values_at + rows * dims)?;
        let scales = table[scales_at..values_at]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let tokenizer = WordPiece::from_vocab(vocab)?;
        Some(StaticModel {
            tokenizer,
            rows,
            dims,
            scales,
            values,
        })
    }

    /// The model compiled into this binary (parsed once).
    pub fn bundled() -> &'static StaticModel {
        static MODEL: OnceLock<StaticModel> = OnceLock::new();
        MODEL.get_or_init(|| {
            StaticModel::parse(TABLE, VOCAB).expect("the bundled embedding model is well-formed")
        })
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The unit vector of `text`; `None` when it has no known token.
    pub fn embed(&self, text: &str) -> Option<Vec<f32>> {
        let unk = self.tokenizer.unk();
        let mut sum = vec![0f32; self.dims];
        let mut n = 0usize;
        for id in self.tokenizer.encode(text, MAX_TOKENS) {
            let id = id as usize;
            if id as u32 == unk || id >= self.rows {
                continue;
            }
            let scale = self.scales[id];
            let row = &self.values[id * self.dims..(id + 1) * self.dims];
            for (s, &q) in sum.iter_mut().zip(row) {
                *s += scale * (q as i8) as f32;
            }
            n += 1;
        }
        if n == 0 {
            return None;
        }
        super::normalize(sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn related_sentences_are_closer_than_unrelated_ones() {
        let m = StaticModel::bundled();
        assert_eq!(m.dims(), 256);
        let cat = m.embed("The cat sat on the mat.").unwrap();
        let kitten = m.embed("A kitten is resting on a rug.").unwrap();
        let stocks = m.embed("Stock markets fell sharply today.").unwrap();
        let norm: f32 = cat.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        // The float32 reference (model2vec's recipe in Python) gives 0.41 and −0.04..0.14.
        assert!(cos(&cat, &kitten) > 0.35, "{}", cos(&cat, &kitten));
        assert!(cos(&cat, &stocks) < 0.2, "{}", cos(&cat, &stocks));
        assert!(m.embed("   ").is_none());
        assert_eq!(m.embed("deterministic"), m.embed("deterministic"));
    }

    /// Values from the reference pipeline (Hugging Face `tokenizers` with the model's
    /// tokenizer.json, the same int8 table, numpy mean and norm): the tokenizer here must cut text
    /// exactly as that one does, accents, dashes, e-mail addresses and unknown words included.
    #[test]
    fn vectors_match_the_reference_pipeline() {
        let m = StaticModel::bundled();
        let s = [
            "Priya went to the pottery workshop yesterday!",
            "Héllo Zürich — naïve café, it's 9:30pm; e-mail: x@y.org",
            "When did Mateo paint the harbour?",
            "kubectl rollout restart deployment/web-3 --namespace=prod",
        ];
        let v: Vec<Vec<f32>> = s.iter().map(|t| m.embed(t).unwrap()).collect();
        let expected = [
            [1.0, 0.1766, 0.1821, 0.007],
            [0.1766, 1.0, 0.0199, 0.0387],
            [0.1821, 0.0199, 1.0, 0.0057],
            [0.007, 0.0387, 0.0057, 1.0],
        ];
        for i in 0..4 {
            for j in 0..4 {
                let c = cos(&v[i], &v[j]);
                assert!((c - expected[i][j]).abs() < 2e-3, "{i},{j}: {c}");
            }
        }
        let head = [0.05863, 0.02702, -0.2404, -0.01081, -0.05262, 0.10013];
        for (a, b) in v[1].iter().zip(head) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
}
