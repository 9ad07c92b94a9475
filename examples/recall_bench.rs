//! Recall benchmark on real multi-session dialogue (the LOCOMO conversations, read at run time).
//!
//! Protocol: every turn of a conversation is captured over HTTP as a `message` event (one agent per
//! conversation, one session per dialogue session, the speaker as `role`, the turn text as
//! `content` — a shared photo's caption appended as `[shares a photo: …]` — and the session's date
//! in `payload.date`), learn runs, then each question that has evidence (category 5, adversarial,
//! has none) is synthesized with `agentId` at 500, 1,000, 2,000 and 4,000 tokens. Evidence recall
//! is the share of the questions' evidence turns whose event is in the pack (an entry's provenance
//! names every event it holds), over all evidence turns. Beside it, in the same run: plain BM25
//! (k1 1.2, b 0.75, lower-cased alphanumeric words) over the raw turn texts, packed in rank order
//! at ~4 characters a token. Synthesize latency (client-observed, one request at a time) is
//! printed too.
//!
//! The data is never copied into the repository: point `--data` at the directory of the
//! conversations (default `../shared/data/locomo-dev`); without it the benchmark says so and exits.
//!
//! Run: `cargo run --release --example recall_bench -- [--data DIR] [--budgets 500,1000,2000,4000]
//! [--questions N] [--no-date] [--show N]`. Talks only to 127.0.0.1, every loop is bounded by the data.

use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

struct Turn {
    dia_id: String,
    speaker: String,
    text: String,
    session: usize,
    date: String,
}

struct Question {
    text: String,
    evidence: Vec<String>,
    category: i64,
}

struct Conversation {
    name: String,
    turns: Vec<Turn>,
    questions: Vec<Question>,
}

fn load(path: &std::path::Path) -> Option<Conversation> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let mut turns = Vec::new();
    for n in 1..=200 {
        let Some(list) = v.get(format!("session_{n}")).and_then(Value::as_array) else {
            continue;
        };
        let date = v
            .get(format!("session_{n}_date_time"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for t in list {
            let mut text = t["text"].as_str().unwrap_or_default().to_string();
            if let Some(c) = t.get("blip_caption").and_then(Value::as_str) {
                text.push_str(&format!(" [shares a photo: {c}]"));
            }
            turns.push(Turn {
                dia_id: t["dia_id"].as_str().unwrap_or_default().to_string(),
                speaker: t["speaker"].as_str().unwrap_or_default().to_string(),
                text,
                session: n,
                date: date.clone(),
            });
        }
    }
    let questions = v["qa"]
        .as_array()
        .map(|qa| {
            qa.iter()
                .filter(|q| q["category"].as_i64() != Some(5))
                .filter_map(|q| {
                    let evidence: Vec<String> = q["evidence"]
                        .as_array()?
                        .iter()
                        .filter_map(Value::as_str)
                        .flat_map(|e| e.split([';', ',']))
                        .map(|e| e.trim().to_string())
                        .filter(|e| !e.is_empty())
                        .collect();
                    (!evidence.is_empty()).then(|| Question {
                        text: q["question"].as_str().unwrap_or_default().to_string(),
                        evidence,
                        category: q["category"].as_i64().unwrap_or(0),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Conversation {
        name: path.file_stem()?.to_string_lossy().into_owned(),
        turns,
        questions,
    })
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Plain BM25 over the turns of one conversation; returns turn indexes packed into `budget`
/// tokens (~4 characters a token), in rank order.
struct Bm25 {
    docs: Vec<HashMap<String, f64>>,
    lens: Vec<f64>,
    df: HashMap<String, f64>,
    avg: f64,
}

impl Bm25 {
    fn new(texts: &[String]) -> Bm25 {
        let mut df: HashMap<String, f64> = HashMap::new();
        let mut docs = Vec::new();
        let mut lens = Vec::new();
        for t in texts {
            let w = words(t);
            lens.push(w.len() as f64);
            let mut tf: HashMap<String, f64> = HashMap::new();
            for x in w {
                *tf.entry(x).or_default() += 1.0;
            }
            for k in tf.keys() {
                *df.entry(k.clone()).or_default() += 1.0;
            }
            docs.push(tf);
        }
        let avg = lens.iter().sum::<f64>() / lens.len().max(1) as f64;
        Bm25 {
            docs,
            lens,
            df,
            avg,
        }
    }

    fn rank(&self, query: &str) -> Vec<usize> {
        let n = self.docs.len() as f64;
        let q: HashSet<String> = words(query).into_iter().collect();
        let mut scored: Vec<(f64, usize)> = self
            .docs
            .iter()
            .enumerate()
            .map(|(i, tf)| {
                let mut s = 0.0;
                for w in &q {
                    if let Some(f) = tf.get(w) {
                        let df = self.df[w];
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        s += idf * f * 2.2 / (f + 1.2 * (0.25 + 0.75 * self.lens[i] / self.avg));
                    }
                }
                (s, i)
            })
            .filter(|(s, _)| *s > 0.0)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|(_, i)| i).collect()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1).cloned())
    };
    let data = PathBuf::from(arg("--data").unwrap_or_else(|| "../shared/data/locomo-dev".into()));
    let budgets: Vec<u32> = arg("--budgets")
        .unwrap_or_else(|| "500,1000,2000,4000".into())
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect();
    // Without the session dates (to see what they cost in tokens).
    let no_date = argv.iter().any(|a| a == "--no-date");
    // Print the packs of the first N questions at the smallest budget (to read what is packed).
    let show: usize = arg("--show").and_then(|n| n.parse().ok()).unwrap_or(0);
    let max_questions: usize = arg("--questions")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&data)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let convs: Vec<Conversation> = files.iter().filter_map(|p| load(p)).collect();
    if convs.is_empty() {
        println!(
            "no conversations under {} (pass --data DIR): nothing to measure",
            data.display()
        );
        return;
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = engram::config::Config::for_data_dir(dir.path());
    cfg.limits_enabled = false;
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    let running = engram::start(cfg).await.expect("server starts");
    let key = running.bootstrap_key.clone().expect("bootstrap key");
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };

    // Capture.
    let started = Instant::now();
    let mut event_turn: HashMap<String, (usize, String)> = HashMap::new();
    let mut total_turns = 0;
    for (ci, c) in convs.iter().enumerate() {
        let agent = format!("conv-{}", c.name);
        for chunk in c.turns.chunks(500) {
            let events: Vec<Value> = chunk
                .iter()
                .map(|t| {
                    json!({"type": "message", "sessionId": format!("{agent}-s{}", t.session),
                       "payload": if no_date {
                           json!({"role": t.speaker, "content": t.text})
                       } else {
                           json!({"role": t.speaker, "content": t.text, "date": t.date})
                       },
                       "metadata": {"agentId": agent, "diaId": t.dia_id}})
                })
                .collect();
            let reply: Value = post(
                "/v1/capture/batch?wait=searchable&timeout=60",
                json!({ "events": events }),
            )
            .await
            .expect("capture")
            .json()
            .await
            .expect("json");
            let results = reply["data"]["results"].as_array().expect("results");
            for (t, r) in chunk.iter().zip(results) {
                let id = r["eventId"].as_str().expect("eventId").to_string();
                event_turn.insert(id, (ci, t.dia_id.clone()));
            }
            total_turns += chunk.len();
        }
    }
    let captured = started.elapsed();
    let learn: Value = post("/v1/learn?wait=true", json!({}))
        .await
        .expect("learn")
        .json()
        .await
        .expect("json");
    // Learn's memories and artifacts reach the index through the same queue: one more searchable
    // capture (in a session of its own) waits behind them.
    post(
        "/v1/capture?wait=searchable&timeout=60",
        json!({"type": "observation", "sessionId": "bench-flush", "payload": {"note": "flush"}}),
    )
    .await
    .expect("flush");
    println!(
        "captured {total_turns} turns of {} conversations in {:.1} s; learn {} ({} ms)",
        convs.len(),
        captured.as_secs_f64(),
        learn["data"]["status"],
        learn["data"]["stats"]["compilationMs"]
    );

    let n_questions: usize = convs
        .iter()
        .map(|c| c.questions.len().min(max_questions))
        .sum();
    let n_evidence: usize = convs
        .iter()
        .flat_map(|c| c.questions.iter().take(max_questions))
        .map(|q| q.evidence.len())
        .sum();
    println!("{n_questions} questions with {n_evidence} evidence turns\n");
    println!(
        "| budget | plain BM25 over turns | engram | engram p50 ms | engram p99 ms | mean entries |"
    );
    println!("|---|---|---|---|---|---|");
    let mut shown = 0usize;
    let mut categories = Vec::new();
    for &budget in &budgets {
        let (mut bm25_found, mut engram_found, mut entries) = (0usize, 0usize, 0usize);
        let mut latencies: Vec<f64> = Vec::new();
        let mut by_category: std::collections::BTreeMap<i64, (usize, usize)> = Default::default();
        for (ci, c) in convs.iter().enumerate() {
            let texts: Vec<String> = c
                .turns
                .iter()
                .map(|t| format!("{}: {}", t.speaker, t.text))
                .collect();
            let bm25 = Bm25::new(&texts);
            let agent = format!("conv-{}", c.name);
            for q in c.questions.iter().take(max_questions) {
                // Plain BM25.
                let mut left = budget as i64;
                let mut packed: HashSet<&str> = HashSet::new();
                for i in bm25.rank(&q.text) {
                    let cost = (texts[i].chars().count() as i64 + 3) / 4;
                    if cost <= left {
                        left -= cost;
                        packed.insert(c.turns[i].dia_id.as_str());
                    }
                }
                bm25_found += q
                    .evidence
                    .iter()
                    .filter(|e| packed.contains(e.as_str()))
                    .count();
                // engram.
                let t0 = Instant::now();
                let reply: Value = post(
                    "/v1/synthesize",
                    json!({"query": q.text, "maxTokens": budget, "agentId": agent}),
                )
                .await
                .expect("synthesize")
                .json()
                .await
                .expect("json");
                latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                if budget == budgets[0] && shown < show {
                    shown += 1;
                    println!("\n## {} (evidence {:?})", q.text, q.evidence);
                    for e in reply["data"]["entries"].as_array().into_iter().flatten() {
                        println!(
                            "- ({} tokens) {}",
                            e["tokens"],
                            e["content"].as_str().unwrap_or_default()
                        );
                    }
                }
                let mut got: HashSet<String> = HashSet::new();
                let list = reply["data"]["entries"].as_array().cloned();
                for e in list.unwrap_or_default() {
                    entries += 1;
                    for p in e["provenance"].as_array().into_iter().flatten() {
                        if let Some((conv, dia)) =
                            p["eventId"].as_str().and_then(|id| event_turn.get(id))
                        {
                            if *conv == ci {
                                got.insert(dia.clone());
                            }
                        }
                    }
                }
                let hit = q.evidence.iter().filter(|e| got.contains(*e)).count();
                engram_found += hit;
                let cat = by_category.entry(q.category).or_insert((0, 0));
                cat.0 += hit;
                cat.1 += q.evidence.len();
            }
        }
        latencies.sort_by(f64::total_cmp);
        println!(
            "| {budget} | {:.3} | {:.3} | {:.2} | {:.2} | {:.1} |",
            bm25_found as f64 / n_evidence as f64,
            engram_found as f64 / n_evidence as f64,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            entries as f64 / n_questions as f64
        );
        categories.push((budget, by_category));
    }
    println!("\nengram evidence recall by question category (LOCOMO: 1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop)\n");
    println!("| budget | category 1 | category 2 | category 3 | category 4 |");
    println!("|---|---|---|---|---|");
    for (budget, cats) in categories {
        let cell = |k: i64| {
            cats.get(&k)
                .map(|(f, t)| format!("{:.3} ({t})", *f as f64 / (*t).max(1) as f64))
                .unwrap_or_else(|| "–".into())
        };
        println!(
            "| {budget} | {} | {} | {} | {} |",
            cell(1),
            cell(2),
            cell(3),
            cell(4)
        );
    }
    running.shutdown().await;
}
