//! The memory gateway's upstream side (docs/api.md "Memory gateway"): which model API a
//! `POST /v1/chat/completions` goes to, with which key, and the translation of an OpenAI-format
//! request to Anthropic's Messages API and back.
//!
//! Invariants:
//! - A base URL from the request (`X-LLM-Base-URL`) passes the outbound policy and is called
//!   only at its vetted addresses, without redirects; the operator's own provider key is never
//!   sent to a base URL the request chose (only the request's `X-LLM-API-Key` is).
//! - What an upstream answered is relayed on success (that is the point of a proxy); a failure
//!   is described by its HTTP status and our own words, never by the upstream's body.

use super::providers::anthropic;
use super::{DeltaSink, ModelReply, ModelRequest, Msg, ToolCall, ToolDef};
use crate::outbound::{describe_failure, leading_http_status};
use serde_json::{json, Value};
use std::time::Duration;

/// Which wire protocol the upstream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
}

/// A resolved upstream.
#[derive(Clone)]
pub struct Upstream {
    pub wire: Wire,
    /// For OpenAI: the full chat-completions URL; for Anthropic: the base URL.
    pub url: String,
    pub key: Option<String>,
    pub http: reqwest::Client,
}

/// Why the gateway could not get an answer: an HTTP status for the caller and a safe message.
#[derive(Debug)]
pub struct Failure {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

impl Failure {
    pub fn bad_request(message: impl Into<String>) -> Failure {
        Failure {
            status: 400,
            kind: "invalid_request_error",
            message: message.into(),
        }
    }

    pub fn upstream(message: impl Into<String>) -> Failure {
        Failure {
            status: 502,
            kind: "upstream_error",
            message: message.into(),
        }
    }
}

/// `base` without a trailing `/` or `/v1`.
pub fn trim_base(base: &str) -> String {
    let b = base.trim().trim_end_matches('/');
    b.strip_suffix("/v1").unwrap_or(b).to_string()
}

/// The default upstream when neither the request nor the operator names one.
pub const DEFAULT_OPENAI_BASE: &str = "https://api.openai.com";

/// Picks the upstream of a request: its headers first, then the operator's configuration.
pub async fn resolve(
    rt: &super::Runtime,
    policy: &crate::outbound::Policy,
    base_header: Option<&str>,
    key_header: Option<&str>,
    provider_header: Option<&str>,
) -> Result<Upstream, Failure> {
    let key_header = key_header.map(str::trim).filter(|k| !k.is_empty());
    let chosen = base_header.map(str::trim).filter(|b| !b.is_empty());
    let wants_anthropic = |base: &str| {
        provider_header.is_some_and(|p| p.eq_ignore_ascii_case("anthropic"))
            || url::Url::parse(base)
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .is_some_and(|h| h == "anthropic.com" || h.ends_with(".anthropic.com"))
    };
    if let Some(p) = provider_header {
        if !p.eq_ignore_ascii_case("anthropic") && !p.eq_ignore_ascii_case("openai") {
            return Err(Failure::bad_request(format!(
                "X-LLM-Provider must be openai or anthropic, not '{}'",
                crate::error::echo(p)
            )));
        }
    }
    match chosen {
        Some(base) => {
            let vetted = policy.vet(base).await.map_err(|r| Failure {
                status: 400,
                kind: "invalid_request_error",
                message: format!("X-LLM-Base-URL {r}"),
            })?;
            let http = vetted
                .client(Duration::from_secs(10))
                .map_err(Failure::upstream)?;
            let base = trim_base(vetted.url.as_str());
            let wire = if wants_anthropic(&base) {
                Wire::Anthropic
            } else {
                Wire::OpenAi
            };
            Ok(Upstream {
                wire,
                url: match wire {
                    Wire::OpenAi => format!("{base}/v1/chat/completions"),
                    Wire::Anthropic => base,
                },
                // Only the caller's key goes to a base the caller chose.
                key: key_header.map(str::to_string),
                http,
            })
        }
        None => {
            let anthropic = provider_header.is_some_and(|p| p.eq_ignore_ascii_case("anthropic"));
            if anthropic {
                let base = rt
                    .anthropic_base_url
                    .clone()
                    .unwrap_or_else(|| "https://api.anthropic.com".into());
                Ok(Upstream {
                    wire: Wire::Anthropic,
                    url: trim_base(&base),
                    key: key_header
                        .map(str::to_string)
                        .or_else(|| rt.anthropic_api_key.clone()),
                    http: rt.http.clone(),
                })
            } else {
                let base = rt
                    .openai_base_url
                    .clone()
                    .unwrap_or_else(|| DEFAULT_OPENAI_BASE.into());
                Ok(Upstream {
                    wire: Wire::OpenAi,
                    url: format!("{}/v1/chat/completions", trim_base(&base)),
                    key: key_header
                        .map(str::to_string)
                        .or_else(|| rt.openai_api_key.clone()),
                    http: rt.http.clone(),
                })
            }
        }
    }
}

/// Maps a transport error to a failure (504 on a timeout).
pub fn send_failure(e: &reqwest::Error) -> Failure {
    if e.is_timeout() {
        Failure {
            status: 504,
            kind: "timeout",
            message: "the upstream model API did not answer in time".into(),
        }
    } else {
        Failure::upstream(format!(
            "the upstream model API failed: {}",
            describe_failure(&e.to_string(), Some(e))
        ))
    }
}

/// A non-success status of the upstream, passed on with our words.
pub fn status_failure(status: u16) -> Failure {
    Failure {
        status,
        kind: "upstream_error",
        message: format!("the upstream model API answered HTTP {status}"),
    }
}

/// The text of an OpenAI message's `content`: a string, or the text parts of an array.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// An OpenAI-format request as the runtime's provider-neutral request (for Anthropic).
pub fn to_model_request(body: &Value, model: &str, stream: bool) -> Result<ModelRequest, Failure> {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        let text = content_text(&m["content"]);
        match m["role"].as_str().unwrap_or("") {
            "system" | "developer" => system.push(text),
            "user" => messages.push(Msg::user(text)),
            "assistant" => {
                let calls = m["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| ToolCall {
                        id: c["id"].as_str().unwrap_or_default().to_string(),
                        name: c["function"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        arguments: c["function"]["arguments"]
                            .as_str()
                            .and_then(|a| serde_json::from_str(a).ok())
                            .unwrap_or_else(|| json!({})),
                    })
                    .collect();
                messages.push(Msg::assistant(text, calls));
            }
            "tool" => messages.push(Msg::tool(
                m["tool_call_id"].as_str().unwrap_or_default(),
                text,
                false,
            )),
            other => {
                return Err(Failure::bad_request(format!(
                    "messages: unknown role '{}'",
                    crate::error::echo(other)
                )))
            }
        }
    }
    let tools = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let f = t.get("function")?;
            Some(ToolDef {
                name: f["name"].as_str()?.to_string(),
                description: f["description"].as_str().unwrap_or_default().to_string(),
                schema: f
                    .get("parameters")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"})),
            })
        })
        .collect();
    let max_tokens = body["max_completion_tokens"]
        .as_u64()
        .or_else(|| body["max_tokens"].as_u64())
        .unwrap_or(1024)
        .clamp(1, 128_000) as u32;
    Ok(ModelRequest {
        model: model.to_string(),
        system: system.join("\n\n"),
        messages,
        tools,
        stream,
        max_tokens,
    })
}

/// Calls Anthropic's Messages API for an OpenAI-format request.
pub async fn call_anthropic(
    up: &Upstream,
    req: &ModelRequest,
    sink: Option<&DeltaSink>,
) -> Result<ModelReply, Failure> {
    anthropic::complete(&up.http, &up.url, up.key.as_deref(), req, sink)
        .await
        .map_err(|e| {
            let text = e.to_string();
            match leading_http_status(&text) {
                Some(status) => status_failure(status),
                None => Failure::upstream(format!(
                    "the upstream model API failed: {}",
                    describe_failure(&text, None)
                )),
            }
        })
}

/// OpenAI's `tool_calls` array for the runtime's tool calls.
pub fn openai_tool_calls(calls: &[ToolCall]) -> Value {
    Value::Array(
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({"index": i, "id": c.id, "type": "function",
                       "function": {"name": c.name, "arguments": c.arguments.to_string()}})
            })
            .collect(),
    )
}

/// A `chat.completion` object for a reply.
pub fn completion_json(id: &str, model: &str, created: i64, reply: &ModelReply) -> Value {
    let mut message = json!({"role": "assistant", "content": reply.text});
    if !reply.tool_calls.is_empty() {
        message["tool_calls"] = openai_tool_calls(&reply.tool_calls);
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": if reply.tool_calls.is_empty() { "stop" } else { "tool_calls" },
        }],
        "usage": {"total_tokens": reply.tokens.unwrap_or(0)},
    })
}

/// One `chat.completion.chunk` with `delta`.
pub fn chunk_json(
    id: &str,
    model: &str,
    created: i64,
    delta: Value,
    finish: Option<&str>,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

/// What a streamed OpenAI answer said, assembled from its chunks as they pass through.
#[derive(Default)]
pub struct Assembled {
    pub text: String,
    /// By index: (id, name, arguments so far).
    pub calls: Vec<(String, String, String)>,
}

impl Assembled {
    /// Takes one `data:` payload of the upstream's stream.
    pub fn push(&mut self, data: &str) {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        let Some(delta) = v.pointer("/choices/0/delta") else {
            return;
        };
        if let Some(t) = delta.get("content").and_then(Value::as_str) {
            self.text.push_str(t);
        }
        for c in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let i = c["index"].as_u64().unwrap_or(0) as usize;
            while self.calls.len() <= i {
                self.calls.push(Default::default());
            }
            let slot = &mut self.calls[i];
            if let Some(id) = c["id"].as_str() {
                slot.0 = id.to_string();
            }
            if let Some(n) = c.pointer("/function/name").and_then(Value::as_str) {
                slot.1.push_str(n);
            }
            if let Some(a) = c.pointer("/function/arguments").and_then(Value::as_str) {
                slot.2.push_str(a);
            }
        }
    }

    pub fn tool_calls(&self) -> Vec<ToolCall> {
        self.calls
            .iter()
            .filter(|c| !c.1.is_empty())
            .map(|(id, name, args)| ToolCall {
                id: id.clone(),
                name: name.clone(),
                arguments: serde_json::from_str(args).unwrap_or_else(|_| json!(args)),
            })
            .collect()
    }
}

/// The reply of a non-streamed OpenAI answer (for capture).
pub fn reply_of_completion(v: &Value) -> ModelReply {
    let m = v
        .pointer("/choices/0/message")
        .cloned()
        .unwrap_or(Value::Null);
    let mut a = Assembled {
        text: content_text(&m["content"]),
        calls: Vec::new(),
    };
    for c in m["tool_calls"].as_array().into_iter().flatten() {
        a.calls.push((
            c["id"].as_str().unwrap_or_default().to_string(),
            c.pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            c.pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}")
                .to_string(),
        ));
    }
    ModelReply {
        tool_calls: a.tool_calls(),
        text: a.text,
        tokens: v.pointer("/usage/total_tokens").and_then(Value::as_u64),
    }
}

/// The user's last message (the memory query and the captured user event).
pub fn last_user_message(body: &Value) -> Option<String> {
    body["messages"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| content_text(&m["content"]))
        .filter(|t| !t.trim().is_empty())
}

/// Puts the memory context into the request: merged into its first message when that is a
/// system message, else as a new first system message.
pub fn inject_memory(body: &mut Value, context: &str) {
    let Some(messages) = body.get_mut("messages").and_then(Value::as_array_mut) else {
        return;
    };
    match messages.first_mut() {
        Some(first) if first["role"] == "system" => {
            let existing = content_text(&first["content"]);
            first["content"] = json!(format!("{context}\n\n{existing}"));
        }
        _ => messages.insert(0, json!({"role": "system", "content": context})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_lose_their_trailing_slash_and_version() {
        assert_eq!(
            trim_base("https://api.groq.com/openai/v1/"),
            "https://api.groq.com/openai"
        );
        assert_eq!(
            trim_base("http://localhost:11434"),
            "http://localhost:11434"
        );
    }

    #[test]
    fn memory_merges_into_a_first_system_message() {
        let mut b = json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]});
        inject_memory(&mut b, "[Hippocortex Memory Context]\n[facts] x");
        assert_eq!(b["messages"].as_array().unwrap().len(), 2);
        assert!(b["messages"][0]["content"]
            .as_str()
            .unwrap()
            .ends_with("be brief"));
        let mut b = json!({"messages": [{"role": "user", "content": "hi"}]});
        inject_memory(&mut b, "ctx");
        assert_eq!(
            b["messages"][0],
            json!({"role": "system", "content": "ctx"})
        );
    }

    #[test]
    fn streamed_tool_calls_are_assembled() {
        let mut a = Assembled::default();
        a.push(r#"{"choices":[{"delta":{"content":"he"}}]}"#);
        a.push(r#"{"choices":[{"delta":{"content":"llo","tool_calls":[{"index":0,"id":"c1","function":{"name":"add","arguments":"{\"a\":"}}]}}]}"#);
        a.push(
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}"#,
        );
        assert_eq!(a.text, "hello");
        let calls = a.tool_calls();
        assert_eq!(calls[0].name, "add");
        assert_eq!(calls[0].arguments, json!({"a": 1}));
    }
}
