//! Identity vs. presentation: every step is grouped by its normalised signature, but shown as the
//! agent wrote it; and when the arguments decide the outcome, variants of one signature are
//! different actions.
//!
//! While sessions are read, `Variants` counts, per signature, each verbatim text: how often it
//! occurred and, of the occurrences with a known outcome (the step's own status, else the run's),
//! how many succeeded. At finish `Resolver` decides, per signature:
//! - variants whose success rates differ by at least `SPLIT_GAP` (each with `SPLIT_MIN` known
//!   outcomes) are split: each such variant is an action of its own, keyed and shown by its text;
//!   the remaining variants of that signature stay together;
//! - otherwise all variants are one action keyed by the signature and shown by its most frequent
//!   text (ties: the smaller text).
//!
//! Deterministic: counts live in ordered maps and every tie has a rule.

use super::confidence::round4;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Known outcomes a variant needs before its own success rate counts.
const SPLIT_MIN: u64 = 3;
/// Success-rate gap between variants that makes them different actions.
const SPLIT_GAP: f64 = 0.4;

#[derive(Clone, Debug, Default)]
struct Stats {
    count: u64,
    known: u64,
    wins: u64,
}

impl Stats {
    fn rate(&self) -> Option<f64> {
        (self.known >= SPLIT_MIN).then(|| self.wins as f64 / self.known as f64)
    }
}

/// signature → text → stats.
#[derive(Default)]
pub struct Variants {
    by_sig: BTreeMap<String, BTreeMap<String, Stats>>,
}

impl Variants {
    /// One occurrence of `text` (signature `sig`) with its outcome, if known.
    pub fn observe(&mut self, sig: &str, text: &str, ok: Option<bool>) {
        let v = self
            .by_sig
            .entry(sig.to_string())
            .or_default()
            .entry(text.to_string())
            .or_default();
        v.count += 1;
        if let Some(ok) = ok {
            v.known += 1;
            v.wins += ok as u64;
        }
    }

    /// Decides, per signature, which variants are actions of their own.
    pub fn resolve(&self) -> Resolver {
        let mut key_of = BTreeMap::new();
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        for (sig, texts) in &self.by_sig {
            let rates: Vec<f64> = texts.values().filter_map(Stats::rate).collect();
            let split = match (
                rates.iter().copied().reduce(f64::max),
                rates.iter().copied().reduce(f64::min),
            ) {
                (Some(hi), Some(lo)) => hi - lo >= SPLIT_GAP,
                _ => false,
            };
            for (text, st) in texts {
                let own = split && st.rate().is_some();
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

    /// The action's normalised signature.
    pub fn signature<'a>(&'a self, key: &'a str) -> &'a str {
        self.groups.get(key).map_or(key, |g| g.signature.as_str())
    }

    /// The distinct texts of an action (when more than one): `[{text, count, successRate}]`,
    /// most frequent first.
    pub fn variants_json(&self, key: &str) -> Option<Value> {
        let g = self.groups.get(key)?;
        if g.texts.len() < 2 {
            return None;
        }
        let mut v: Vec<&(String, Stats)> = g.texts.iter().collect();
        v.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
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
}
