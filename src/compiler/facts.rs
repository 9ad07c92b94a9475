//! Semantic memories: facts and preferences stated in messages, and `metadata.extractedMemories`
//! (a list of strings) as sent by the SDK's `wrap()`.
//!
//! Each statement becomes (key, value): "my editor is vim" → (`editor`, `vim`); "I prefer dark
//! mode" → (`prefers dark mode`, `yes`); "I don't like tabs" → (`likes tabs`, `no`); "we use
//! postgres for billing" → (`uses for billing`, `postgres`); anything else → (its folded text,
//! `yes`). Near-duplicates share a key and merge (mentions add up). Two values for one key
//! contradict: the most recently stated value wins, the others are reported as superseded.

use super::confidence::score;
use super::normalize::fact_key;
use super::{Evidence, SessionCtx};
use regex::Regex;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A fact ready to be stored as a semantic memory.
#[derive(Clone, Debug, PartialEq)]
pub struct FactDraft {
    /// The memory's signature (identity within the tenant).
    pub key: String,
    pub value: String,
    /// The statement, as last made.
    pub text: String,
    pub mentions: u64,
    pub confidence: f64,
    pub session_id: String,
    pub agent_id: Option<String>,
    pub source_events: Vec<String>,
    /// Values this one replaced.
    pub superseded_values: Vec<String>,
}

struct Rules {
    mine: Regex,
    prefer: Regex,
    negative: Regex,
    uses: Regex,
}

fn rules() -> &'static Rules {
    static R: OnceLock<Rules> = OnceLock::new();
    R.get_or_init(|| Rules {
        mine: Regex::new(r"(?i)^(?:my|our)\s+([\w\s-]{1,40}?)\s+(?:is|are)\s+(.{1,120})$")
            .expect("rule"),
        prefer: Regex::new(
            r"(?i)^i\s+(?:really\s+)?(?:prefer|like|love|always use|want)\s+(.{1,120})$",
        )
        .expect("rule"),
        negative: Regex::new(
            r"(?i)^i\s+(?:don't|do not|never)\s+(?:like|want|use|prefer)\s+(.{1,120})$",
        )
        .expect("rule"),
        uses: Regex::new(r"(?i)^we\s+use\s+([\w\s.-]{1,40}?)\s+for\s+(.{1,80})$").expect("rule"),
    })
}

/// The day an event's words were said on: a date the caller gave (`payload.date`, `sessionDate`,
/// `session_date`, `datetime`, `timestamp`, or `metadata.sessionDate`), else its capture time.
/// Relative time in a fact ("my exam is next month") is written out against it.
fn said_on(e: &super::Event) -> Option<chrono::NaiveDate> {
    let given = [
        "date",
        "sessionDate",
        "session_date",
        "datetime",
        "timestamp",
    ]
    .iter()
    .find_map(|k| e.payload.get(*k).and_then(Value::as_str))
    .or_else(|| e.metadata.get("sessionDate").and_then(Value::as_str));
    given
        .and_then(crate::dates::parse_day)
        .or_else(|| crate::dates::parse_day(&e.created_at))
}

fn clean(s: &str) -> String {
    s.trim()
        .trim_end_matches(['.', '!', '?'])
        .trim()
        .to_string()
}

/// The (key, value) a statement asserts, if it states a fact at all.
pub fn parse_statement(sentence: &str) -> Option<(String, String)> {
    let s = clean(sentence);
    if s.len() < 3 {
        return None;
    }
    let r = rules();
    if let Some(c) = r.negative.captures(&s) {
        return Some((format!("likes {}", fact_key(&c[1])), "no".into()));
    }
    if let Some(c) = r.prefer.captures(&s) {
        return Some((format!("likes {}", fact_key(&c[1])), "yes".into()));
    }
    if let Some(c) = r.mine.captures(&s) {
        return Some((fact_key(&c[1]), clean(&c[2]).to_lowercase()));
    }
    if let Some(c) = r.uses.captures(&s) {
        return Some((
            format!("uses for {}", fact_key(&c[2])),
            clean(&c[1]).to_lowercase(),
        ));
    }
    None
}

/// Who said a message facts may be mined from.
enum Speaker<'a> {
    /// The agent's user (`role: user`, or no role).
    User,
    /// A person the message names (`speaker`/`name`/`author`).
    Named(&'a str),
}

/// Roles that are not a person's statements about themselves.
const MACHINE_ROLES: &[&str] = &[
    "assistant",
    "system",
    "tool",
    "function",
    "developer",
    "model",
];

fn speaker_of(payload: &Value) -> Option<Speaker<'_>> {
    let field = |k: &str| {
        payload
            .get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let role = field("role").unwrap_or("user");
    let role_lc = role.to_lowercase();
    if MACHINE_ROLES.contains(&role_lc.as_str()) {
        return None;
    }
    let named = ["speaker", "name", "author"].iter().find_map(|k| field(k));
    // A role that is a person's name (a dialogue captured with the speaker as its role) gives no
    // facts: each would repeat its turn in the pack beside the turn itself — measured on the
    // recall benchmark, packs held fewer of the turns questions need (docs/learn.md).
    match named {
        Some(n) if role_lc == "user" => Some(Speaker::Named(n)),
        None if role_lc == "user" => Some(Speaker::User),
        _ => None,
    }
}

#[derive(Default)]
struct Value_ {
    mentions: u64,
    last_ms: i64,
    /// (time, event id) of the latest statement: ties in time go to the larger id.
    latest: (i64, String),
    text: String,
    session_id: String,
    agent_id: Option<String>,
    evidence: Evidence,
}

#[derive(Default)]
pub struct Miner {
    facts: BTreeMap<String, BTreeMap<String, Value_>>,
}

impl Miner {
    fn record(&mut self, key: String, value: String, text: &str, ctx: &SessionCtx<'_>, i: usize) {
        let e = &ctx.events[i];
        let at = super::millis(&e.created_at);
        let v = self.facts.entry(key).or_default().entry(value).or_default();
        v.mentions += 1;
        v.last_ms = v.last_ms.max(at);
        let stamp = (at, e.id.clone());
        if stamp >= v.latest {
            v.latest = stamp;
            v.text = match said_on(e) {
                Some(day) => clean(&crate::dates::resolve_relative(text, day)),
                None => clean(text),
            };
            v.session_id = e.session_id.clone();
            v.agent_id = e.agent_id.clone();
        }
        v.evidence.add(at, ctx.touched, [e.id.clone()]);
    }

    pub fn add(&mut self, ctx: &SessionCtx<'_>) {
        for (i, e) in ctx.events.iter().enumerate() {
            if let Some(list) = e
                .metadata
                .get("extractedMemories")
                .and_then(Value::as_array)
            {
                for text in list.iter().filter_map(Value::as_str) {
                    let (k, v) = parse_statement(text)
                        .unwrap_or_else(|| (fact_key(text), "yes".to_string()));
                    if !k.is_empty() {
                        self.record(k, v, text, ctx, i);
                    }
                }
            }
            if e.kind != "message" {
                continue;
            }
            let Some(speaker) = speaker_of(&e.payload) else {
                continue;
            };
            let Some(text) = e.payload.get("content").and_then(Value::as_str) else {
                continue;
            };
            for sentence in text.split(['.', '!', '\n', ';']) {
                if let Some((k, v)) = parse_statement(sentence) {
                    match speaker {
                        // In a conversation between people, whose fact it is is part of it.
                        Speaker::Named(name) => {
                            let said = format!("{name}: {}", sentence.trim());
                            self.record(format!("{name}'s {k}"), v, &said, ctx, i);
                        }
                        Speaker::User => self.record(k, v, sentence, ctx, i),
                    }
                }
            }
        }
    }

    pub fn finish(&self, newest_ms: i64) -> Vec<FactDraft> {
        let mut out = Vec::new();
        for (key, values) in &self.facts {
            let Some((winner, w)) = values
                .iter()
                .max_by(|a, b| a.1.latest.cmp(&b.1.latest).then_with(|| b.0.cmp(a.0)))
            else {
                continue;
            };
            let total: u64 = values.values().map(|v| v.mentions).sum();
            let consistency = w.mentions as f64 / total as f64;
            // A single clear statement is worth remembering: evidence starts at a useful level.
            let confidence = score(w.mentions + 2, consistency, newest_ms - w.last_ms);
            out.push(FactDraft {
                key: key.clone(),
                value: winner.clone(),
                text: w.text.clone(),
                mentions: w.mentions,
                confidence,
                session_id: w.session_id.clone(),
                agent_id: w.agent_id.clone(),
                source_events: w.evidence.sources(),
                superseded_values: values.keys().filter(|k| *k != winner).cloned().collect(),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::parse_statement;

    #[test]
    fn facts_keep_their_time() {
        use crate::compiler::{Event, Session, SessionCtx};
        let event = |id: &str, payload: serde_json::Value, metadata: serde_json::Value| Event {
            id: id.into(),
            session_id: "s1".into(),
            agent_id: None,
            kind: "message".into(),
            payload,
            metadata,
            created_at: "2024-03-10T12:00:00.000Z".into(),
        };
        let events = vec![
            event(
                "evt_1",
                serde_json::json!({"role": "user", "content": "My exam is next month.",
                                   "date": "8 May, 2023"}),
                serde_json::json!({}),
            ),
            event(
                "evt_2",
                serde_json::json!({"role": "user", "content": "My flight is tomorrow."}),
                serde_json::json!({"sessionDate": "2023-06-01"}),
            ),
            event(
                "evt_3",
                serde_json::json!({"role": "user", "content": "My team is platform since yesterday."}),
                serde_json::json!({}),
            ),
            // A user message that names its speaker: the speaker is kept.
            event(
                "evt_4",
                serde_json::json!({"role": "user", "speaker": "Mira",
                                   "content": "My dog is Max since last Friday.",
                                   "date": "8 May, 2023"}),
                serde_json::json!({}),
            ),
            event(
                "evt_5",
                serde_json::json!({"role": "assistant", "content": "My name is Helper."}),
                serde_json::json!({}),
            ),
            event(
                "evt_6",
                serde_json::json!({"role": "Tomas", "content": "My cat is Pixel."}),
                serde_json::json!({}),
            ),
        ];
        let session = Session {
            id: "s1".into(),
            ..Default::default()
        };
        let ctx = SessionCtx {
            session: &session,
            events: &events,
            at_ms: 0,
            touched: true,
        };
        let mut miner = super::Miner::default();
        miner.add(&ctx);
        let facts = miner.finish(0);
        let caroline = facts
            .iter()
            .find(|f| f.key == "Mira's dog")
            .unwrap_or_else(|| panic!("{:?}", facts.iter().map(|f| &f.key).collect::<Vec<_>>()));
        assert_eq!(caroline.value, "max since last friday");
        assert_eq!(
            caroline.text,
            "Mira: My dog is Max since last Friday (5 May 2023)"
        );
        assert!(facts
            .iter()
            .all(|f| !f.text.contains("Helper") && !f.text.contains("Pixel")));
        let texts: Vec<String> = facts.into_iter().map(|f| f.text).collect();
        assert!(
            texts.contains(&"My exam is next month (June 2023)".to_string()),
            "{texts:?}"
        );
        assert!(
            texts.contains(&"My flight is tomorrow (2 June 2023)".to_string()),
            "{texts:?}"
        );
        assert!(
            texts.contains(&"My team is platform since yesterday (9 March 2024)".to_string()),
            "{texts:?}"
        );
    }

    #[test]
    fn statements() {
        assert_eq!(
            parse_statement("My favourite editor is Vim."),
            Some(("favourite editor".into(), "vim".into()))
        );
        assert_eq!(
            parse_statement("I prefer dark mode"),
            Some(("likes dark mode".into(), "yes".into()))
        );
        assert_eq!(
            parse_statement("I don't like dark mode"),
            Some(("likes dark mode".into(), "no".into()))
        );
        assert_eq!(
            parse_statement("we use Postgres for billing"),
            Some(("uses for billing".into(), "postgres".into()))
        );
        assert_eq!(parse_statement("deploy it now"), None);
    }
}
