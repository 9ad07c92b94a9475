//! Text embeddings for hybrid retrieval (docs/architecture.md, "Search").
//!
//! Two providers, chosen by configuration:
//! - **bundled** (the default): the static model compiled into the binary (`model`), no network;
//! - **external**: any OpenAI-compatible `POST {base}/embeddings` (OpenAI, Ollama, vLLM,
//!   llama.cpp), set with `--embeddings-url` / `--embeddings-model` / `--embeddings-key`;
//! - **off** (`--no-embeddings`): no vectors, ranking by words alone (the cheapest search on very
//!   large tenants).
//!
//! Every vector is L2-normalised and stored int8 with one scale (`quantize`): similarity is an
//! integer dot product times two scales, so the same data ranks the same way on every machine.
//! The provider's `model_id` is written with the index; an index built with another model is
//! rebuilt (re-embedded) instead of mixing vectors of two models.

pub mod model;
pub mod wordpiece;

use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::time::Duration;

/// Texts per request to an external provider.
pub const EXTERNAL_BATCH: usize = 64;
const EXTERNAL_TIMEOUT: Duration = Duration::from_secs(30);
const EXTERNAL_ATTEMPTS: u32 = 3;

/// `v / |v|`; `None` for a zero or non-finite vector.
pub fn normalize(mut v: Vec<f32>) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm <= f32::EPSILON {
        return None;
    }
    for x in &mut v {
        *x /= norm;
    }
    Some(v)
}

/// A unit vector as stored: its scale (f32, little-endian) then one int8 per dimension
/// (`value ≈ scale × q`, symmetric, `scale = max|x| / 127`).
pub fn quantize(v: &[f32]) -> Vec<u8> {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let mut out = Vec::with_capacity(4 + v.len());
    out.extend_from_slice(&scale.to_le_bytes());
    out.extend(
        v.iter()
            .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8 as u8),
    );
    out
}

/// The scale and int8 values of a stored vector (`None` if malformed).
pub fn dequantize_parts(bytes: &[u8]) -> Option<(f32, &[u8])> {
    let (head, values) = bytes.split_at_checked(4)?;
    let scale = f32::from_le_bytes(head.try_into().ok()?);
    (scale.is_finite() && !values.is_empty()).then_some((scale, values))
}

/// The integer dot product of two int8 vectors of the same length. Written in lanes of 32 so
/// the compiler vectorises it with the baseline instruction set (products of two int8 fit an
/// i16; 32 lane sums of i32 cannot overflow for any length engram stores).
#[inline]
pub fn dot_i8(a: &[u8], b: &[u8]) -> i32 {
    const LANES: usize = 32;
    let mut acc = [0i32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += ((x[i] as i8 as i16) * (y[i] as i8 as i16)) as i32;
        }
    }
    let tail: i32 = ra
        .iter()
        .zip(rb)
        .map(|(&x, &y)| (x as i8 as i32) * (y as i8 as i32))
        .sum();
    acc.iter().sum::<i32>() + tail
}

/// Where vectors come from.
#[derive(Clone)]
enum Provider {
    Bundled,
    External(External),
    /// No embeddings: ranking by words alone (`--no-embeddings`).
    Off,
}

#[derive(Clone)]
struct External {
    endpoint: String,
    model: String,
    key: Option<String>,
    client: reqwest::Client,
}

/// The runtime external embedding requests run on: its own (one worker thread, started on first
/// use, never dropped), so callers on any thread — the indexer, `spawn_blocking`, a CLI — can
/// block on a request whatever runtime, if any, they belong to.
fn requests_runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("engram-embed")
        .enable_all()
        .build()
        .map_err(Error::internal)?;
    Ok(RT.get_or_init(|| rt))
}

/// The embedding provider of a server (cheap to clone).
#[derive(Clone)]
pub struct Embedder {
    provider: Provider,
    model_id: String,
}

impl Embedder {
    /// The model compiled into the binary.
    pub fn bundled() -> Embedder {
        Embedder {
            provider: Provider::Bundled,
            model_id: model::MODEL_ID.to_string(),
        }
    }

    /// An OpenAI-compatible provider at `base` (e.g. `http://127.0.0.1:11434/v1`); requests go to
    /// `{base}/embeddings`.
    pub fn external(base: &str, model: &str, key: Option<String>) -> Result<Embedder> {
        let parsed = url::Url::parse(base)
            .map_err(|e| Error::validation("embeddings-url", format!("is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::validation(
                "embeddings-url",
                "must be an http or https URL",
            ));
        }
        if model.trim().is_empty() {
            return Err(Error::validation(
                "embeddings-model",
                "is required with --embeddings-url",
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(EXTERNAL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(Error::internal)?;
        let endpoint = format!("{}/embeddings", base.trim_end_matches('/'));
        Ok(Embedder {
            model_id: format!("openai-compatible:{model}@{}", base.trim_end_matches('/')),
            provider: Provider::External(External {
                endpoint,
                model: model.to_string(),
                key,
                client,
            }),
        })
    }

    /// What an index built with this provider records (and must match to be reused).
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// No vectors at all: documents and queries are matched by their words alone.
    pub fn off() -> Embedder {
        Embedder {
            provider: Provider::Off,
            model_id: "none".to_string(),
        }
    }

    /// Unit vectors of `texts` (`None` for a text with nothing to embed). Blocking: never call it
    /// on an async task (use `spawn_blocking`).
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Option<Vec<f32>>>> {
        match &self.provider {
            Provider::Bundled => {
                let m = model::StaticModel::bundled();
                Ok(texts.iter().map(|t| m.embed(t)).collect())
            }
            Provider::Off => Ok(vec![None; texts.len()]),
            Provider::External(x) => {
                let mut out = Vec::with_capacity(texts.len());
                for chunk in texts.chunks(EXTERNAL_BATCH) {
                    out.extend(x.embed_with_retries(chunk)?);
                }
                Ok(out)
            }
        }
    }

    /// The unit vector of one text (a query).
    pub fn embed_one(&self, text: &str) -> Result<Option<Vec<f32>>> {
        Ok(self.embed_batch(&[text])?.pop().flatten())
    }
}

impl External {
    fn embed_with_retries(&self, texts: &[&str]) -> Result<Vec<Option<Vec<f32>>>> {
        let mut last = None;
        for attempt in 0..EXTERNAL_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200 << attempt));
            }
            match self.embed(texts) {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Unavailable("embeddings provider failed".into())))
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Option<Vec<f32>>>> {
        // Empty strings are refused by some providers: send only texts with content.
        let sent: Vec<(usize, &str)> = texts
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.trim().is_empty())
            .map(|(i, t)| (i, *t))
            .collect();
        let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        if sent.is_empty() {
            return Ok(out);
        }
        let input: Vec<&str> = sent.iter().map(|(_, t)| *t).collect();
        let body = json!({"model": self.model, "input": input});
        let mut req = self.client.post(&self.endpoint).json(&body);
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        let unavailable = |what: String| Error::Unavailable(format!("embeddings provider: {what}"));
        let runtime = requests_runtime()?;
        let reply: Value = runtime.block_on(async {
            let resp = req
                .send()
                .await
                .map_err(|e| unavailable(format!("request failed: {}", e.without_url())))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(unavailable(format!("answered HTTP {}", status.as_u16())));
            }
            resp.json::<Value>()
                .await
                .map_err(|_| unavailable("answered with a body that is not JSON".into()))
        })?;
        let data = reply
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| unavailable("the reply has no data array".into()))?;
        if data.len() != sent.len() {
            return Err(unavailable(format!(
                "returned {} vectors for {} inputs",
                data.len(),
                sent.len()
            )));
        }
        let mut dims = None;
        for (pos, item) in data.iter().enumerate() {
            let index = item
                .get("index")
                .and_then(Value::as_u64)
                .map(|i| i as usize)
                .unwrap_or(pos);
            let vector: Vec<f32> = item
                .get("embedding")
                .and_then(Value::as_array)
                .ok_or_else(|| unavailable(format!("data[{pos}] has no embedding array")))?
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| unavailable(format!("data[{pos}].embedding is not numbers")))?;
            if *dims.get_or_insert(vector.len()) != vector.len() || vector.is_empty() {
                return Err(unavailable("returned vectors of different lengths".into()));
            }
            let Some((slot, _)) = sent.get(index) else {
                return Err(unavailable(format!(
                    "data[{pos}].index {index} is out of range"
                )));
            };
            out[*slot] = normalize(vector);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_vectors_keep_their_similarity() {
        let m = model::StaticModel::bundled();
        let a = m
            .embed("the deploy failed because the disk was full")
            .unwrap();
        let b = m
            .embed("deployment error: no space left on device")
            .unwrap();
        let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let (qa, qb) = (quantize(&a), quantize(&b));
        let (sa, va) = dequantize_parts(&qa).unwrap();
        let (sb, vb) = dequantize_parts(&qb).unwrap();
        let approx = sa * sb * dot_i8(va, vb) as f32;
        assert!((exact - approx).abs() < 0.01, "{exact} vs {approx}");
        assert!(dequantize_parts(&[1, 2]).is_none());
        // The lane-wise dot product equals the plain one, remainders included.
        for n in [0usize, 5, 32, 64, 77, 256] {
            let x: Vec<u8> = (0..n).map(|i| (i * 37 % 255) as u8).collect();
            let y: Vec<u8> = (0..n).map(|i| (i * 91 % 253) as u8).collect();
            let plain: i32 = x
                .iter()
                .zip(&y)
                .map(|(&p, &q)| (p as i8 as i32) * (q as i8 as i32))
                .sum();
            assert_eq!(dot_i8(&x, &y), plain, "{n}");
        }
        assert!(normalize(vec![0.0; 4]).is_none());
    }
}
