//! Identity vs. presentation: every step is grouped by its normalised signature, but shown as the
//! agent wrote it; and when the arguments decide the outcome, variants of one signature are
//! different actions.
//!
//! While sessions are read, `Variants` counts, per signature, each verbatim text: how often it
//! occurred and, of the occurrences with a known outcome (the step's own status, else the run's),
//! how many succeeded; and, once per run, how the runs that took it ended. At finish `Resolver`
//! decides, per signature:
//! - variants whose own success rates differ by at least `SPLIT_GAP` (each with `SPLIT_MIN`
//!   known outcomes) are split — `docker run app` killed, `docker run --memory=2g app` fine;
//! - so are variants whose *runs* end differently — the step itself succeeds either way but the
//!   run does not (`--set replicas=6` vs `--set replicas=2`, both exit 0): run success rates at
//!   least `RUN_SPLIT_GAP` apart, each over `SPLIT_MIN` runs, and a two-proportion z-score of at
//!   least `RUN_SPLIT_Z`, so that ids or wording that merely happen to coincide with outcomes in
//!   a few runs do not split an action;
//! - a split variant is an action of its own, keyed and shown by its text; the remaining variants
//!   of that signature stay together;
//! - otherwise all variants are one action keyed by the signature and shown by its most frequent
//!   text (ties: the smaller text).
//!
//! An artifact shows an action by the texts of its own evidence (`display_among`,
//! `variants_among`): a task's schema shows what that task's runs wrote, not what another task
//! wrote most often.
//!
//! Deterministic: counts live in ordered maps and every tie has a rule.

use super::confidence::round4;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Known outcomes a variant needs before its own success rate counts.
const SPLIT_MIN: u64 = 3;
/// Success-rate gap between variants that makes them different actions.
const SPLIT_GAP: f64 = 0.4;
/// Gap between the success rates of the runs that took two variants that makes them different
/// actions, when the z-score also reaches `RUN_SPLIT_Z`.
const RUN_SPLIT_GAP: f64 = 0.25;
const RUN_SPLIT_Z: f64 = 2.0;

#[derive(Clone, Debug, Default)]
struct Stats {
    count: u64,
    known: u64,
    wins: u64,
    /// Runs (of known outcome) that took this text, and how many of them succeeded.
    runs: u64,
    run_wins: u64,
}

impl Stats {
    fn rate(&self) -> Option<f64> {
        (self.known >= SPLIT_MIN).then(|| self.wins as f64 / self.known as f64)
    }

    fn run_rate(&self) -> Option<f64> {
        (self.runs >= SPLIT_MIN).then(|| self.run_wins as f64 / self.runs as f64)
    }

    /// Enough evidence to be an action of its own when its signature splits.
    fn can_stand_alone(&self) -> bool {
        self.rate().is_some() || self.run_rate().is_some()
    }
}

/// Pooled two-proportion z-score of `a` against `b` (wins, trials); 0 without variance.
fn z_score(a: (u64, u64), b: (u64, u64)) -> f64 {
    let (na, nb) = (a.1 as f64, b.1 as f64);
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    let p = (a.0 + b.0) as f64 / (na + nb);
    let var = p * (1.0 - p) * (1.0 / na + 1.0 / nb);
    if var <= 0.0 {
        return 0.0;
    }
    (a.0 as f64 / na - b.0 as f64 / nb).abs() / var.sqrt()
}

/// Whether the variants of one signature are different actions (see the module docs).
fn splits(texts: &BTreeMap<String, Stats>) -> bool {
    let rates: Vec<f64> = texts.values().filter_map(Stats::rate).collect();
    let own = match (
        rates.iter().copied().reduce(f64::max),
        rates.iter().copied().reduce(f64::min),
    ) {
        (Some(hi), Some(lo)) => hi - lo >= SPLIT_GAP,
        _ => false,
    };
    if own {
        return true;
    }
    let runs: Vec<&Stats> = texts.values().filter(|s| s.run_rate().is_some()).collect();
    runs.iter().enumerate().any(|(i, a)| {
        runs[i + 1..].iter().any(|b| {
            let gap = (a.run_wins as f64 / a.runs as f64 - b.run_wins as f64 / b.runs as f64).abs();
            gap >= RUN_SPLIT_GAP
                && z_score((a.run_wins, a.runs), (b.run_wins, b.runs)) >= RUN_SPLIT_Z
        })
    })
}

/// signature → text → stats.
#[derive(Default)]
pub struct Variants {
    by_sig: BTreeMap<String, BTreeMap<String, Stats>>,
}

impl Variants {
    /// One occurrence of `text` (signature `sig`) with its outcome, if known.
    pub fn observe(&mut self, sig: &str, text: &str, ok: Option<bool>) {
        let v = self.stats(sig, text);
        v.count += 1;
        if let Some(ok) = ok {
            v.known += 1;
            v.wins += ok as u64;
        }
    }

    /// A run of known outcome that took `text` (once per run, however often it took it).
    pub fn observe_run(&mut self, sig: &str, text: &str, ok: bool) {
        let v = self.stats(sig, text);
        v.runs += 1;
        v.run_wins += ok as u64;
    }

    fn stats(&mut self, sig: &str, text: &str) -> &mut Stats {
        self.by_sig
            .entry(sig.to_string())
            .or_default()
            .entry(text.to_string())
            .or_default()
    }

    /// Decides, per signature, which variants are actions of their own.
    pub fn resolve(&self) -> Resolver {
        let mut key_of = BTreeMap::new();
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        for (sig, texts) in &self.by_sig {
            let split = splits(texts);
            for (text, st) in texts {
                let own = split && st.can_stand_alone();
                let key = if own { text.clone() } else { sig.clone() };
                key_of.insert(text.clone(), key.clone());
                let g = groups.entry(key).or_default();
                g.signature = sig.clone();
                g.texts.push((text.clone(), st.clone()));
            }
        }
        Resolver { key_of, groups }
    }
}

#[derive(Default)]
struct Group {
    signature: String,
    texts: Vec<(String, Stats)>,
}

/// The finished grouping: text → action key, and how each action is shown.
#[derive(Default)]
pub struct Resolver {
    key_of: BTreeMap<String, String>,
    groups: BTreeMap<String, Group>,
}

impl Resolver {
    /// The action key of a verbatim text (the text itself when it was never observed).
    pub fn key<'a>(&'a self, text: &'a str) -> &'a str {
        self.key_of.get(text).map_or(text, String::as_str)
    }

    /// How an action is shown: its most frequent text (ties: the smaller one).
    pub fn display<'a>(&'a self, key: &'a str) -> &'a str {
        self.groups
            .get(key)
            .and_then(|g| {
                g.texts
                    .iter()
                    .max_by(|a, b| a.1.count.cmp(&b.1.count).then_with(|| b.0.cmp(&a.0)))
            })
            .map_or(key, |(t, _)| t.as_str())
    }

    /// How an action is shown in one artifact: the most frequent of the artifact's own texts
    /// (text, count) that belong to it (ties: the smaller text); `display` when none does.
    pub fn display_among<'t>(
        &self,
        key: &str,
        own: impl IntoIterator<Item = (&'t str, u64)>,
    ) -> String {
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for (t, n) in own {
            if self.key(t) == key {
                *counts.entry(t).or_default() += n;
            }
        }
        counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
            .map_or_else(|| self.display(key).to_string(), |(t, _)| t.to_string())
    }

    /// The distinct texts of an action among one artifact's own evidence (text, count, runs of
    /// known outcome, successes), when more than one: `[{text, count, successRate}]`, most
    /// frequent first.
    pub fn variants_among<'t>(
        &self,
        key: &str,
        own: impl IntoIterator<Item = (&'t str, u64, u64, u64)>,
    ) -> Option<Value> {
        let mut texts: BTreeMap<&str, Stats> = BTreeMap::new();
        for (t, count, known, wins) in own {
            if self.key(t) == key {
                let s = texts.entry(t).or_default();
                s.count += count;
                s.known += known;
                s.wins += wins;
            }
        }
        variants_value(texts.into_iter())
    }

    /// How often the action's steps succeeded, over its occurrences of known outcome (none when
    /// it has fewer than `SPLIT_MIN`).
    pub fn step_rate(&self, key: &str) -> Option<f64> {
        let g = self.groups.get(key)?;
        let (known, wins) = g
            .texts
            .iter()
            .fold((0, 0), |(k, w), (_, s)| (k + s.known, w + s.wins));
        (known >= SPLIT_MIN).then(|| wins as f64 / known as f64)
    }

    /// The action's normalised signature.
    pub fn signature<'a>(&'a self, key: &'a str) -> &'a str {
        self.groups.get(key).map_or(key, |g| g.signature.as_str())
    }

    /// The distinct texts of an action over all sessions (when more than one): `[{text, count,
    /// successRate}]`, most frequent first.
    pub fn variants_json(&self, key: &str) -> Option<Value> {
        let g = self.groups.get(key)?;
        variants_value(g.texts.iter().map(|(t, s)| (t.as_str(), s.clone())))
    }
}

/// `[{text, count, successRate}]` of two or more texts, most frequent first (ties: the smaller
/// text), at most ten.
fn variants_value<'t>(texts: impl Iterator<Item = (&'t str, Stats)>) -> Option<Value> {
    let mut v: Vec<(&str, Stats)> = texts.collect();
    if v.len() < 2 {
        return None;
    }
    v.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
    Some(Value::Array(
        v.iter()
            .take(10)
            .map(|(t, s)| {
                json!({
                    "text": t,
                    "count": s.count,
                    "successRate": (s.known > 0).then(|| round4(s.wins as f64 / s.known as f64)),
                })
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_with_different_outcomes_split_others_merge() {
        let mut v = Variants::default();
        for i in 0..5 {
            v.observe("docker run app", "docker run app", Some(false));
            v.observe("docker run app", "docker run --memory=2g app", Some(i != 0));
            v.observe(
                "kubectl delete pod web",
                &format!("kubectl delete pod web-{i}"),
                Some(true),
            );
        }
        v.observe(
            "kubectl delete pod web",
            "kubectl delete pod web-1",
            Some(true),
        );
        let r = v.resolve();
        assert_eq!(r.key("docker run app"), "docker run app");
        assert_eq!(
            r.key("docker run --memory=2g app"),
            "docker run --memory=2g app"
        );
        assert_eq!(
            r.display("docker run --memory=2g app"),
            "docker run --memory=2g app"
        );
        assert_eq!(r.key("kubectl delete pod web-3"), "kubectl delete pod web");
        assert_eq!(
            r.display("kubectl delete pod web"),
            "kubectl delete pod web-1"
        );
        assert_eq!(r.signature("docker run --memory=2g app"), "docker run app");
        assert_eq!(
            r.variants_json("kubectl delete pod web").unwrap()[0]["count"],
            2
        );
    }

    /// Steps that succeed either way split when the runs that took them end differently, and
    /// only when the difference is more than chance.
    #[test]
    fn runs_that_end_differently_split_variants_only_beyond_chance() {
        let mut v = Variants::default();
        let sig = "helm upgrade api charts api set replicas";
        for i in 0..10 {
            for (text, wins) in [("--set replicas=6", 8), ("--set replicas=2", 3)] {
                v.observe(sig, text, Some(true));
                v.observe_run(sig, text, i < wins);
            }
            // 6 of 10 against 4 of 10: a gap a coin gives often.
            for (text, wins) in [("sleep 5", 6), ("sleep 10", 4)] {
                v.observe("sleep", text, Some(true));
                v.observe_run("sleep", text, i < wins);
            }
        }
        let r = v.resolve();
        assert_eq!(r.key("--set replicas=6"), "--set replicas=6");
        assert_eq!(r.key("--set replicas=2"), "--set replicas=2");
        assert_eq!(r.signature("--set replicas=2"), sig);
        assert_eq!(r.key("sleep 5"), "sleep");
        assert_eq!(r.key("sleep 10"), "sleep");
        // Shown among one artifact's own texts; variants with that artifact's figures.
        assert_eq!(
            r.display_among("sleep", [("sleep 10", 3), ("sleep 5", 1)]),
            "sleep 10"
        );
        assert_eq!(
            r.variants_among(
                "sleep",
                [("sleep 10", 3, 3, 1), ("sleep 5", 1, 1, 1), ("x", 9, 9, 9)]
            ),
            Some(json!([
                {"text": "sleep 10", "count": 3, "successRate": 0.3333},
                {"text": "sleep 5", "count": 1, "successRate": 1.0},
            ]))
        );
    }
}
