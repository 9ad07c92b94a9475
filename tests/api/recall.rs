//! Recall: hybrid retrieval (words + the bundled embedding model), conversational packing, and
//! the optional external embeddings provider against a loopback peer speaking its wire format.
//!
//! The recall data is generated here, from seeds only this test uses: facts planted in chit-chat
//! among distractors that share their words, asked about in other words.

use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Seeds of the generated conversations (used by no other test or tool).
const SEEDS: std::ops::Range<u64> = 7_301..7_304;

/// (what was said, a question asking for it in other words).
const FACTS: [(&str, &str); 10] = [
    (
        "I finally adopted a beagle puppy, we named him Biscuit.",
        "What kind of dog did NAME get?",
    ),
    (
        "My sister just relocated to Lisbon for her new job.",
        "Which city did NAME's sister move to?",
    ),
    (
        "I've been learning to play the cello every evening.",
        "What musical instrument is NAME practising?",
    ),
    (
        "We booked flights to Tokyo for our anniversary trip.",
        "Where are NAME and their partner travelling for the anniversary?",
    ),
    (
        "The doctor told me I'm allergic to peanuts.",
        "What food allergy does NAME have?",
    ),
    (
        "I started training for the Berlin marathon in the autumn.",
        "Which race is NAME preparing for?",
    ),
    (
        "I switched careers and I'm working as a nurse at the children's hospital now.",
        "What is NAME's new profession?",
    ),
    (
        "Our kitchen renovation is finally done, new cabinets and countertops.",
        "What part of the house did NAME remodel?",
    ),
    (
        "Lately I've been reading lots of science fiction novels.",
        "What genre of books does NAME enjoy?",
    ),
    (
        "My grandmother turned ninety and we threw her a big party.",
        "Whose birthday did NAME celebrate?",
    ),
];

/// Chit-chat, some of it sharing words with the questions (city, music, race, books, party, …).
const FILLER: [&str; 24] = [
    "How was your weekend? Mine was quiet.",
    "The traffic in the city was terrible this morning.",
    "Did you watch the game last night?",
    "I need more coffee before the meeting.",
    "That music festival downtown was way too loud.",
    "Work has been hectic, lots of deadlines.",
    "The weather keeps changing, rain then sun.",
    "We should grab lunch sometime next week.",
    "My phone battery dies so fast these days.",
    "Have you tried the new bakery on the corner?",
    "The neighbour's cat keeps sitting on our car.",
    "I watched a documentary about the ocean.",
    "The race for the elevator every morning is silly.",
    "I returned some library books that were overdue.",
    "There was a party next door, nobody slept.",
    "My back hurts from sitting all day.",
    "The house across the street is for sale.",
    "I'm thinking about repainting the fence.",
    "Our team won the trivia night at the pub.",
    "The train was late again, of course.",
    "I tried a new recipe, it was okay.",
    "We went for a walk by the river.",
    "I have to renew my passport soon.",
    "It's been ages since I went to the cinema.",
];

struct Conversation {
    agent: String,
    name: String,
    /// Per session, the turns (speaker, text).
    sessions: Vec<Vec<(String, String)>>,
    /// (fact index, session, turn) of each planted fact.
    planted: Vec<(usize, usize, usize)>,
}

fn generate(seed: u64) -> Conversation {
    let mut rng = StdRng::seed_from_u64(seed);
    let names = ["Jordan", "Priya", "Mateo", "Aiko", "Lena"];
    let name = names[rng.gen_range(0..names.len())].to_string();
    let friend = "Sam".to_string();
    let mut sessions: Vec<Vec<(String, String)>> = Vec::new();
    let mut planted = Vec::new();
    let mut order: Vec<usize> = (0..FACTS.len()).collect();
    order.shuffle(&mut rng);
    for (s, chunk) in order.chunks(2).enumerate() {
        let mut turns: Vec<(String, String)> = Vec::new();
        let len = rng.gen_range(14..20);
        let slots: Vec<usize> = {
            let mut v: Vec<usize> = (2..len - 1).collect();
            v.shuffle(&mut rng);
            v.into_iter().take(chunk.len()).collect()
        };
        for t in 0..len {
            let speaker = if t % 2 == 0 { &name } else { &friend };
            if let Some(k) = slots.iter().position(|x| *x == t) {
                let f = chunk[k];
                planted.push((f, s, t));
                turns.push((name.clone(), FACTS[f].0.to_string()));
            } else {
                let filler = FILLER[rng.gen_range(0..FILLER.len())];
                turns.push((speaker.clone(), filler.to_string()));
            }
        }
        sessions.push(turns);
    }
    Conversation {
        agent: format!("friend-{seed}"),
        name,
        sessions,
        planted,
    }
}

/// Captures a conversation; returns the event id of every (session, turn).
async fn capture(srv: &TestServer, c: &Conversation) -> HashMap<(usize, usize), String> {
    let mut events = Vec::new();
    let mut index = Vec::new();
    for (s, turns) in c.sessions.iter().enumerate() {
        for (t, (speaker, text)) in turns.iter().enumerate() {
            events.push(json!({"type": "message", "sessionId": format!("{}-s{s}", c.agent),
                "payload": {"role": speaker, "content": text, "date": format!("{} May 2024", s + 1)},
                "metadata": {"agentId": c.agent}}));
            index.push((s, t));
        }
    }
    let (status, body) = srv
        .post(
            "/v1/capture/batch?wait=searchable",
            json!({ "events": events }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["searchable"], json!(true), "{body}");
    index
        .into_iter()
        .zip(body["data"]["results"].as_array().unwrap())
        .map(|(k, r)| (k, r["eventId"].as_str().unwrap().to_string()))
        .collect()
}

async fn pack(srv: &TestServer, body: Value) -> Value {
    let (status, b) = srv.post("/v1/synthesize", body.clone()).await;
    assert_eq!(status, 200, "{body} → {b}");
    b["data"].clone()
}

/// Every event id an entry's provenance names.
fn events_of(p: &Value) -> HashSet<String> {
    p["entries"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["provenance"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["eventId"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn paraphrased_questions_find_planted_facts_among_distractors() {
    let srv = TestServer::start().await;
    let mut found = 0;
    let mut asked = 0;
    for seed in SEEDS {
        let c = generate(seed);
        let ids = capture(&srv, &c).await;
        for &(f, s, t) in &c.planted {
            let question = FACTS[f].1.replace("NAME", &c.name);
            let body = json!({"query": question, "maxTokens": 250, "agentId": c.agent});
            let p = pack(&srv, body.clone()).await;
            asked += 1;
            if events_of(&p).contains(&ids[&(s, t)]) {
                found += 1;
            } else {
                eprintln!("missed: {question}");
            }
            // The same request gives the same pack.
            let again = pack(&srv, body).await;
            assert_eq!(again["entries"], p["entries"]);
        }
    }
    eprintln!("planted facts found: {found} of {asked}");
    // 250 tokens hold about six entries (a question joined with its reply counts as one), from
    // five sessions of 14–19 turns each.
    assert!(
        found * 4 >= asked * 3,
        "found {found} of {asked} planted facts"
    );
}

#[tokio::test]
async fn stop_words_rare_names_and_long_questions_still_find_entries() {
    let srv = TestServer::start().await;
    let turns = [
        "Zebulon fixed the staging database on Tuesday.",
        "The deploy pipeline was green all week.",
        "What is it all about, then?",
        "We moved the standup to ten in the morning.",
    ];
    let events: Vec<Value> = turns
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"type": "message", "sessionId": format!("s{i}"),
                   "payload": {"role": "user", "content": t}})
        })
        .collect();
    let (s, b) = srv
        .post(
            "/v1/capture/batch?wait=searchable",
            json!({ "events": events }),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    // A query of stop words only still matches, on the exact words.
    let p = pack(&srv, json!({"query": "what is it all about"})).await;
    let first = p["entries"][0]["content"].as_str().unwrap_or_default();
    assert!(first.contains("What is it all about"), "{p}");
    // One rare name.
    let p = pack(&srv, json!({"query": "Zebulon"})).await;
    assert!(
        p["entries"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Zebulon"),
        "{p}"
    );
    // A long question in other words.
    let long = "I remember someone repaired something to do with the staging DB earlier in the \
                week, who was it and which day did that happen, do you know?"
        .repeat(3);
    let p = pack(&srv, json!({"query": long, "maxTokens": 40})).await;
    assert!(
        p["entries"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Zebulon"),
        "{p}"
    );
}

#[tokio::test]
async fn a_question_comes_with_its_reply_once_with_both_turns_in_its_provenance() {
    let srv = TestServer::start().await;
    let said = [
        ("Sam", "Any plans for the long weekend?"),
        (
            "Alex",
            "We're driving up to the lake cabin with the kayaks.",
        ),
        (
            "Sam",
            "Nice, take lots of photos! Is the cabin still by the old pier?",
        ),
    ];
    let mut events: Vec<Value> = said
        .iter()
        .map(|(who, text)| {
            json!({"type": "message", "sessionId": "chat-1",
                   "payload": {"role": who, "content": text, "date": "3:10 pm on 14 June, 2024"}})
        })
        .collect();
    // The same line said again elsewhere: packed once.
    for i in 0..4 {
        events.push(json!({"type": "message", "sessionId": format!("other-{i}"),
            "payload": {"role": "Alex", "content": "Kayaks on the roof, lake here we come."}}));
    }
    let (s, b) = srv
        .post(
            "/v1/capture/batch?wait=searchable",
            json!({ "events": events }),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let ids: Vec<String> = b["data"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["eventId"].as_str().unwrap().to_string())
        .collect();
    // A question is shown with its reply (the turn after it).
    let p = pack(
        &srv,
        json!({"query": "plans for the long weekend", "maxTokens": 2000}),
    )
    .await;
    let asked = entry_with(&p, "long weekend");
    assert_eq!(
        asked["content"],
        "[14 June 2024] Sam: Any plans for the long weekend?\n\
         Alex: We're driving up to the lake cabin with the kayaks."
    );
    // Its own event first, then the reply's.
    assert_eq!(event_ids(asked), vec![ids[0].as_str(), ids[1].as_str()]);
    // A statement is shown alone.
    let p = pack(
        &srv,
        json!({"query": "lake cabin kayaks", "maxTokens": 2000}),
    )
    .await;
    let entries = p["entries"].as_array().unwrap();
    let told = entry_with(&p, "driving up");
    assert_eq!(
        told["content"],
        "[14 June 2024] Alex: We're driving up to the lake cabin with the kayaks."
    );
    assert_eq!(event_ids(told), vec![ids[1].as_str()]);
    // No turn shows twice, and the repeated line shows once.
    let all: Vec<String> = entries
        .iter()
        .flat_map(|e| e["provenance"].as_array().unwrap().clone())
        .map(|p| p["eventId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all.len(), all.iter().collect::<HashSet<_>>().len());
    let repeats = entries
        .iter()
        .filter(|e| {
            e["content"]
                .as_str()
                .unwrap()
                .contains("Kayaks on the roof")
        })
        .count();
    assert_eq!(repeats, 1, "{p}");
    assert!(p["budget"]["used"].as_u64().unwrap() <= 2000);
    // The budget still binds: a small one packs the question alone.
    let p = pack(
        &srv,
        json!({"query": "long weekend plans", "maxTokens": 12}),
    )
    .await;
    for e in p["entries"].as_array().unwrap() {
        assert!(e["tokens"].as_u64().unwrap() <= 12);
    }
    assert!(p["budget"]["used"].as_u64().unwrap() <= 12);
    // A question that ends its session has no reply: the turn before joins instead.
    let p = pack(&srv, json!({"query": "the old pier", "maxTokens": 2000})).await;
    let last = entry_with(&p, "old pier");
    assert_eq!(
        last["content"],
        "[14 June 2024] Alex: We're driving up to the lake cabin with the kayaks.\n\
         Sam: Nice, take lots of photos! Is the cabin still by the old pier?"
    );
    // The entry is the last turn's own (its event first), with the turn before joined.
    assert_eq!(event_ids(last), vec![ids[2].as_str(), ids[1].as_str()]);
}

/// The pack entry whose content contains `text`.
fn entry_with<'a>(pack: &'a Value, text: &str) -> &'a Value {
    pack["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["content"].as_str().unwrap().contains(text))
        .unwrap_or_else(|| panic!("no entry contains {text:?}: {pack}"))
}

/// The event ids of an entry's provenance, in order (its own source first).
fn event_ids(entry: &Value) -> Vec<&str> {
    entry["provenance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["eventId"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn relative_time_in_a_message_gets_its_date() {
    let srv = TestServer::start().await;
    say(&srv, json!({"type": "message", "sessionId": "d1",
               "payload": {"role": "Priya", "date": "4:20 pm on 8 May, 2023",
                           "content": "I went to a pottery workshop yesterday and I'm moving next month."}})).await;
    let p = pack(&srv, json!({"query": "pottery workshop"})).await;
    assert_eq!(
        p["entries"][0]["content"],
        "[8 May 2023] Priya: I went to a pottery workshop yesterday (7 May 2023) and I'm moving \
         next month (June 2023)."
    );
}

/// An OpenAI-compatible `/v1/embeddings` server on 127.0.0.1: hashed bag-of-words vectors (32
/// dimensions), every request kept; `fail` makes it answer 500.
struct EmbeddingsPeer {
    base: String,
    requests: Arc<Mutex<Vec<Value>>>,
    fail: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

fn bag_of_words(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; 32];
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let h = w
            .to_lowercase()
            .bytes()
            .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
        v[(h % 32) as usize] += 1.0;
    }
    v
}

impl EmbeddingsPeer {
    async fn start() -> EmbeddingsPeer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<Value>>> = Arc::default();
        let fail = Arc::new(AtomicBool::new(false));
        let (r, f) = (requests.clone(), fail.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (r, f) = (r.clone(), f.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (r, f) = (r.clone(), f.clone());
                            async move {
                                let path = req.uri().path().to_string();
                                let auth = req
                                    .headers()
                                    .get("authorization")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string);
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let mut v: Value =
                                    serde_json::from_slice(&body).unwrap_or(Value::Null);
                                v["_path"] = json!(path);
                                v["_auth"] = json!(auth);
                                r.lock().unwrap().push(v.clone());
                                let (status, reply) = if f.load(Ordering::SeqCst) {
                                    (500, json!({"error": {"message": "model not loaded"}}))
                                } else {
                                    let data: Vec<Value> = v["input"]
                                        .as_array()
                                        .cloned()
                                        .unwrap_or_default()
                                        .iter()
                                        .enumerate()
                                        .map(|(i, t)| {
                                            json!({"object": "embedding", "index": i,
                                        "embedding": bag_of_words(t.as_str().unwrap_or(""))})
                                        })
                                        .collect();
                                    (
                                        200,
                                        json!({"object": "list", "data": data, "model": v["model"]}),
                                    )
                                };
                                let mut resp =
                                    hyper::Response::new(Full::new(Bytes::from(reply.to_string())));
                                *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                                Ok::<_, Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        EmbeddingsPeer {
            base,
            requests,
            fail,
            task,
        }
    }
}

impl Drop for EmbeddingsPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn health_search(srv: &TestServer) -> Value {
    let (_, h) = srv.get("/v1/health").await;
    h["data"]["subsystems"]["search"].clone()
}

#[tokio::test]
async fn an_external_embeddings_provider_is_used_recorded_and_never_mixed() {
    let peer = EmbeddingsPeer::start().await;
    let base = peer.base.clone();
    let srv = TestServer::start_with(|c| {
        c.embeddings.url = Some(base.clone());
        c.embeddings.model = Some("nomic-embed-text".into());
        c.embeddings.api_key = Some("sk-embed-test".into());
    })
    .await;
    let events: Vec<Value> = [
        "the nightly backup job failed on the replica",
        "lunch order for the team offsite",
    ]
    .iter()
    .map(|t| json!({"type": "message", "sessionId": "e1", "payload": {"role": "user", "content": t}}))
    .collect();
    let (s, b) = srv
        .post(
            "/v1/capture/batch?wait=searchable",
            json!({ "events": events }),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let p = pack(&srv, json!({"query": "backup replica"})).await;
    assert!(first(&p).contains("backup"), "{p}");
    let reqs = peer.requests.lock().unwrap().clone();
    assert!(reqs.len() >= 2, "documents and the query were embedded");
    for r in &reqs {
        assert_eq!(r["_path"], "/v1/embeddings");
        assert_eq!(r["model"], "nomic-embed-text");
        assert_eq!(r["_auth"], "Bearer sk-embed-test");
    }
    let inputs: Vec<String> = reqs
        .iter()
        .flat_map(|r| r["input"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert!(inputs.iter().any(|i| i.contains("nightly backup")));
    assert!(inputs.iter().any(|i| i == "backup replica"));
    let h = health_search(&srv).await;
    assert_eq!(
        h["embeddings"]["model"],
        format!("openai-compatible:nomic-embed-text@{}", peer.base)
    );
    assert_eq!(h["embeddings"]["documentsWithoutVector"], 0);

    // The provider fails: documents stay searchable by their words, health says so.
    peer.fail.store(true, Ordering::SeqCst);
    say(
        &srv,
        json!({"type": "message", "sessionId": "e2",
                   "payload": {"role": "user", "content": "quarterly invoice reconciliation"}}),
    )
    .await;
    let p = pack(&srv, json!({"query": "invoice reconciliation"})).await;
    assert!(first(&p).contains("invoice"), "{p}");
    let h = health_search(&srv).await;
    assert_eq!(h["embeddings"]["documentsWithoutVector"], 1);
    let key = srv.key.clone();
    let (_, full) = srv.get("/v1/health").await;
    assert!(full["data"]["alerts"]
        .to_string()
        .contains("without a vector"));
    let dir = srv.shutdown().await;

    // Started again with the bundled model: the index is rebuilt with it, not mixed.
    let srv = TestServer::start_in(dir.clone(), |_| {}).await;
    let h = health_search(&srv).await;
    assert_eq!(h["embeddings"]["model"], "potion-base-8M@bf8b0566-q8");
    assert_eq!(h["documents"], 3);
    let marker = std::fs::read_to_string(dir.path().join("index/engram-index.json")).unwrap();
    assert!(marker.contains("potion-base-8M"), "{marker}");
    let p = synth_as(&srv, &key, json!({"query": "invoice reconciliation"})).await;
    assert!(first(&p).contains("invoice"), "{p}");
    srv.shutdown().await;

    // `engram reindex` re-embeds with the provider it is given, and shows its progress.
    peer.fail.store(false, Ordering::SeqCst);
    let before = peer.requests.lock().unwrap().len();
    // The CLI is a child process: run it off this runtime's thread so the peer can answer it.
    let (d, b) = (dir.path().to_str().unwrap().to_string(), peer.base.clone());
    let (ok, _out, err) = tokio::task::spawn_blocking(move || {
        run_cli(&[
            "reindex",
            "--data-dir",
            &d,
            "--embeddings-url",
            &b,
            "--embeddings-model",
            "nomic-embed-text",
        ])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(err.contains("reindex: 3/3 documents"), "{err}");
    assert!(err.contains("reindexed 3 documents"), "{err}");
    assert!(peer.requests.lock().unwrap().len() > before);
    let marker = std::fs::read_to_string(dir.path().join("index/engram-index.json")).unwrap();
    assert!(marker.contains("nomic-embed-text"), "{marker}");
    // A model name without a URL is refused with the reason.
    let (ok, _out, err) = run_cli(&[
        "reindex",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--embeddings-model",
        "x",
    ]);
    assert!(!ok);
    assert!(
        err.contains("--embeddings-model needs --embeddings-url"),
        "{err}"
    );
}

#[tokio::test]
async fn without_embeddings_words_alone_rank_and_the_index_says_so() {
    let srv = TestServer::start_with(|c| c.embeddings.off = true).await;
    say(
        &srv,
        json!({"type": "message", "sessionId": "w1",
                   "payload": {"role": "user", "content": "the replica lag alert fired at noon"}}),
    )
    .await;
    let p = pack(&srv, json!({"query": "replica lag"})).await;
    assert!(first(&p).contains("replica lag"), "{p}");
    // Nothing matches these words, and without vectors nothing is merely similar.
    let p = pack(&srv, json!({"query": "database delay warning"})).await;
    assert_eq!(p["entries"], json!([]), "{p}");
    let h = health_search(&srv).await;
    assert_eq!(h["embeddings"]["model"], "none");
    let dir = srv.shutdown().await;
    let marker = std::fs::read_to_string(dir.path().join("index/engram-index.json")).unwrap();
    assert!(marker.contains(r#""embeddingModel":"none""#), "{marker}");
    // Back on the bundled model, the index is rebuilt with its vectors.
    let srv = TestServer::start_in(dir.clone(), |_| {}).await;
    let h = health_search(&srv).await;
    assert_eq!(h["embeddings"]["model"], "potion-base-8M@bf8b0566-q8");
    srv.shutdown().await;
}

/// Captures one event and waits until it is searchable.
async fn say(srv: &TestServer, event: Value) {
    let (s, b) = srv.post("/v1/capture?wait=searchable", event).await;
    assert_eq!(s, 202, "{b}");
}

/// The text of a pack's first entry ("" when it has none).
fn first(p: &Value) -> &str {
    p["entries"][0]["content"].as_str().unwrap_or_default()
}

async fn synth_as(srv: &TestServer, key: &str, body: Value) -> Value {
    let (s, b) = send(
        srv.req_as(key, reqwest::Method::POST, "/v1/synthesize")
            .json(&body),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    b["data"].clone()
}
