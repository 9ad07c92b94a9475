//! The Anthropic messages provider: `POST {base}/v1/messages` with `tools` (tool_use /
//! tool_result blocks) and `stream: true` SSE (`content_block_*` events).
//!
//! Invariants: consecutive tool results are sent as one user message (the API requires
//! alternating roles); streamed `input_json_delta` fragments are joined per content block and
//! parsed once the stream ends; token usage is input + output as reported.

use super::{json_body, send};
use super::{read_events, Flow};
use crate::runtime::{DeltaSink, ModelReply, ModelRequest, ProviderError, Role, ToolCall};
use serde_json::{json, Value};

const NAME: &str = "Anthropic";
const VERSION: &str = "2023-06-01";

pub fn endpoint(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1") {
        format!("{base}/messages")
    } else {
        format!("{base}/v1/messages")
    }
}

/// The request body in Anthropic's format.
pub fn body(req: &ModelRequest) -> Value {
    let mut messages: Vec<Value> = Vec::new();
    for m in &req.messages {
        match m.role {
            Role::User => messages.push(json!({"role": "user", "content": m.content})),
            Role::Assistant => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                for c in &m.tool_calls {
                    let input = if c.arguments.is_object() {
                        c.arguments.clone()
                    } else {
                        json!({})
                    };
                    blocks.push(
                        json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}),
                    );
                }
                if blocks.is_empty() {
                    blocks.push(json!({"type": "text", "text": "(no answer)"}));
                }
                messages.push(json!({"role": "assistant", "content": blocks}));
            }
            Role::Tool => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id,
                    "content": m.content,
                    "is_error": m.is_error,
                });
                let last_is_results = messages.last().is_some_and(|l| {
                    l["role"] == "user"
                        && l["content"]
                            .as_array()
                            .is_some_and(|c| c.iter().all(|b| b["type"] == "tool_result"))
                });
                if last_is_results {
                    if let Some(arr) = messages
                        .last_mut()
                        .and_then(|l| l["content"].as_array_mut())
                    {
                        arr.push(block);
                    }
                } else {
                    messages.push(json!({"role": "user", "content": [block]}));
                }
            }
        }
    }
    let mut body = json!({
        "model": req.model,
        "system": req.system,
        "max_tokens": req.max_tokens,
        "messages": messages,
        "stream": req.stream,
    });
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(
                |t| json!({"name": t.name, "description": t.description, "input_schema": t.schema}),
            )
            .collect();
    }
    body
}

pub async fn complete(
    http: &reqwest::Client,
    base: &str,
    key: Option<&str>,
    req: &ModelRequest,
    sink: Option<&DeltaSink>,
) -> Result<ModelReply, ProviderError> {
    let mut rb = http
        .post(endpoint(base))
        .header("anthropic-version", VERSION)
        .json(&body(req));
    if let Some(k) = key {
        rb = rb.header("x-api-key", k);
    }
    let resp = send(NAME, rb).await?;
    if req.stream {
        read_stream(resp, sink).await
    } else {
        parse_message(&json_body(NAME, resp).await?)
    }
}

fn usage_total(u: &Value) -> Option<u64> {
    let i = u.get("input_tokens").and_then(Value::as_u64);
    let o = u.get("output_tokens").and_then(Value::as_u64);
    match (i, o) {
        (None, None) => None,
        (i, o) => Some(i.unwrap_or(0) + o.unwrap_or(0)),
    }
}

/// A non-streamed message.
pub fn parse_message(v: &Value) -> Result<ModelReply, ProviderError> {
    let blocks = v.get("content").and_then(Value::as_array).ok_or_else(|| {
        ProviderError::Upstream(format!(
            "the {NAME} model API answered without a content array"
        ))
    })?;
    let mut reply = ModelReply::default();
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => reply.text.push_str(b["text"].as_str().unwrap_or("")),
            Some("tool_use") => reply.tool_calls.push(ToolCall {
                id: b["id"].as_str().unwrap_or("").to_string(),
                name: b["name"].as_str().unwrap_or("").to_string(),
                arguments: b.get("input").cloned().unwrap_or_else(|| json!({})),
            }),
            _ => {}
        }
    }
    reply.tokens = v.get("usage").and_then(usage_total);
    Ok(reply)
}

enum Block {
    Text,
    Tool {
        id: String,
        name: String,
        json: String,
    },
    Other,
}

async fn read_stream(
    mut resp: reqwest::Response,
    sink: Option<&DeltaSink>,
) -> Result<ModelReply, ProviderError> {
    let mut reply = ModelReply::default();
    let mut blocks: Vec<(u64, Block)> = Vec::new();
    let (mut input_tokens, mut output_tokens) = (None::<u64>, None::<u64>);
    read_events(&mut resp, NAME, |event, data| {
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(_) if event == "ping" => return Ok(Flow::More),
            Err(e) => {
                return Err(ProviderError::Upstream(format!(
                    "the {NAME} model stream sent invalid JSON: {e}"
                )))
            }
        };
        let kind = v["type"].as_str().unwrap_or(event).to_string();
        match kind.as_str() {
            "message_start" => {
                input_tokens = v
                    .pointer("/message/usage/input_tokens")
                    .and_then(Value::as_u64);
            }
            "content_block_start" => {
                let idx = v["index"].as_u64().unwrap_or(0);
                let cb = &v["content_block"];
                let block = match cb["type"].as_str() {
                    Some("text") => {
                        if let Some(t) = cb["text"].as_str().filter(|t| !t.is_empty()) {
                            reply.text.push_str(t);
                            crate::runtime::emit(sink, t);
                        }
                        Block::Text
                    }
                    Some("tool_use") => Block::Tool {
                        id: cb["id"].as_str().unwrap_or("").to_string(),
                        name: cb["name"].as_str().unwrap_or("").to_string(),
                        json: String::new(),
                    },
                    _ => Block::Other,
                };
                blocks.push((idx, block));
            }
            "content_block_delta" => {
                let idx = v["index"].as_u64().unwrap_or(0);
                let delta = &v["delta"];
                let block = blocks
                    .iter_mut()
                    .rev()
                    .find(|(i, _)| *i == idx)
                    .map(|(_, b)| b);
                match (delta["type"].as_str(), block) {
                    (Some("text_delta"), _) => {
                        let t = delta["text"].as_str().unwrap_or("");
                        if !t.is_empty() {
                            reply.text.push_str(t);
                            crate::runtime::emit(sink, t);
                        }
                    }
                    (Some("input_json_delta"), Some(Block::Tool { json, .. })) => {
                        json.push_str(delta["partial_json"].as_str().unwrap_or(""));
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(o) = v.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                    output_tokens = Some(o);
                }
            }
            "message_stop" => return Ok(Flow::Done),
            "error" => {
                return Err(ProviderError::Upstream(format!(
                    "the {NAME} model stream reported an error: {}",
                    v.pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown error")
                )))
            }
            _ => {}
        }
        Ok(Flow::More)
    })
    .await?;
    for (_, b) in blocks {
        if let Block::Tool { id, name, json } = b {
            let arguments = if json.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(&json).unwrap_or(Value::String(json))
            };
            reply.tool_calls.push(ToolCall {
                id,
                name,
                arguments,
            });
        }
    }
    if input_tokens.is_some() || output_tokens.is_some() {
        reply.tokens = Some(input_tokens.unwrap_or(0) + output_tokens.unwrap_or(0));
    }
    Ok(reply)
}
