//! The memory compiler: raw events in, knowledge out (docs/learn.md, docs/architecture.md).
//!
//! Events arrive grouped by session (callers stream them ordered by session, then by sequence),
//! each session is read once into a `Session` and folded into per-signature aggregates held by
//! the miners (task schemas, failure playbooks, causal patterns, decision policies, facts). Only
//! aggregates are kept, so memory is bounded by the number of distinct signatures, not by the
//! number of events. `finish` turns the aggregates into drafts.
//!
//! Invariants:
//! - Deterministic and offline: the same events give byte-identical drafts. Aggregates live in
//!   ordered maps, ties are broken by name, numbers are rounded, and recency is measured against
//!   the newest event in scope, never the wall clock.
//! - Order of sessions does not change counts; capped provenance lists keep the smallest ids.
//! - A draft below `Options::min_strength` or below its miner's support minimum is not produced.

pub mod causal;
pub mod confidence;
pub mod decision;
pub mod facts;
pub mod failure_playbook;
pub mod families;
pub mod normalize;
pub mod sessions;
pub mod task_schema;
pub mod trajectories;
pub mod variants;

use serde_json::Value;
use std::collections::{BTreeSet, HashSet};

pub use sessions::Session;

/// The artifact types, in the order drafts are produced.
pub const TYPES: [&str; 4] = [
    "task_schema",
    "failure_playbook",
    "causal_pattern",
    "decision_policy",
];

/// The name stored in `metadata.compiledBy`.
pub const COMPILED_BY: &str = "engram-deterministic-v1";

/// Default minimum confidence for an artifact to be created.
pub const DEFAULT_MIN_STRENGTH: f64 = 0.3;

/// Most source event ids an artifact lists (its evidence count is exact).
pub const MAX_SOURCES: usize = 100;

/// A stored event as the compiler sees it.
#[derive(Clone, Debug)]
pub struct Event {
    pub id: String,
    pub session_id: String,
    pub agent_id: Option<String>,
    pub kind: String,
    pub payload: Value,
    pub metadata: Value,
    pub created_at: String,
}

/// What to compile.
#[derive(Clone, Debug)]
pub struct Options {
    /// Artifact types to produce (empty: all).
    pub types: Vec<String>,
    pub min_strength: f64,
    /// When set, only drafts with evidence from these sessions are marked `touched`.
    pub focus: Option<HashSet<String>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            types: Vec::new(),
            min_strength: DEFAULT_MIN_STRENGTH,
            focus: None,
        }
    }
}

impl Options {
    pub fn wants(&self, artifact_type: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| t == artifact_type)
    }
}

/// A compiled artifact before storage.
#[derive(Clone, Debug, PartialEq)]
pub struct Draft {
    pub artifact_type: &'static str,
    pub signature: String,
    pub title: String,
    pub content: Value,
    pub confidence: f64,
    pub evidence_count: u64,
    pub source_events: Vec<String>,
    /// Evidence came from a focused session (always true without a focus).
    pub touched: bool,
}

/// Evidence bookkeeping shared by the miners.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    pub count: u64,
    pub last_ms: i64,
    pub events: BTreeSet<String>,
    pub touched: bool,
}

impl Evidence {
    pub fn add(&mut self, at_ms: i64, touched: bool, events: impl IntoIterator<Item = String>) {
        self.count += 1;
        self.last_ms = self.last_ms.max(at_ms);
        self.touched |= touched;
        for e in events {
            self.events.insert(e);
            if self.events.len() > MAX_SOURCES {
                // Keep the smallest (oldest) ids: independent of the order sessions arrive in.
                self.events.pop_last();
            }
        }
    }

    /// Adds another aggregate's evidence (tasks merged at finish).
    pub fn absorb(&mut self, other: &Evidence) {
        let count = self.count + other.count;
        self.add(other.last_ms, other.touched, other.events.iter().cloned());
        self.count = count;
    }

    pub fn sources(&self) -> Vec<String> {
        self.events.iter().cloned().collect()
    }
}

/// What one compile produced.
#[derive(Debug, Default)]
pub struct Output {
    pub artifacts: Vec<Draft>,
    pub facts: Vec<facts::FactDraft>,
    pub sessions: u64,
    pub events: u64,
    /// Patterns found before the strength threshold was applied.
    pub candidates: u64,
    /// Task statements merged into another this run (from, to): what was learned under `from`
    /// before is superseded by what is learned under `to`.
    pub merged_tasks: Vec<(String, String)>,
}

/// Per-session context handed to the miners.
pub struct SessionCtx<'a> {
    pub session: &'a Session,
    pub events: &'a [Event],
    pub at_ms: i64,
    pub touched: bool,
}

impl SessionCtx<'_> {
    pub fn event_id(&self, index: usize) -> String {
        self.events[index].id.clone()
    }
}

/// Millisecond timestamp of an RFC 3339 string (0 when malformed).
pub fn millis(rfc3339: &str) -> i64 {
    crate::time::parse(rfc3339)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0)
}

/// The streaming compiler.
pub struct Compiler {
    opts: Options,
    schema: task_schema::Miner,
    playbook: failure_playbook::Miner,
    causal: causal::Miner,
    decision: decision::Miner,
    facts: facts::Miner,
    /// Verbatim steps per signature, with outcomes (`variants`).
    steps: variants::Variants,
    /// Verbatim decision choices per normalised choice.
    choices: variants::Variants,
    newest_ms: i64,
    sessions: u64,
    events: u64,
}

impl Compiler {
    pub fn new(opts: Options) -> Compiler {
        Compiler {
            opts,
            schema: Default::default(),
            playbook: Default::default(),
            causal: Default::default(),
            decision: Default::default(),
            facts: Default::default(),
            steps: Default::default(),
            choices: Default::default(),
            newest_ms: 0,
            sessions: 0,
            events: 0,
        }
    }

    /// Folds one whole session (its events in stored order) into the aggregates.
    pub fn add_session(&mut self, session_id: &str, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let at_ms = events
            .iter()
            .map(|e| millis(&e.created_at))
            .max()
            .unwrap_or(0);
        self.newest_ms = self.newest_ms.max(at_ms);
        self.sessions += 1;
        self.events += events.len() as u64;
        let session = Session::read(session_id, events);
        let touched = self
            .opts
            .focus
            .as_ref()
            .map_or(true, |f| f.contains(session_id));
        for st in &session.steps {
            self.steps
                .observe(&st.action, &st.text, st.ok.or(session.outcome));
        }
        if let Some(ok) = session.outcome {
            for st in session.distinct_texts(false) {
                self.steps.observe_run(&st.action, &st.text, ok);
            }
        }
        for d in &session.decisions {
            self.choices
                .observe(&d.choice, &d.choice_text, session.outcome);
        }
        let ctx = SessionCtx {
            session: &session,
            events,
            at_ms,
            touched,
        };
        self.schema.add(&ctx);
        self.playbook.add(&ctx);
        self.causal.add(&ctx);
        self.decision.add(&ctx);
        self.facts.add(&ctx);
    }

    /// Turns the aggregates into drafts above the thresholds, in a stable order.
    pub fn finish(mut self) -> Output {
        let newest = self.newest_ms;
        let names = self.steps.resolve();
        let choices = self.choices.resolve();
        // One task said several ways is one task (`task_schema::Miner::aliases`).
        let aliases = self.schema.aliases(&names);
        self.schema.merge_tasks(&aliases);
        self.decision.merge_tasks(&aliases);
        self.causal.merge_tasks(&aliases);
        let mut all = Vec::new();
        all.extend(self.schema.finish(newest, &names));
        let (playbooks, tops) = self.playbook.finish(newest, &names);
        all.extend(playbooks);
        all.extend(self.causal.finish(newest, &tops, &names));
        all.extend(self.decision.finish(newest, &names, &choices));
        let candidates = all.len() as u64;
        let mut artifacts: Vec<Draft> = all
            .into_iter()
            .filter(|d| self.opts.wants(d.artifact_type))
            .filter(|d| d.confidence >= self.opts.min_strength && d.confidence > 0.0)
            .collect();
        artifacts.sort_by(|a, b| {
            let ta = TYPES.iter().position(|t| *t == a.artifact_type);
            let tb = TYPES.iter().position(|t| *t == b.artifact_type);
            ta.cmp(&tb).then_with(|| a.signature.cmp(&b.signature))
        });
        Output {
            artifacts,
            facts: self.facts.finish(newest),
            sessions: self.sessions,
            events: self.events,
            candidates,
            merged_tasks: aliases.into_iter().collect(),
        }
    }
}

/// Compiles events already ordered by session (then sequence): groups consecutive events of one
/// session and streams them through a `Compiler`.
pub fn compile(events: impl IntoIterator<Item = Event>, opts: Options) -> Output {
    let mut c = Compiler::new(opts);
    let mut current: Vec<Event> = Vec::new();
    for e in events {
        if current
            .first()
            .is_some_and(|f| f.session_id != e.session_id)
        {
            let id = current[0].session_id.clone();
            c.add_session(&id, &current);
            current.clear();
        }
        current.push(e);
    }
    if let Some(f) = current.first() {
        let id = f.session_id.clone();
        c.add_session(&id, &current);
    }
    c.finish()
}

#[cfg(test)]
mod quality;
