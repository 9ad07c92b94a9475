//! The memory gateway: `POST /v1/chat/completions`, OpenAI-compatible (docs/api.md "Memory
//! gateway"). An OpenAI client pointed at engram gets memory without an SDK: the last user
//! message is the synthesize query, the pack goes in as a system message, the call is proxied
//! (OpenAI-compatible upstreams as is, Anthropic translated), and the user message, the reply and
//! its tool calls are captured into the session.
//!
//! Invariants:
//! - Memory never breaks the call: if synthesize fails the request is proxied without it, and a
//!   capture failure is logged, not answered.
//! - Streams are passed through chunk by chunk as they arrive and captured once they end; a
//!   client that hangs up cancels the upstream call and what came is still captured.
//! - Errors are OpenAI-shaped (`{"error": {message, type, code}}`); an upstream failure keeps its
//!   status but never its body (`runtime::gateway`).

use crate::auth::{Principal, Scope};
use crate::error::Result;
use crate::http::response::full;
use crate::http::sse::channel_body;
use crate::http::{Ctx, Reply};
use crate::runtime::gateway::{self as gw, Failure, Upstream, Wire};
use crate::runtime::sse::SseParser;
use crate::runtime::{ModelReply, Note};
use crate::search::pack::SynthRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;

/// Token budget of the memory put into each call.
const MEMORY_TOKENS: u32 = 1500;

/// An error as OpenAI's API answers one.
#[derive(serde::Serialize)]
struct OpenAiError<'a> {
    error: OpenAiErrorBody<'a>,
}

#[derive(serde::Serialize)]
struct OpenAiErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    code: &'a str,
}

impl<'a> From<&'a Failure> for OpenAiError<'a> {
    fn from(f: &'a Failure) -> OpenAiError<'a> {
        OpenAiError {
            error: OpenAiErrorBody {
                message: &f.message,
                kind: f.kind,
                code: f.kind,
            },
        }
    }
}

fn openai_error(f: &Failure) -> Reply {
    let body = serde_json::to_value(OpenAiError::from(f)).unwrap_or_default();
    let mut r = Reply::stream(full(body.to_string()), "application/json");
    r.status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_GATEWAY);
    r
}

fn header_value(ctx: &Ctx, name: &str) -> Option<String> {
    ctx.header(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

pub async fn chat_completions(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::Read)?;
    p.require(Scope::Write)?;
    Ok(match run(ctx, p).await {
        Ok(r) => r,
        Err(f) => openai_error(&f),
    })
}

/// The memory context for `query`, and how many entries it holds (0 when memory failed).
async fn memory_context(
    ctx: &Ctx,
    p: &Principal,
    query: &str,
    agent: Option<String>,
) -> (String, usize) {
    let req = SynthRequest {
        query: Some(query.to_string()),
        agent_id: agent,
        max_tokens: MEMORY_TOKENS,
        ..SynthRequest::default()
    };
    match ctx.state.synthesize(&p.tenant_id, req).await {
        Ok(pack) if !pack.entries.is_empty() => {
            let mut text = String::from("[Hippocortex Memory Context]\n");
            for e in &pack.entries {
                text.push_str(&format!(
                    "[{}] {}\n",
                    e.section,
                    e.content.replace('\n', " ")
                ));
            }
            (text.trim_end().to_string(), pack.entries.len())
        }
        Ok(_) => (String::new(), 0),
        Err(e) => {
            tracing::warn!(error = %e, "gateway: memory unavailable; proxying without it");
            (String::new(), 0)
        }
    }
}

async fn run(ctx: Ctx, p: Principal) -> std::result::Result<Reply, Failure> {
    let mut body: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| Failure::bad_request(format!("the body must be a JSON object ({e})")))?;
    if !body.is_object() {
        return Err(Failure::bad_request("the body must be a JSON object"));
    }
    if !body["messages"].as_array().is_some_and(|m| !m.is_empty()) {
        return Err(Failure::bad_request(
            "messages: a non-empty array is required",
        ));
    }
    if let Some(m) = header_value(&ctx, "x-llm-model") {
        body["model"] = json!(m);
    }
    let Some(model) = body["model"].as_str().map(str::to_string) else {
        return Err(Failure::bad_request(
            "model: a string is required (or X-LLM-Model)",
        ));
    };
    let stream = body["stream"].as_bool().unwrap_or(false);
    let session = header_value(&ctx, "x-hippocortex-session")
        .filter(|s| s.len() <= 256)
        .unwrap_or_else(|| crate::ids::new("sess"));
    let agent = header_value(&ctx, "x-hippocortex-agent").filter(|s| s.len() <= 256);
    let up = gw::resolve(
        &ctx.state.runtime,
        &ctx.state.config.outbound,
        ctx.header("x-llm-base-url"),
        ctx.header("x-llm-api-key"),
        ctx.header("x-llm-provider"),
    )
    .await?;
    let user = gw::last_user_message(&body);
    let (context, entries) = match &user {
        Some(q) => memory_context(&ctx, &p, q, agent.clone()).await,
        None => (String::new(), 0),
    };
    if !context.is_empty() {
        gw::inject_memory(&mut body, &context);
    }
    let capture = Capture {
        state: ctx.state.clone(),
        principal: p,
        session: session.clone(),
        agent,
        user,
    };
    let mut reply = match (up.wire, stream) {
        (Wire::OpenAi, false) => openai_plain(&up, &body, capture).await?,
        (Wire::OpenAi, true) => openai_stream(&up, &body, capture).await?,
        (Wire::Anthropic, s) => anthropic(&up, &body, &model, s, capture).await?,
    };
    if let Ok(v) = HeaderValue::from_str(&session) {
        reply = reply.header(HeaderName::from_static("x-hippocortex-session"), v);
    }
    Ok(reply.header(
        HeaderName::from_static("x-hippocortex-memory-entries"),
        HeaderValue::from(entries),
    ))
}

/// What the gateway captures once the answer is known.
struct Capture {
    state: Arc<crate::app::AppState>,
    principal: Principal,
    session: String,
    agent: Option<String>,
    user: Option<String>,
}

impl Capture {
    async fn store(self, reply: &ModelReply) {
        let meta = match &self.agent {
            Some(a) => json!({"agentId": a, "source": "gateway"}),
            None => json!({"source": "gateway"}),
        };
        let mut events = Vec::new();
        if let Some(u) = &self.user {
            events.push(
                json!({"type": "message", "sessionId": self.session, "metadata": meta,
                               "payload": {"role": "user", "content": u}}),
            );
        }
        if !reply.text.is_empty() {
            events.push(
                json!({"type": "message", "sessionId": self.session, "metadata": meta,
                               "payload": {"role": "assistant", "content": reply.text}}),
            );
        }
        for c in &reply.tool_calls {
            events.push(
                json!({"type": "tool_call", "sessionId": self.session, "metadata": meta,
                               "payload": {"tool_name": c.name, "input": c.arguments}}),
            );
        }
        if events.is_empty() {
            return;
        }
        if let Err(e) = crate::capture::capture_events(&self.state, &self.principal, events).await {
            tracing::warn!(error = %e, "gateway: the exchange could not be captured");
        }
    }
}

fn post(up: &Upstream, body: &Value) -> reqwest::RequestBuilder {
    let mut rb = up.http.post(&up.url).json(body);
    if let Some(k) = &up.key {
        rb = rb.bearer_auth(k);
    }
    rb
}

async fn openai_plain(
    up: &Upstream,
    body: &Value,
    capture: Capture,
) -> std::result::Result<Reply, Failure> {
    let resp = post(up, body)
        .send()
        .await
        .map_err(|e| gw::send_failure(&e))?;
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        return Err(gw::status_failure(status));
    }
    let bytes = resp.bytes().await.map_err(|e| gw::send_failure(&e))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
        Failure::upstream("the upstream model API answered something that is not JSON")
    })?;
    capture.store(&gw::reply_of_completion(&v)).await;
    Ok(Reply::stream(full(bytes), "application/json"))
}

async fn openai_stream(
    up: &Upstream,
    body: &Value,
    capture: Capture,
) -> std::result::Result<Reply, Failure> {
    let mut resp = post(up, body)
        .send()
        .await
        .map_err(|e| gw::send_failure(&e))?;
    if !resp.status().is_success() {
        return Err(gw::status_failure(resp.status().as_u16()));
    }
    let (tx, out) = channel_body(64);
    tokio::spawn(async move {
        let mut parser = SseParser::default();
        let mut assembled = gw::Assembled::default();
        loop {
            let chunk = tokio::select! {
                c = resp.chunk() => match c {
                    Ok(Some(c)) => c,
                    Ok(None) | Err(_) => break,
                },
                // The client left while the upstream was quiet.
                _ = tx.closed() => break,
            };
            for (_, data) in parser.push(&chunk) {
                if data.trim() != "[DONE]" {
                    assembled.push(&data);
                }
            }
            // The bytes go on as they came; a closed channel means the client left: dropping
            // the upstream response cancels the call.
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
        drop(resp);
        let reply = ModelReply {
            tool_calls: assembled.tool_calls(),
            text: assembled.text,
            tokens: None,
        };
        capture.store(&reply).await;
    });
    Ok(Reply::stream(out, "text/event-stream"))
}

async fn anthropic(
    up: &Upstream,
    body: &Value,
    model: &str,
    stream: bool,
    capture: Capture,
) -> std::result::Result<Reply, Failure> {
    let req = gw::to_model_request(body, model, stream)?;
    let id = crate::ids::new("chatcmpl");
    let created = chrono::Utc::now().timestamp();
    if !stream {
        let reply = gw::call_anthropic(up, &req, None).await?;
        capture.store(&reply).await;
        let v = gw::completion_json(&id, model, created, &reply);
        return Ok(Reply::stream(full(v.to_string()), "application/json"));
    }
    let (tx, out) = channel_body(64);
    let (notes_tx, mut notes) = tokio::sync::mpsc::unbounded_channel::<Note>();
    let (model, up) = (model.to_string(), up.clone());
    tokio::spawn(async move {
        let frame = |v: Value| bytes::Bytes::from(format!("data: {v}\n\n"));
        let _ = tx
            .send(frame(gw::chunk_json(
                &id,
                &model,
                created,
                json!({"role": "assistant", "content": ""}),
                None,
            )))
            .await;
        let call = gw::call_anthropic(&up, &req, Some(&notes_tx));
        tokio::pin!(call);
        // Text the client was sent (kept for the capture if it hangs up).
        let mut sent = String::new();
        let mut client_left = false;
        let result = loop {
            tokio::select! {
                r = &mut call => break Some(r),
                _ = tx.closed() => {
                    client_left = true;
                    break None;
                }
                Some(note) = notes.recv() => {
                    if let Note::Delta(text) = note {
                        let f = frame(gw::chunk_json(&id, &model, created, json!({"content": text}), None));
                        if tx.send(f).await.is_err() {
                            client_left = true;
                            break None;
                        }
                        sent.push_str(&text);
                    }
                }
            }
        };
        // Deltas still queued when the call ended go out before the last chunk.
        while let Ok(note) = notes.try_recv() {
            if let Note::Delta(text) = note {
                if !client_left {
                    let f = frame(gw::chunk_json(
                        &id,
                        &model,
                        created,
                        json!({"content": text}),
                        None,
                    ));
                    client_left = tx.send(f).await.is_err();
                }
                sent.push_str(&text);
            }
        }
        let reply = match result {
            Some(Ok(reply)) => {
                if !client_left {
                    let delta = if reply.tool_calls.is_empty() {
                        json!({})
                    } else {
                        json!({"tool_calls": gw::openai_tool_calls(&reply.tool_calls)})
                    };
                    let finish = if reply.tool_calls.is_empty() {
                        "stop"
                    } else {
                        "tool_calls"
                    };
                    let _ = tx
                        .send(frame(gw::chunk_json(
                            &id,
                            &model,
                            created,
                            delta,
                            Some(finish),
                        )))
                        .await;
                    let _ = tx
                        .send(bytes::Bytes::from_static(b"data: [DONE]\n\n"))
                        .await;
                }
                reply
            }
            Some(Err(f)) => {
                let err = serde_json::to_value(OpenAiError::from(&f)).unwrap_or_default();
                let _ = tx.send(frame(err)).await;
                let _ = tx
                    .send(bytes::Bytes::from_static(b"data: [DONE]\n\n"))
                    .await;
                ModelReply::default()
            }
            // The client hung up: the call is dropped (cancelled); what came is kept.
            None => ModelReply {
                text: sent,
                ..ModelReply::default()
            },
        };
        capture.store(&reply).await;
    });
    Ok(Reply::stream(out, "text/event-stream"))
}
