//! Salience: how much an event deserves attention, a number in 0..=1 computed at capture.
//!
//! The rule is deterministic: the same event captured in the same tenant history always scores
//! the same. It adds four parts and clamps the sum to 0..=1, rounded to three decimals:
//!
//! 1. **Type weight** — what kind of event it is (`type_weight`): errors, outcomes and feedback
//!    matter most; routine tool calls and browser actions least.
//! 2. **Failure signal** — `+0.25` when the payload reports a failure (`failure_signal`): a
//!    non-empty `error`/`exception`, a non-zero `exitCode`/`exit_code`/`returncode`, a `status`
//!    such as `failed`/`error`/`timeout` or an HTTP status ≥ 400, `success`/`ok`/`passed` false,
//!    or a positive `failed`/`failures`/`errors` count. `result`, `output` and `response` objects
//!    are looked into one level deep.
//! 3. **Novelty** — `+0.15 / n`, where `n` counts the tenant's events with the same signature,
//!    this one included: the first of its kind gets the full bonus, repeats fade. The signature is
//!    a 64-bit FNV-1a hash of the type and the normalised key content (`signature`).
//! 4. **Size** — up to `+0.1`, growing with the logarithm of the payload's size (saturating at
//!    8 KiB): a detailed record carries more than a one-word one.
//!
//! Parts 1, 2 and 4 depend only on the event (`base`); part 3 needs the tenant's signature counts
//! and is added on the writer thread when the event is stored (`with_novelty`).

use serde_json::{Map, Value};

const FAILURE_BONUS: f64 = 0.25;
const NOVELTY_BONUS: f64 = 0.15;
const SIZE_BONUS: f64 = 0.1;
const SIZE_SATURATION: f64 = 8192.0;

/// The weight of an event type (the types of docs/api.md "Memory family").
pub fn type_weight(event_type: &str) -> f64 {
    match event_type {
        "error" => 0.55,
        "outcome" | "feedback" => 0.5,
        "decision" => 0.45,
        "test_run" => 0.35,
        "command_exec" | "api_result" | "file_edit" | "file_change" | "state_change" => 0.3,
        "tool_result" | "message" => 0.25,
        "tool_call" | "observation" => 0.2,
        _ => 0.15,
    }
}

const FAILED_WORDS: &[&str] = &[
    "fail",
    "failed",
    "failure",
    "error",
    "errored",
    "timeout",
    "timed_out",
    "crashed",
    "rejected",
    "broken",
    "aborted",
];

fn truthy_error(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

fn failure_in(m: &Map<String, Value>) -> bool {
    for key in ["error", "exception", "err"] {
        if m.get(key).is_some_and(truthy_error) {
            return true;
        }
    }
    for key in ["exitCode", "exit_code", "returncode", "returnCode"] {
        if let Some(n) = m.get(key).and_then(Value::as_i64) {
            if n != 0 {
                return true;
            }
        }
    }
    for key in ["status", "state", "result", "outcome", "conclusion"] {
        match m.get(key) {
            Some(Value::String(s)) => {
                let s = s.trim().to_ascii_lowercase();
                if FAILED_WORDS.contains(&s.as_str()) {
                    return true;
                }
            }
            Some(Value::Number(n)) if key == "status" && n.as_i64().is_some_and(|c| c >= 400) => {
                return true;
            }
            _ => {}
        }
    }
    if ["statusCode", "status_code"]
        .iter()
        .any(|k| m.get(*k).and_then(Value::as_i64).is_some_and(|c| c >= 400))
    {
        return true;
    }
    if ["success", "ok", "passed"]
        .iter()
        .any(|k| m.get(*k) == Some(&Value::Bool(false)))
    {
        return true;
    }
    ["failed", "failures", "errors"]
        .iter()
        .any(|k| m.get(*k).and_then(Value::as_i64).is_some_and(|n| n > 0))
}

/// Whether the payload reports a failure (see the module docs).
pub fn failure_signal(payload: &Map<String, Value>) -> bool {
    failure_in(payload)
        || ["result", "output", "response"].iter().any(|k| {
            payload
                .get(*k)
                .and_then(Value::as_object)
                .is_some_and(failure_in)
        })
}

/// Salience without novelty, from the event alone.
pub fn base(event_type: &str, payload: &Map<String, Value>, payload_bytes: usize) -> f64 {
    let failure = if event_type == "error" || failure_signal(payload) {
        FAILURE_BONUS
    } else {
        0.0
    };
    let size =
        SIZE_BONUS * ((1.0 + payload_bytes as f64).ln() / (1.0 + SIZE_SATURATION).ln()).min(1.0);
    type_weight(event_type) + failure + size
}

/// The final score once the tenant has seen the signature `seen` times (this event included).
pub fn with_novelty(base: f64, seen: i64) -> f64 {
    let novelty = NOVELTY_BONUS / seen.max(1) as f64;
    ((base + novelty).clamp(0.0, 1.0) * 1000.0).round() / 1000.0
}

/// The content that identifies "the same kind of event" for novelty.
fn key_content(event_type: &str, payload: &Map<String, Value>) -> String {
    let pick = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| payload.get(*k).filter(|v| !v.is_null()))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
    };
    let specific = match event_type {
        "message" | "observation" | "feedback" => pick(&["content", "text", "message"]),
        "tool_call" | "tool_result" => pick(&["tool_name", "toolName", "tool", "name"]),
        "command_exec" => pick(&["command", "cmd"]),
        "file_edit" | "file_change" => pick(&["path", "file", "filePath", "file_path"]),
        "error" => pick(&["message", "error", "code"]),
        "api_result" => pick(&["endpoint", "url", "path"]),
        "browser_action" => pick(&["url", "action"]),
        "decision" => pick(&["decision", "choice", "action"]),
        "test_run" => pick(&["name", "suite", "test", "command"]),
        _ => None,
    };
    specific.unwrap_or_else(|| {
        let mut text = String::new();
        crate::search::docs::json_text(&Value::Object(payload.clone()), &mut text);
        text
    })
}

/// Lower-cases, turns digit runs into `#` and collapses whitespace, so "retry 3 of 5" and
/// "Retry 4 of 5" are the same kind of event. Keeps the first 200 characters.
fn normalise(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(200));
    let mut last_space = true;
    let mut last_digit = false;
    for c in s.chars() {
        if out.len() >= 200 {
            break;
        }
        if c.is_ascii_digit() {
            if !last_digit {
                out.push('#');
            }
            last_digit = true;
            last_space = false;
            continue;
        }
        last_digit = false;
        if c.is_whitespace() {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.extend(c.to_lowercase());
            last_space = false;
        }
    }
    out.trim_end().to_string()
}

/// FNV-1a, 64 bits: stable across builds and platforms (unlike `DefaultHasher`).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The novelty signature of an event (stored as SQLite's signed 64-bit integer).
pub fn signature(event_type: &str, payload: &Map<String, Value>) -> i64 {
    let key = normalise(&key_content(event_type, payload));
    fnv1a(&[event_type.as_bytes(), key.as_bytes()]) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn failures_score_higher_and_repeats_fade() {
        let ok = obj(json!({"command": "cargo test", "exitCode": 0}));
        let bad = obj(json!({"command": "cargo test", "exitCode": 101}));
        assert!(!failure_signal(&ok));
        assert!(failure_signal(&bad));
        let b_ok = base("command_exec", &ok, 40);
        let b_bad = base("command_exec", &bad, 40);
        assert!(b_bad > b_ok);
        assert!(with_novelty(b_ok, 1) > with_novelty(b_ok, 5));
        let s = with_novelty(base("error", &bad, 100_000), 1);
        assert!((0.0..=1.0).contains(&s));
    }

    #[test]
    fn failure_signals_are_recognised() {
        for p in [
            json!({"error": "boom"}),
            json!({"status": "FAILED"}),
            json!({"status": 503}),
            json!({"statusCode": 404}),
            json!({"passed": false}),
            json!({"failed": 2}),
            json!({"result": {"exit_code": 1}}),
        ] {
            assert!(failure_signal(&obj(p.clone())), "{p}");
        }
        for p in [
            json!({"error": null}),
            json!({"error": ""}),
            json!({"status": "passed"}),
            json!({"status": 200}),
            json!({"failed": 0}),
        ] {
            assert!(!failure_signal(&obj(p.clone())), "{p}");
        }
    }

    #[test]
    fn signatures_ignore_numbers_and_case() {
        let a = signature("message", &obj(json!({"content": "Retry 3 of 5"})));
        let b = signature("message", &obj(json!({"content": "retry  42 of 5"})));
        let c = signature("message", &obj(json!({"content": "deploy"})));
        let d = signature("observation", &obj(json!({"content": "Retry 3 of 5"})));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
