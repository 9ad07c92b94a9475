//! The OpenAI-compatible chat-completions provider (OpenAI, vLLM, llama.cpp, Ollama, …):
//! `POST {base}/chat/completions`, with tools and `stream: true` SSE.
//!
//! Invariants: tool-call fragments of a stream are assembled by their `index` (ids and names
//! arrive in the first fragment, arguments across many); arguments that are not valid JSON are
//! passed on as a string rather than dropped.

use super::{json_body, send};
use super::{read_events, Flow};
use crate::runtime::{DeltaSink, ModelReply, ModelRequest, ProviderError, Role, ToolCall};
use serde_json::{json, Value};

const NAME: &str = "OpenAI-compatible";

/// `{base}/chat/completions`; a base without a `/v1`-style version gets `/v1` added.
pub fn endpoint(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let last = base.rsplit('/').next().unwrap_or("");
    let versioned = last.len() >= 2
        && last.starts_with('v')
        && last[1..].chars().next().is_some_and(|c| c.is_ascii_digit());
    if versioned {
        format!("{base}/chat/completions")
    } else {
        format!("{base}/v1/chat/completions")
    }
}

/// The request body in OpenAI's format.
pub fn body(req: &ModelRequest) -> Value {
    let mut messages = vec![json!({"role": "system", "content": req.system})];
    for m in &req.messages {
        messages.push(match m.role {
            Role::User => json!({"role": "user", "content": m.content}),
            Role::Assistant if m.tool_calls.is_empty() => {
                json!({"role": "assistant", "content": m.content})
            }
            Role::Assistant => json!({
                "role": "assistant",
                "content": if m.content.is_empty() { Value::Null } else { json!(m.content) },
                "tool_calls": m.tool_calls.iter().map(|c| json!({
                    "id": c.id, "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments.to_string()},
                })).collect::<Vec<_>>(),
            }),
            Role::Tool => json!({
                "role": "tool",
                "tool_call_id": m.tool_call_id,
                "content": m.content,
            }),
        });
    }
    let mut body = json!({
        "model": req.model,
        "messages": messages,
        "max_tokens": req.max_tokens,
        "stream": req.stream,
    });
    if req.stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.schema,
                }})
            })
            .collect();
    }
    body
}

fn parse_arguments(s: &str) -> Value {
    if s.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

/// Calls the model; text deltas go to `sink` as they arrive when streaming.
pub async fn complete(
    http: &reqwest::Client,
    base: &str,
    key: Option<&str>,
    req: &ModelRequest,
    sink: Option<&DeltaSink>,
) -> Result<ModelReply, ProviderError> {
    let mut rb = http.post(endpoint(base)).json(&body(req));
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    let resp = send(NAME, rb).await?;
    if req.stream {
        read_stream(resp, sink).await
    } else {
        parse_completion(&json_body(NAME, resp).await?)
    }
}

/// A non-streamed completion.
pub fn parse_completion(v: &Value) -> Result<ModelReply, ProviderError> {
    let msg = v.pointer("/choices/0/message").ok_or_else(|| {
        ProviderError::Upstream(format!(
            "the {NAME} model API answered without choices[0].message"
        ))
    })?;
    let text = msg
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let tool_calls = msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| ToolCall {
                    id: c["id"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("call_{i}")),
                    name: c
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    arguments: parse_arguments(
                        c.pointer("/function/arguments")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                    ),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ModelReply {
        text,
        tool_calls,
        tokens: v.pointer("/usage/total_tokens").and_then(Value::as_u64),
    })
}

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

async fn read_stream(
    mut resp: reqwest::Response,
    sink: Option<&DeltaSink>,
) -> Result<ModelReply, ProviderError> {
    let mut reply = ModelReply::default();
    let mut calls: Vec<PartialCall> = Vec::new();
    read_events(&mut resp, NAME, |_, data| {
        if data.trim() == "[DONE]" {
            return Ok(Flow::Done);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::Upstream(format!("the {NAME} model stream sent invalid JSON: {e}"))
        })?;
        if let Some(err) = v.get("error") {
            return Err(ProviderError::Upstream(format!(
                "the {NAME} model stream reported an error: {}",
                err.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or(&err.to_string())
            )));
        }
        if let Some(t) = v.pointer("/usage/total_tokens").and_then(Value::as_u64) {
            reply.tokens = Some(t);
        }
        let Some(delta) = v.pointer("/choices/0/delta") else {
            return Ok(Flow::More);
        };
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            if !text.is_empty() {
                reply.text.push_str(text);
                crate::runtime::emit(sink, text);
            }
        }
        for c in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let i = c.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            if i > 127 {
                continue;
            }
            while calls.len() <= i {
                calls.push(PartialCall::default());
            }
            let p = &mut calls[i];
            if let Some(id) = c.get("id").and_then(Value::as_str) {
                p.id = id.to_string();
            }
            if let Some(n) = c.pointer("/function/name").and_then(Value::as_str) {
                p.name.push_str(n);
            }
            if let Some(a) = c.pointer("/function/arguments").and_then(Value::as_str) {
                p.arguments.push_str(a);
            }
        }
        Ok(Flow::More)
    })
    .await?;
    reply.tool_calls = calls
        .into_iter()
        .enumerate()
        .filter(|(_, p)| !p.name.is_empty())
        .map(|(i, p)| ToolCall {
            id: if p.id.is_empty() {
                format!("call_{i}")
            } else {
                p.id
            },
            name: p.name,
            arguments: parse_arguments(&p.arguments),
        })
        .collect();
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("http://h:1/v1"), "http://h:1/v1/chat/completions");
        assert_eq!(endpoint("http://h:1/"), "http://h:1/v1/chat/completions");
        assert_eq!(
            endpoint("http://h/openai/v1/"),
            "http://h/openai/v1/chat/completions"
        );
    }
}
