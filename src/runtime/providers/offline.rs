//! The built-in offline model: the default when no upstream is configured, and the model of
//! every agent that carries a `script`. It needs no network and answers deterministically.
//!
//! Rules (`script` at deploy) are tried in order against the user's message; the first whose
//! `match` regex matches answers: with its `tool` call first when it has one (then with its
//! `reply` once the tool result is in), else with its `reply`. In a reply and in the tool's
//! argument strings, `{{message}}` is the user's message, `{{tool_result}}` the tool's output,
//! and `{{1}}`, `{{name}}` the regex's capture groups (empty when a group did not match).
//! `delay_ms` makes each of the rule's model steps wait first; `status` makes the invocation
//! fail with that HTTP status, the reply being the error's message.
//! Without a matching rule it answers from the agent's memory (the top synthesized entries) and
//! says that it is the offline model.
//!
//! Invariant: the same conversation, script and memory always give the same reply.

use crate::runtime::{DeltaSink, ModelReply, Msg, ProviderError, Role, ToolCall};
use regex::Regex;
use serde_json::{json, Value};

/// How many memory entries an offline answer quotes.
const MEMORY_ENTRIES: usize = 3;

/// One rule of a script.
#[derive(Clone, Debug)]
pub struct Rule {
    pub pattern: Regex,
    pub reply: Option<String>,
    pub tool: Option<(String, String, Value)>,
    pub delay: Option<std::time::Duration>,
    pub status: Option<u16>,
}

/// Parses and checks a script (an array of rules, or `{"rules": [...]}`); errors name the rule.
pub fn parse_script(script: &Value) -> Result<Vec<Rule>, String> {
    let rules = match script {
        Value::Array(a) => a,
        Value::Object(o) => o
            .get("rules")
            .and_then(Value::as_array)
            .ok_or("script must be an array of rules")?,
        Value::Null => return Ok(Vec::new()),
        _ => return Err("script must be an array of rules".into()),
    };
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        let pat = r
            .get("match")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("script[{i}].match is required and must be a string"))?;
        let pattern =
            Regex::new(pat).map_err(|e| format!("script[{i}].match is not a valid regex: {e}"))?;
        let reply = match r.get("reply") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(format!("script[{i}].reply must be a string")),
        };
        let tool = match r.get("tool") {
            None | Some(Value::Null) => None,
            Some(t) => {
                let connector = t.get("connector").and_then(Value::as_str).ok_or_else(|| {
                    format!("script[{i}].tool.connector is required and must be a string")
                })?;
                let name = t.get("name").and_then(Value::as_str).ok_or_else(|| {
                    format!("script[{i}].tool.name is required and must be a string")
                })?;
                let args = t.get("arguments").cloned().unwrap_or_else(|| json!({}));
                if !args.is_object() {
                    return Err(format!("script[{i}].tool.arguments must be an object"));
                }
                Some((connector.to_string(), name.to_string(), args))
            }
        };
        let delay = match r.get("delay_ms") {
            None | Some(Value::Null) => None,
            Some(v) => Some(std::time::Duration::from_millis(v.as_u64().ok_or_else(
                || format!("script[{i}].delay_ms must be a non-negative integer"),
            )?)),
        };
        let status = match r.get("status") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(s @ 400..=599) => Some(s as u16),
                _ => {
                    return Err(format!(
                        "script[{i}].status must be an HTTP status from 400 to 599"
                    ))
                }
            },
        };
        if reply.is_none() && tool.is_none() && status.is_none() {
            return Err(format!("script[{i}] needs a reply, a tool or a status"));
        }
        out.push(Rule {
            pattern,
            reply,
            tool,
            delay,
            status,
        });
    }
    Ok(out)
}

/// The name a connector's tool is offered under.
pub fn tool_name(connector: &str, tool: &str) -> String {
    format!("{connector}__{tool}")
}

fn last_user(messages: &[Msg]) -> &str {
    messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .unwrap_or("")
}

/// How long the rule answering this conversation waits before each step, if it says.
pub fn delay(rules: &[Rule], messages: &[Msg]) -> Option<std::time::Duration> {
    let user = last_user(messages);
    rules.iter().find(|r| r.pattern.is_match(user))?.delay
}

/// `template` with `{{message}}`, `{{tool_result}}` and the capture groups (`{{1}}`, `{{name}}`)
/// filled in; other `{{…}}` are left as written.
fn fill(
    template: &str,
    caps: &regex::Captures<'_>,
    pattern: &Regex,
    user: &str,
    tool: &str,
) -> String {
    if !template.contains("{{") {
        return template.to_string();
    }
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        let value = match name {
            "message" => Some(user.to_string()),
            "tool_result" => Some(tool.to_string()),
            n => match n.parse::<usize>() {
                Ok(i) if i < caps.len() => Some(caps.get(i).map_or("", |m| m.as_str()).to_string()),
                Ok(_) => None,
                Err(_) if pattern.capture_names().any(|c| c == Some(n)) => {
                    Some(caps.name(n).map_or("", |m| m.as_str()).to_string())
                }
                Err(_) => None,
            },
        };
        match value {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// `fill` applied to every string inside a JSON value (tool arguments).
fn fill_value(v: &Value, caps: &regex::Captures<'_>, pattern: &Regex, user: &str) -> Value {
    match v {
        Value::String(s) => Value::String(fill(s, caps, pattern, user, "")),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| fill_value(x, caps, pattern, user))
                .collect(),
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), fill_value(x, caps, pattern, user)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Answers the conversation. `memory` is the agent's top memory entries, best first.
pub fn complete(
    rules: &[Rule],
    memory: &[String],
    messages: &[Msg],
    sink: Option<&DeltaSink>,
) -> Result<ModelReply, ProviderError> {
    let user = last_user(messages);
    // Tool results that came back since the last user message.
    let results: Vec<&Msg> = messages
        .iter()
        .rev()
        .take_while(|m| m.role != Role::User)
        .filter(|m| m.role == Role::Tool)
        .collect();
    let matched = rules
        .iter()
        .find_map(|r| r.pattern.captures(user).map(|c| (r, c)));
    let text = match matched {
        Some((r, caps)) if r.status.is_some() => {
            let status = r.status.expect("checked above");
            let message = match r.reply.as_deref() {
                Some(reply) if !reply.is_empty() => fill(reply, &caps, &r.pattern, user, ""),
                _ => format!("the agent's script answered with status {status}"),
            };
            return Err(ProviderError::Scripted { status, message });
        }
        Some((r, caps)) if results.is_empty() && r.tool.is_some() => {
            let (connector, name, args) = r.tool.as_ref().expect("checked above");
            return Ok(ModelReply {
                text: String::new(),
                tool_calls: vec![ToolCall {
                    id: "call_offline_0".into(),
                    name: tool_name(connector, name),
                    arguments: fill_value(args, &caps, &r.pattern, user),
                }],
                tokens: None,
            });
        }
        Some((r, caps)) => {
            let tool_result = results
                .iter()
                .rev()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            match &r.reply {
                Some(reply) => fill(reply, &caps, &r.pattern, user, &tool_result),
                None => tool_result,
            }
        }
        None => memory_answer(user, memory),
    };
    // Stream word by word (with the spaces), like a model would.
    for piece in text.split_inclusive(' ') {
        crate::runtime::emit(sink, piece);
    }
    Ok(ModelReply {
        text,
        tool_calls: Vec::new(),
        tokens: None,
    })
}

fn memory_answer(user: &str, memory: &[String]) -> String {
    let mut out = String::from(
        "[engram offline model] No upstream model is configured for this agent, so this answer \
         comes from its memory.",
    );
    if memory.is_empty() {
        out.push_str(&format!(
            " I have nothing in memory about: \"{}\".",
            short(user, 200)
        ));
    } else {
        out.push_str(" What I remember:");
        for m in memory.iter().take(MEMORY_ENTRIES) {
            out.push_str("\n- ");
            out.push_str(&short(m, 400));
        }
    }
    out
}

fn short(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_reply_then_tool_round() {
        let rules = parse_script(&json!([
            {"match": "(?i)weather", "reply": "It is {{tool_result}}.",
             "tool": {"connector": "wx", "name": "now", "arguments": {"city": "Oslo"}}},
            {"match": "hello", "reply": "Hi! You said {{message}}"}
        ]))
        .unwrap();
        let r = complete(&rules, &[], &[Msg::user("hello there")], None).unwrap();
        assert_eq!(r.text, "Hi! You said hello there");
        let r = complete(&rules, &[], &[Msg::user("Weather?")], None).unwrap();
        assert_eq!(r.tool_calls[0].name, "wx__now");
        let convo = vec![
            Msg::user("Weather?"),
            Msg::assistant("", r.tool_calls.clone()),
            Msg::tool("call_offline_0", "sunny", false),
        ];
        assert_eq!(
            complete(&rules, &[], &convo, None).unwrap().text,
            "It is sunny."
        );
    }

    #[test]
    fn memory_answer_says_it_is_offline() {
        let r = complete(
            &[],
            &["user likes tea".into()],
            &[Msg::user("what do I like?")],
            None,
        )
        .unwrap();
        assert!(r.text.contains("offline model"));
        assert!(r.text.contains("user likes tea"));
    }

    #[test]
    fn bad_scripts_are_named() {
        let e = parse_script(&json!([{"match": "("}])).unwrap_err();
        assert!(e.contains("script[0].match"), "{e}");
        let e = parse_script(&json!([{"match": "a"}])).unwrap_err();
        assert!(e.contains("a reply, a tool or a status"), "{e}");
        let e = parse_script(&json!([{"match": "a", "status": 200}])).unwrap_err();
        assert!(e.contains("script[0].status"), "{e}");
    }

    #[test]
    fn templates_fill_groups_in_replies_and_tool_arguments() {
        let rules = parse_script(&json!([
            {"match": "^deploy (?P<svc>\\w+) to (\\w+)$", "reply": "{{svc}} is live in {{2}}: {{tool_result}} ({{unknown}})",
             "tool": {"connector": "ops", "name": "deploy",
                      "arguments": {"service": "{{svc}}", "env": ["{{2}}"], "said": "{{message}}", "n": 3}}},
            {"match": "^fail (\\d+)$", "status": 503, "reply": "upstream down after {{1}} tries"},
            {"match": "^slow", "reply": "ok", "delay_ms": 250}
        ]))
        .unwrap();
        let r = complete(&rules, &[], &[Msg::user("deploy api to prod")], None).unwrap();
        assert_eq!(
            r.tool_calls[0].arguments,
            json!({"service": "api", "env": ["prod"], "said": "deploy api to prod", "n": 3})
        );
        let convo = vec![
            Msg::user("deploy api to prod"),
            Msg::assistant("", r.tool_calls.clone()),
            Msg::tool("call_offline_0", "done", false),
        ];
        assert_eq!(
            complete(&rules, &[], &convo, None).unwrap().text,
            "api is live in prod: done ({{unknown}})"
        );
        match complete(&rules, &[], &[Msg::user("fail 3")], None) {
            Err(ProviderError::Scripted { status, message }) => {
                assert_eq!(status, 503);
                assert_eq!(message, "upstream down after 3 tries");
            }
            other => panic!("expected a scripted error, got {other:?}"),
        }
        assert_eq!(
            delay(&rules, &[Msg::user("slow please")]),
            Some(std::time::Duration::from_millis(250))
        );
        assert_eq!(delay(&rules, &[Msg::user("fail 3")]), None);
    }
}
