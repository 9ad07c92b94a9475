//! The built-in offline model: the default when no upstream is configured, and the model of
//! every agent that carries a `script`. It needs no network and answers deterministically.
//!
//! Rules (`script` at deploy) are tried in order against the user's message; the first whose
//! `match` regex matches answers: with its `tool` call first when it has one (then with its
//! `reply` once the tool result is in), else with its `reply`. `{{message}}` and
//! `{{tool_result}}` in a reply are replaced by the user's message and the tool's output.
//! Without a matching rule it answers from the agent's memory (the top synthesized entries) and
//! says that it is the offline model.
//!
//! Invariant: the same conversation, script and memory always give the same reply.

use crate::runtime::{DeltaSink, ModelReply, Msg, Role, ToolCall};
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
        if reply.is_none() && tool.is_none() {
            return Err(format!("script[{i}] needs a reply or a tool"));
        }
        out.push(Rule {
            pattern,
            reply,
            tool,
        });
    }
    Ok(out)
}

/// The name a connector's tool is offered under.
pub fn tool_name(connector: &str, tool: &str) -> String {
    format!("{connector}__{tool}")
}

/// Answers the conversation. `memory` is the agent's top memory entries, best first.
pub fn complete(
    rules: &[Rule],
    memory: &[String],
    messages: &[Msg],
    sink: Option<&DeltaSink>,
) -> ModelReply {
    let user = messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .unwrap_or("");
    // Tool results that came back since the last user message.
    let results: Vec<&Msg> = messages
        .iter()
        .rev()
        .take_while(|m| m.role != Role::User)
        .filter(|m| m.role == Role::Tool)
        .collect();
    let rule = rules.iter().find(|r| r.pattern.is_match(user));
    let text = match rule {
        Some(r) if results.is_empty() && r.tool.is_some() => {
            let (connector, name, args) = r.tool.clone().expect("checked above");
            return ModelReply {
                text: String::new(),
                tool_calls: vec![ToolCall {
                    id: "call_offline_0".into(),
                    name: tool_name(&connector, &name),
                    arguments: args,
                }],
                tokens: None,
            };
        }
        Some(r) => {
            let tool_result = results
                .iter()
                .rev()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            match &r.reply {
                Some(reply) => reply
                    .replace("{{message}}", user)
                    .replace("{{tool_result}}", &tool_result),
                None => tool_result,
            }
        }
        None => memory_answer(user, memory),
    };
    // Stream word by word (with the spaces), like a model would.
    for piece in text.split_inclusive(' ') {
        crate::runtime::emit(sink, piece);
    }
    ModelReply {
        text,
        tool_calls: Vec::new(),
        tokens: None,
    }
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
        let r = complete(&rules, &[], &[Msg::user("hello there")], None);
        assert_eq!(r.text, "Hi! You said hello there");
        let r = complete(&rules, &[], &[Msg::user("Weather?")], None);
        assert_eq!(r.tool_calls[0].name, "wx__now");
        let convo = vec![
            Msg::user("Weather?"),
            Msg::assistant("", r.tool_calls.clone()),
            Msg::tool("call_offline_0", "sunny", false),
        ];
        assert_eq!(complete(&rules, &[], &convo, None).text, "It is sunny.");
    }

    #[test]
    fn memory_answer_says_it_is_offline() {
        let r = complete(
            &[],
            &["user likes tea".into()],
            &[Msg::user("what do I like?")],
            None,
        );
        assert!(r.text.contains("offline model"));
        assert!(r.text.contains("user likes tea"));
    }

    #[test]
    fn bad_scripts_are_named() {
        let e = parse_script(&json!([{"match": "("}])).unwrap_err();
        assert!(e.contains("script[0].match"), "{e}");
        let e = parse_script(&json!([{"match": "a"}])).unwrap_err();
        assert!(e.contains("reply or a tool"), "{e}");
    }
}
