//! Episodic memory text: one readable sentence (or a few) per event, rendered from its payload by
//! type, e.g. `command_exec {command: "cargo test", exitCode: 101}` → "Ran `cargo test` (exit code
//! 101, failed)". Fields the renderer does not know are appended as `key: value` so nothing the
//! agent recorded is lost from search. The text is capped at `MAX_CHARS`.

use serde_json::{Map, Value};

/// Longest memory text kept (characters).
pub const MAX_CHARS: usize = 4000;
/// Longest single field value quoted in a sentence (characters).
const MAX_FIELD: usize = 1000;

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A value as inline text: strings as is, others as compact JSON.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|i| i.is_string()) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// Whether `text` begins with `word` (any case) followed by a non-letter.
fn starts_with_word(text: &str, word: &str) -> bool {
    text.get(..word.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(word))
        && !text[word.len()..]
            .chars()
            .next()
            .is_some_and(char::is_alphanumeric)
}

/// `; label: value`, or `; value` when the value already begins with the label (`error: …`).
fn labelled(label: &str, value: &str) -> String {
    if starts_with_word(value, label) {
        format!("; {value}")
    } else {
        format!("; {label}: {value}")
    }
}

struct Fields<'a> {
    map: &'a Map<String, Value>,
    used: Vec<&'a str>,
}

impl<'a> Fields<'a> {
    /// The first present, non-null field of `keys`, as text; remembers it as used.
    fn take(&mut self, keys: &[&'a str]) -> Option<String> {
        for k in keys {
            if let Some(v) = self.map.get(*k).filter(|v| !v.is_null()) {
                self.used.push(k);
                let t = text_of(v);
                if !t.trim().is_empty() {
                    return Some(clip(t.trim(), MAX_FIELD));
                }
            }
        }
        None
    }

    /// `key: value` for every field not used in the sentence.
    fn rest(&self) -> String {
        let mut out = String::new();
        for (k, v) in self.map {
            if self.used.contains(&k.as_str()) || v.is_null() {
                continue;
            }
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(k);
            out.push_str(": ");
            out.push_str(&clip(&text_of(v), MAX_FIELD));
        }
        out
    }
}

fn sentence(event_type: &str, f: &mut Fields<'_>, said_at: Option<&str>) -> String {
    let or = |o: Option<String>, d: &str| o.unwrap_or_else(|| d.to_string());
    let failed = crate::capture::salience::failure_signal(f.map);
    match event_type {
        "message" => {
            let role = or(f.take(&["role", "speaker", "author"]), "message");
            let content = or(f.take(&["content", "text", "message", "body"]), "");
            // The day the turn was said on, when the caller gives one (a dialogue's session
            // date), in front in one compact form; relative time in the turn ("yesterday") gets
            // its date beside it, counted from that day or else from when it was captured.
            let given = f.take(&[
                "date",
                "sessionDate",
                "session_date",
                "datetime",
                "timestamp",
            ]);
            let day = given.as_deref().and_then(crate::dates::parse_day);
            let anchor = day.or_else(|| said_at.and_then(crate::dates::parse_day));
            let content = match anchor {
                Some(a) => crate::dates::resolve_relative(&content, a),
                None => content,
            };
            match (day, given) {
                (Some(d), _) => format!("[{}] {role}: {content}", crate::dates::format_day(d)),
                (None, Some(g)) if !g.contains(']') && g.chars().count() <= 64 => {
                    format!("[{g}] {role}: {content}")
                }
                _ => format!("{role}: {content}"),
            }
        }
        "tool_call" => {
            let tool = or(f.take(&["tool_name", "toolName", "tool", "name"]), "a tool");
            match f.take(&["input", "arguments", "args", "params", "parameters"]) {
                Some(args) => format!("Called tool {tool} with {args}"),
                None => format!("Called tool {tool}"),
            }
        }
        "tool_result" => {
            let tool = or(f.take(&["tool_name", "toolName", "tool", "name"]), "a tool");
            let out = f.take(&["output", "result", "content", "response"]);
            let err = f.take(&["error"]);
            match (out, err) {
                (_, Some(e)) => format!("Tool {tool} failed: {e}"),
                (Some(o), None) => format!("Tool {tool} returned: {o}"),
                (None, None) => format!("Tool {tool} returned"),
            }
        }
        "file_edit" | "file_change" => {
            let path = or(f.take(&["path", "file", "filePath", "file_path"]), "a file");
            let verb = or(f.take(&["action", "operation", "change"]), "edited");
            match f.take(&["description", "summary", "diff", "content"]) {
                Some(d) => format!("File {path} {verb}: {d}"),
                None => format!("File {path} {verb}"),
            }
        }
        "test_run" => {
            let name = or(f.take(&["name", "suite", "test", "command"]), "tests");
            let status = f.take(&["status", "result", "outcome"]);
            let passed = f.take(&["passed"]);
            let failed_n = f.take(&["failed", "failures"]);
            let mut s = format!("Test run {name}");
            if let Some(st) = status {
                s.push_str(&format!(": {st}"));
            } else if failed {
                s.push_str(": failed");
            }
            if let Some(p) = passed {
                s.push_str(&format!(", passed {p}"));
            }
            if let Some(n) = failed_n {
                s.push_str(&format!(", failed {n}"));
            }
            s
        }
        "command_exec" => {
            let cmd = or(f.take(&["command", "cmd"]), "a command");
            let code = f.take(&["exitCode", "exit_code", "returncode", "returnCode"]);
            let mut s = format!("Ran `{cmd}`");
            match (code, failed) {
                (Some(c), true) => s.push_str(&format!(" (exit code {c}, failed)")),
                (Some(c), false) => s.push_str(&format!(" (exit code {c})")),
                (None, true) => s.push_str(" (failed)"),
                (None, false) => {}
            }
            if let Some(e) = f.take(&["stderr", "error"]) {
                s.push_str(&labelled("error", &e));
            }
            if let Some(o) = f.take(&["stdout", "output"]) {
                s.push_str(&format!("; output: {o}"));
            }
            s
        }
        "browser_action" => {
            let action = or(f.take(&["action", "type"]), "acted");
            let target = f.take(&["url", "selector", "target", "element"]);
            match target {
                Some(t) => format!("Browser {action} {t}"),
                None => format!("Browser {action}"),
            }
        }
        "api_result" => {
            let method = f.take(&["method"]);
            let url = or(f.take(&["endpoint", "url", "path"]), "an API");
            let status = f.take(&["status", "statusCode", "status_code"]);
            let mut s = match method {
                Some(m) => format!("API {m} {url}"),
                None => format!("API call {url}"),
            };
            if let Some(st) = status {
                s.push_str(&format!(" → {st}"));
            }
            if let Some(b) = f.take(&["body", "response", "result", "data"]) {
                s.push_str(&format!(": {b}"));
            }
            s
        }
        "outcome" => {
            let result = match f
                .take(&["status", "result", "outcome", "success"])
                .as_deref()
            {
                Some("true") => "success".to_string(),
                Some("false") => "failure".to_string(),
                Some(other) => other.to_string(),
                None => (if failed { "failure" } else { "recorded" }).to_string(),
            };
            match f.take(&["summary", "description", "message", "content"]) {
                Some(d) => format!("Outcome: {result} — {d}"),
                None => format!("Outcome: {result}"),
            }
        }
        "observation" => format!(
            "Observed: {}",
            or(f.take(&["content", "text", "observation", "message"]), "")
        ),
        "decision" => {
            let d = or(f.take(&["decision", "choice", "action", "content"]), "");
            match f.take(&["reason", "rationale", "because"]) {
                Some(r) => format!("Decided: {d} because {r}"),
                None => format!("Decided: {d}"),
            }
        }
        "error" => {
            let msg = or(f.take(&["message", "error", "content"]), "an error");
            match f.take(&["code", "type", "name"]) {
                Some(c) => format!("Error {c}: {msg}"),
                None if starts_with_word(&msg, "error") => msg,
                None => format!("Error: {msg}"),
            }
        }
        "state_change" => {
            let what = f.take(&["entity", "key", "name", "field"]);
            let from = f.take(&["from", "before", "old"]);
            let to = f.take(&["to", "after", "new", "state"]);
            let mut s = "State changed".to_string();
            if let Some(w) = what {
                s.push_str(&format!(" of {w}"));
            }
            match (from, to) {
                (Some(a), Some(b)) => s.push_str(&format!(": {a} → {b}")),
                (None, Some(b)) => s.push_str(&format!(" to {b}")),
                (Some(a), None) => s.push_str(&format!(" from {a}")),
                (None, None) => {}
            }
            s
        }
        "feedback" => {
            let rating = f.take(&["rating", "score", "sentiment"]);
            let text = or(f.take(&["content", "comment", "text", "message"]), "");
            match rating {
                Some(r) => format!("Feedback ({r}): {text}"),
                None => format!("Feedback: {text}"),
            }
        }
        other => other.to_string(),
    }
}

/// The episodic memory text of an event captured at `said_at` (RFC 3339; it dates relative time
/// in a message that carries no date of its own).
pub fn memory_text(event_type: &str, payload: &Value, said_at: Option<&str>) -> String {
    let empty = Map::new();
    let map = payload.as_object().unwrap_or(&empty);
    let mut fields = Fields {
        map,
        used: Vec::new(),
    };
    let mut text = sentence(event_type, &mut fields, said_at);
    let rest = fields.rest();
    if !rest.is_empty() {
        text.push_str(" (");
        text.push_str(&rest);
        text.push(')');
    }
    clip(text.trim(), MAX_CHARS)
}

#[cfg(test)]
mod tests {
    use super::memory_text;
    use serde_json::json;

    #[test]
    fn renders_by_type() {
        assert_eq!(
            memory_text(
                "message",
                &json!({"role": "user", "content": "Deploy the payment service"}),
                None
            ),
            "user: Deploy the payment service"
        );
        assert_eq!(
            memory_text(
                "command_exec",
                &json!({"command": "cargo test", "exitCode": 101, "stderr": "boom"}),
                None
            ),
            "Ran `cargo test` (exit code 101, failed); error: boom"
        );
        assert_eq!(
            memory_text(
                "tool_call",
                &json!({"tool_name": "search", "input": "query", "extra": 1}),
                None
            ),
            "Called tool search with query (extra: 1)"
        );
        assert_eq!(
            memory_text(
                "message",
                &json!({"role": "Priya", "content": "I went to a pottery workshop yesterday.",
                        "date": "4:20 pm on 8 May, 2023"}),
                None
            ),
            "[8 May 2023] Priya: I went to a pottery workshop yesterday (7 May 2023)."
        );
        assert_eq!(
            memory_text(
                "command_exec",
                &json!({"command": "kubectl apply -f ns.yaml", "exitCode": 1,
                        "stderr": "error: namespace \"prod\" not found"}),
                None
            ),
            "Ran `kubectl apply -f ns.yaml` (exit code 1, failed); error: namespace \"prod\" not found"
        );
        assert_eq!(
            memory_text("error", &json!({"message": "Error: disk full"}), None),
            "Error: disk full"
        );
        assert_eq!(
            memory_text("error", &json!({"message": "errno 28"}), None),
            "Error: errno 28"
        );
        assert_eq!(
            memory_text(
                "outcome",
                &json!({"success": true, "summary": "deployed v2"}),
                None
            ),
            "Outcome: success — deployed v2"
        );
        let long = "x".repeat(10_000);
        assert!(
            memory_text("observation", &json!({ "content": long }), None)
                .chars()
                .count()
                <= 4001
        );
    }
}
