//! One session's events read as an agent run: its task, the ordered actions with their outcomes,
//! the errors raised, the decisions taken, the conditions observed, and how the run ended.
//!
//! Outcome rule (docs/learn.md): an explicit `outcome` event wins; otherwise the status of the
//! last step whose status is known (`success`, `passed`, `exitCode == 0`, no `error`…); otherwise
//! unknown. Everything here is a pure function of the events, in their stored order.

use super::normalize::{action_label, error_signature, task_signature};
use super::Event;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One action the agent took.
#[derive(Clone, Debug)]
pub struct Step {
    /// The normalised signature (grouping and identity).
    pub action: String,
    /// What the agent did, verbatim (the command with its flags, the tool with its arguments,
    /// the edited path with its change): how an artifact shows the step.
    pub text: String,
    /// A result event may complete it (commands, tool calls, browser actions; not file edits).
    pub completable: bool,
    /// Index of the event (in the session's event list) that recorded the action.
    pub event: usize,
    /// `Some(true)` succeeded, `Some(false)` failed, `None` unknown.
    pub ok: Option<bool>,
    /// The normalised error signature when the step failed with a message.
    pub error: Option<String>,
    /// The raw error text (for symptoms), when any.
    pub error_text: Option<String>,
    /// A stated root cause (`payload.cause`), verbatim, when any.
    pub cause: Option<String>,
}

/// A decision the agent recorded.
#[derive(Clone, Debug)]
pub struct Decision {
    pub question: String,
    pub choice: String,
    /// The choice as recorded, verbatim.
    pub choice_text: String,
    pub event: usize,
}

/// A session read as a run.
#[derive(Clone, Debug, Default)]
pub struct Session {
    pub id: String,
    /// The task signature (normalised) and the text it came from.
    pub task: Option<String>,
    pub steps: Vec<Step>,
    pub decisions: Vec<Decision>,
    /// Conditions observed before the first action.
    pub preconditions: Vec<String>,
    /// Conditions observed after the last action.
    pub postconditions: Vec<String>,
    /// Every condition observed, in order: its label (grouping), its text as written, and its
    /// event index.
    pub conditions: Vec<(String, String, usize)>,
    /// Errors that were not attached to a step: (signature, raw text, event index). HTTP
    /// results of 400 and above count as errors (`HTTP 401 from POST https://…`).
    pub loose_errors: Vec<(String, String, usize)>,
    pub outcome: Option<bool>,
    /// Event index of the explicit outcome, if any.
    pub outcome_event: Option<usize>,
}

fn text_of<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

const OK_WORDS: &[&str] = &[
    "success",
    "succeeded",
    "successful",
    "ok",
    "passed",
    "pass",
    "completed",
    "complete",
    "done",
    "resolved",
    "fixed",
];
const FAIL_WORDS: &[&str] = &[
    "failure",
    "failed",
    "fail",
    "error",
    "errored",
    "timeout",
    "timed_out",
    "aborted",
    "crashed",
    "unresolved",
];

/// Whether `text` is `failed` run again with more to it: every word of the failed command is in
/// it (`docker run app` → `docker run --memory=2g app`, `npm run build` →
/// `NODE_OPTIONS=… npm run build`).
pub fn extends(text: &str, failed: &str) -> bool {
    let words: BTreeSet<&str> = text.split_whitespace().collect();
    failed.split_whitespace().all(|w| words.contains(w))
}

/// The status a payload reports, if it reports one.
pub fn status_of(p: &Value) -> Option<bool> {
    if let Some(b) = p.get("success").and_then(Value::as_bool) {
        return Some(b);
    }
    for k in ["exitCode", "exit_code", "returnCode"] {
        if let Some(n) = p.get(k).and_then(Value::as_i64) {
            return Some(n == 0);
        }
    }
    for k in ["status", "result", "outcome", "state"] {
        match p.get(k) {
            Some(Value::String(s)) => {
                let s = s.to_lowercase();
                if OK_WORDS.contains(&s.as_str()) {
                    return Some(true);
                }
                if FAIL_WORDS.contains(&s.as_str()) {
                    return Some(false);
                }
            }
            Some(Value::Number(n)) if k == "status" => {
                return n.as_i64().map(|c| c < 400);
            }
            Some(Value::Bool(b)) => return Some(*b),
            _ => {}
        }
    }
    if let Some(c) = p.get("statusCode").and_then(Value::as_i64) {
        return Some(c < 400);
    }
    if let Some(b) = p.get("passed").and_then(Value::as_bool) {
        return Some(b);
    }
    if let Some(n) = p.get("failed").and_then(Value::as_i64) {
        return Some(n == 0);
    }
    match p.get("error") {
        Some(Value::Null) | None => None,
        Some(Value::Bool(false)) => None,
        Some(_) => Some(false),
    }
}

/// The error text a payload carries, if any.
pub fn error_text_of(p: &Value) -> Option<String> {
    match p.get("error") {
        Some(Value::String(s)) if !s.trim().is_empty() => return Some(s.trim().to_string()),
        Some(Value::Object(o)) => {
            if let Some(m) = o.get("message").and_then(Value::as_str) {
                return Some(m.trim().to_string());
            }
        }
        _ => {}
    }
    text_of(p, &["stderr", "errorMessage", "message"]).map(str::to_string)
}

/// Whitespace runs folded to one space, ends trimmed.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Most characters a verbatim step keeps.
const MAX_TEXT: usize = 400;

fn clip(s: String) -> String {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut cut = MAX_TEXT;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

/// A step's signature (grouping) and verbatim text (presentation), and whether a result event
/// may complete it.
fn action_of(e: &Event) -> Option<(String, String, bool)> {
    let p = &e.payload;
    let (label, text, completable) = match e.kind.as_str() {
        "tool_call" => {
            let name = text_of(p, &["tool", "name", "toolName", "function"])?;
            let target = text_of(p, &["target", "action"]);
            let label = match target {
                Some(t) => format!("{name} {t}"),
                None => name.to_string(),
            };
            let args = ["input", "arguments", "args", "parameters"]
                .iter()
                .find_map(|k| p.get(*k))
                .filter(|a| a.as_object().is_some_and(|o| !o.is_empty()));
            let text = match args {
                Some(a) => format!("{label} {a}"),
                None => label.clone(),
            };
            (label, text, true)
        }
        "command_exec" => {
            let c = text_of(p, &["command", "cmd"])?;
            (c.to_string(), collapse(c), true)
        }
        "file_edit" | "file_change" => {
            let path = text_of(p, &["path", "file", "filename"])?;
            let change = text_of(p, &["summary", "change", "description", "message"]);
            let text = match change {
                Some(c) => format!("edit {path} ({})", collapse(c)),
                None => format!("edit {path}"),
            };
            (format!("edit {path}"), text, false)
        }
        "browser_action" => {
            let what = text_of(p, &["action", "url"])?;
            let text = match (text_of(p, &["action"]), text_of(p, &["url"])) {
                (Some(a), Some(u)) => format!("browser {a} {u}"),
                _ => format!("browser {what}"),
            };
            (format!("browser {what}"), text, true)
        }
        "test_run" => {
            let label = match text_of(p, &["suite", "command", "name"]) {
                Some(s) => format!("run tests {s}"),
                None => "run tests".to_string(),
            };
            let text = match text_of(p, &["command"]) {
                Some(c) => collapse(c),
                None => label.clone(),
            };
            (label, text, false)
        }
        _ => return None,
    };
    let label = action_label(&label, 5);
    (!label.is_empty()).then(|| (label, clip(text), completable))
}

/// An HTTP failure a result reports: `HTTP 401 from POST https://…`.
fn http_failure(p: &Value) -> Option<String> {
    let status = p.get("status").or_else(|| p.get("statusCode"))?.as_u64()?;
    if !(400..=599).contains(&status) {
        return None;
    }
    let target = text_of(p, &["url", "endpoint", "path"]);
    let method = text_of(p, &["method"]);
    Some(match (method, target) {
        (Some(m), Some(t)) => format!("HTTP {status} from {m} {t}"),
        (None, Some(t)) => format!("HTTP {status} from {t}"),
        _ => format!("HTTP {status}"),
    })
}

/// A condition's label (normalised, for grouping) and its text as written.
fn condition_of(e: &Event) -> Option<(String, String)> {
    let text = text_of(
        &e.payload,
        &[
            "condition",
            "state",
            "observation",
            "text",
            "content",
            "message",
        ],
    )?;
    let label = action_label(text, 8);
    (!label.is_empty()).then(|| (label, clip(collapse(text))))
}

impl Session {
    /// Reads a session from its events (all of one session, in stored order).
    pub fn read(id: &str, events: &[Event]) -> Session {
        let mut s = Session {
            id: id.to_string(),
            ..Session::default()
        };
        let mut task_text: Option<String> = None;
        for (i, e) in events.iter().enumerate() {
            if s.task.is_none() {
                if let Some(t) = e.metadata.get("task").and_then(Value::as_str) {
                    let sig = task_signature(t);
                    if !sig.is_empty() {
                        s.task = Some(sig);
                    }
                }
            }
            let p = &e.payload;
            match e.kind.as_str() {
                "message" => {
                    let role = text_of(p, &["role"]).unwrap_or("user");
                    if role == "user" && task_text.is_none() {
                        task_text = text_of(p, &["content", "text", "message"]).map(str::to_string);
                    }
                }
                "tool_result" | "api_result" => {
                    let ok = status_of(p);
                    let err = error_text_of(p)
                        .or_else(|| http_failure(p))
                        .filter(|_| ok == Some(false));
                    // A result completes the step before it when that step's status is not
                    // known yet; otherwise it reports on its own (e.g. a later health probe).
                    match s.steps.last_mut() {
                        Some(last) if last.ok.is_none() && last.completable => {
                            last.ok = ok;
                            if let Some(t) = err {
                                last.error = Some(error_signature(&t));
                                last.error_text = Some(t);
                            }
                            if let Some(c) = text_of(p, &["cause", "rootCause"]) {
                                last.cause = Some(clip(collapse(c)));
                            }
                        }
                        _ => {
                            if let Some(t) = err {
                                s.loose_errors.push((error_signature(&t), t, i));
                            }
                        }
                    }
                }
                "error" => {
                    let text = text_of(p, &["message", "error", "text", "content"])
                        .map(str::to_string)
                        .or_else(|| error_text_of(p))
                        .unwrap_or_else(|| "unknown error".to_string());
                    let sig = error_signature(&text);
                    let cause = text_of(p, &["cause", "rootCause"]).map(|c| clip(collapse(c)));
                    match s.steps.last_mut() {
                        Some(last) if last.ok != Some(true) => {
                            last.ok = Some(false);
                            last.error = Some(sig);
                            last.error_text = Some(text);
                            if cause.is_some() {
                                last.cause = cause;
                            }
                        }
                        _ => s.loose_errors.push((sig, text, i)),
                    }
                }
                "decision" => {
                    if let Some(choice) = text_of(p, &["choice", "decision", "selected", "option"])
                    {
                        let question = text_of(p, &["question", "point", "context", "about"])
                            .map(|q| action_label(q, 8))
                            .filter(|q| !q.is_empty())
                            .unwrap_or_else(|| "choice".to_string());
                        let choice_text = clip(collapse(choice));
                        let choice = action_label(choice, 6);
                        if !choice.is_empty() {
                            s.decisions.push(Decision {
                                question,
                                choice,
                                choice_text,
                                event: i,
                            });
                        }
                    }
                }
                "observation" | "state_change" => {
                    if let Some((c, raw)) = condition_of(e) {
                        if s.steps.is_empty() {
                            s.preconditions.push(c.clone());
                        }
                        s.conditions.push((c, raw, i));
                    }
                }
                "outcome" => {
                    if let Some(ok) = status_of(p) {
                        s.outcome = Some(ok);
                        s.outcome_event = Some(i);
                    }
                }
                _ => {
                    if let Some((action, verbatim, completable)) = action_of(e) {
                        let ok = status_of(p);
                        let text = error_text_of(p)
                            // A browser action or tool call that reports its own HTTP status.
                            .or_else(|| http_failure(p))
                            .or_else(|| {
                                // A command that failed without saying why still reports its
                                // exit: a concrete failure signal.
                                (ok == Some(false) && e.kind == "command_exec")
                                    .then(|| format!("`{verbatim}` exited non-zero"))
                            })
                            .filter(|_| ok == Some(false));
                        s.steps.push(Step {
                            action,
                            text: verbatim,
                            completable,
                            event: i,
                            ok,
                            error: text.as_deref().map(error_signature),
                            error_text: text,
                            cause: text_of(p, &["cause", "rootCause"]).map(|c| clip(collapse(c))),
                        });
                    }
                }
            }
        }
        if s.task.is_none() {
            if let Some(t) = task_text {
                let sig = task_signature(&t);
                if !sig.is_empty() {
                    s.task = Some(sig);
                }
            }
        }
        // Conditions after the last action describe the end state.
        if let Some(last) = s.steps.last().map(|st| st.event) {
            for (i, e) in events.iter().enumerate().skip(last + 1) {
                if matches!(e.kind.as_str(), "observation" | "state_change") {
                    if let Some((c, _)) = condition_of(&events[i]) {
                        s.postconditions.push(c);
                    }
                }
            }
        }
        if s.outcome.is_none() {
            s.outcome = s.steps.iter().rev().find_map(|st| st.ok);
        }
        s
    }

    /// Actions in first-occurrence order, without repeats.
    pub fn distinct_actions(&self) -> Vec<&str> {
        let mut seen = Vec::new();
        for st in &self.steps {
            if !seen.contains(&st.action.as_str()) {
                seen.push(st.action.as_str());
            }
        }
        seen
    }

    /// Verbatim texts that were only ever futile in this run: every time, they were tried while
    /// a failure was open and that same failure came back next (a decoy fix). A task schema
    /// leaves them out; the failure playbook ranks them as recoveries that did not work.
    pub fn futile_texts(&self) -> BTreeSet<&str> {
        let mut futile = vec![false; self.steps.len()];
        // The open failure: its signature, the failed text and the attempt's step indices.
        let mut open: Option<(String, &str, Vec<usize>)> = None;
        for (i, st) in self.steps.iter().enumerate() {
            let failed = st.ok == Some(false) || (st.error.is_some() && st.ok != Some(true));
            if failed {
                let sig = st
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("{} failed", st.action));
                if let Some((was, _, attempt)) = open.take() {
                    if was == sig {
                        for j in attempt {
                            futile[j] = true;
                        }
                    }
                }
                open = Some((sig, st.text.as_str(), Vec::new()));
            } else if let Some((_, failed_text, attempt)) = &mut open {
                if extends(&st.text, failed_text) {
                    open = None;
                } else {
                    attempt.push(i);
                }
            }
        }
        let mut texts: BTreeMap<&str, bool> = BTreeMap::new();
        for (st, f) in self.steps.iter().zip(futile) {
            let all = texts.entry(st.text.as_str()).or_insert(true);
            *all &= f;
        }
        texts
            .into_iter()
            .filter(|(_, f)| *f)
            .map(|(t, _)| t)
            .collect()
    }

    /// Verbatim steps in first-occurrence order, without repeats; with `succeeded_only`, steps
    /// that failed in this run are left out.
    pub fn distinct_texts(&self, succeeded_only: bool) -> Vec<&Step> {
        let mut seen: Vec<&Step> = Vec::new();
        for st in &self.steps {
            if succeeded_only && st.ok == Some(false) {
                continue;
            }
            if !seen.iter().any(|x| x.text == st.text) {
                seen.push(st);
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(i: usize, kind: &str, payload: Value) -> Event {
        Event {
            id: format!("evt_{i}"),
            session_id: "s1".into(),
            agent_id: None,
            kind: kind.into(),
            payload,
            metadata: json!({}),
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    /// A browser action or tool call that reports its own HTTP failure is a concrete failure
    /// signal even without an error text; so is a failing command's exit.
    #[test]
    fn http_statuses_and_exits_on_the_step_itself_are_failures() {
        let events = vec![
            event(
                0,
                "browser_action",
                json!({"action": "submit", "url": "https://shop.example.org/checkout", "status": 503}),
            ),
            event(
                1,
                "tool_call",
                json!({"tool": "http", "method": "GET", "url": "https://api.example.org/v1/items",
                       "statusCode": 404}),
            ),
            event(
                2,
                "command_exec",
                json!({"command": "make  test", "exitCode": 2}),
            ),
            event(
                3,
                "browser_action",
                json!({"action": "open", "url": "https://shop.example.org/", "status": 200}),
            ),
        ];
        let s = Session::read("s1", &events);
        let got: Vec<(Option<bool>, Option<&str>)> = s
            .steps
            .iter()
            .map(|st| (st.ok, st.error_text.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    Some(false),
                    Some("HTTP 503 from https://shop.example.org/checkout")
                ),
                (
                    Some(false),
                    Some("HTTP 404 from GET https://api.example.org/v1/items")
                ),
                (Some(false), Some("`make test` exited non-zero")),
                (Some(true), None),
            ]
        );
        assert_eq!(
            s.steps[0].error.as_deref(),
            Some("http <n> from https:/<path>")
        );
    }
}
