//! Loopback model peers for the invoke tests: a small OpenAI chat-completions server and a small
//! Anthropic messages server, both with streaming and tool calls, plus the MCP server from the
//! pinned `mcp` package run with the test Python.
//!
//! The model peers are deterministic and steered by markers in the last user message:
//! `[fail]` → HTTP 500; `[slow]` → no answer until the caller gives up (at most 60 s);
//! `[hold]` (streaming) → one chunk, then nothing until `release()` or the caller hangs up;
//! `[tool:NAME {json}]` → a call of tool NAME with those arguments; anything else → `echo: <text>`.
//! After a tool result they answer `tool said: <result>`. Every request body is kept for
//! inspection; usage is always 11 prompt + 7 completion tokens.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

type PeerBody = UnsyncBoxBody<Bytes, Infallible>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
}

struct Shared {
    wire: Wire,
    requests: Mutex<Vec<Value>>,
    release: Notify,
    /// Held streams whose caller hung up before `release`.
    cancelled: AtomicUsize,
}

/// A model API on 127.0.0.1.
pub struct ModelPeer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl ModelPeer {
    pub async fn start(wire: Wire) -> ModelPeer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            wire,
            requests: Mutex::new(Vec::new()),
            release: Notify::new(),
            cancelled: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(s.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        ModelPeer { addr, shared, task }
    }

    /// The base URL to configure engram with.
    pub fn base_url(&self) -> String {
        match self.shared.wire {
            Wire::OpenAi => format!("http://{}/v1", self.addr),
            Wire::Anthropic => format!("http://{}", self.addr),
        }
    }

    /// Every request body received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Lets held streams finish.
    pub fn release(&self) {
        self.shared.release.notify_waiters();
    }

    /// Held streams whose caller went away.
    pub fn cancelled(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }
}

impl Drop for ModelPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(status: u16, v: &Value) -> Response<PeerBody> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed_unsync());
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// What the conversation asks of the model.
enum Want {
    Text(String),
    Tool(String, Value),
    Fail,
    Slow,
    Hold,
}

fn decide(wire: Wire, body: &Value) -> Want {
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    let last = msgs.last().cloned().unwrap_or(Value::Null);
    // A tool result came back: report it.
    let tool_result = match wire {
        Wire::OpenAi if last["role"] == "tool" => last["content"].as_str().map(str::to_string),
        Wire::Anthropic => last["content"].as_array().and_then(|blocks| {
            blocks
                .iter()
                .find(|b| b["type"] == "tool_result")
                .map(|b| b["content"].as_str().unwrap_or("").to_string())
        }),
        _ => None,
    };
    if let Some(r) = tool_result {
        return Want::Text(format!("tool said: {r}"));
    }
    let text = last["content"].as_str().unwrap_or("").to_string();
    if text.contains("[fail]") {
        Want::Fail
    } else if text.contains("[slow]") {
        Want::Slow
    } else if text.contains("[hold]") {
        Want::Hold
    } else if let Some(start) = text.find("[tool:") {
        let rest = &text[start + 6..];
        let end = rest.rfind(']').unwrap_or(rest.len());
        let (name, args) = rest[..end].split_once(' ').unwrap_or((&rest[..end], "{}"));
        Want::Tool(
            name.to_string(),
            serde_json::from_str(args).unwrap_or(json!({})),
        )
    } else {
        Want::Text(format!("echo: {text}"))
    }
}

async fn handle(
    s: Arc<Shared>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<PeerBody>, Infallible> {
    let bytes = req.into_body().collect().await.map(|b| b.to_bytes());
    let body: Value = bytes
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    s.requests.lock().unwrap().push(body.clone());
    let stream = body["stream"].as_bool().unwrap_or(false);
    let want = decide(s.wire, &body);
    if let Want::Fail = want {
        return Ok(full(
            500,
            &json!({"error": {"message": "the model is overloaded", "type": "server_error"}}),
        ));
    }
    if let Want::Slow = want {
        tokio::time::sleep(Duration::from_secs(60)).await;
        return Ok(full(500, &json!({"error": {"message": "too slow"}})));
    }
    if !stream {
        let text = match &want {
            Want::Text(t) => t.clone(),
            Want::Hold => "held".into(),
            _ => String::new(),
        };
        let tool = match &want {
            Want::Tool(n, a) => Some((n.clone(), a.clone())),
            _ => None,
        };
        return Ok(full(200, &whole(s.wire, &text, tool)));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    }))
    .boxed_unsync();
    tokio::spawn(produce(s, want, tx));
    let mut r = Response::new(body);
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    Ok(r)
}

/// A non-streamed answer.
fn whole(wire: Wire, text: &str, tool: Option<(String, Value)>) -> Value {
    match wire {
        Wire::OpenAi => {
            let mut msg = json!({"role": "assistant", "content": text});
            if let Some((n, a)) = tool {
                msg["content"] = Value::Null;
                msg["tool_calls"] = json!([{"id": "call_1", "type": "function",
                    "function": {"name": n, "arguments": a.to_string()}}]);
            }
            json!({"id": "cmpl_1", "object": "chat.completion", "choices": [
                {"index": 0, "message": msg, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})
        }
        Wire::Anthropic => {
            let mut content = vec![];
            if !text.is_empty() {
                content.push(json!({"type": "text", "text": text}));
            }
            if let Some((n, a)) = tool {
                content.push(json!({"type": "tool_use", "id": "toolu_1", "name": n, "input": a}));
            }
            json!({"id": "msg_1", "type": "message", "role": "assistant", "content": content,
                   "stop_reason": "end_turn", "usage": {"input_tokens": 11, "output_tokens": 7}})
        }
    }
}

fn sse(event: Option<&str>, data: &Value) -> Bytes {
    match event {
        Some(e) => Bytes::from(format!("event: {e}\ndata: {data}\n\n")),
        None => Bytes::from(format!("data: {data}\n\n")),
    }
}

fn text_frame(wire: Wire, t: &str) -> Bytes {
    match wire {
        Wire::OpenAi => sse(
            None,
            &json!({"choices": [{"index": 0, "delta": {"content": t}}]}),
        ),
        Wire::Anthropic => sse(
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": t}}),
        ),
    }
}

/// Writes a streamed answer.
async fn produce(s: Arc<Shared>, want: Want, tx: mpsc::Sender<Bytes>) {
    let wire = s.wire;
    let mut frames = Vec::new();
    if wire == Wire::Anthropic {
        frames.push(sse(
            Some("message_start"),
            &json!({"type": "message_start",
            "message": {"id": "msg_1", "role": "assistant", "content": [],
                        "usage": {"input_tokens": 11, "output_tokens": 0}}}),
        ));
        frames.push(sse(
            Some("content_block_start"),
            &json!({"type": "content_block_start",
            "index": 0, "content_block": {"type": "text", "text": ""}}),
        ));
    }
    match &want {
        Want::Hold => {
            frames.push(text_frame(wire, "first "));
            for f in frames.drain(..) {
                if tx.send(f).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = s.release.notified() => frames.push(text_frame(wire, "second")),
                _ = tx.closed() => {
                    s.cancelled.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                _ = tokio::time::sleep(Duration::from_secs(60)) => return,
            }
        }
        Want::Text(t) => {
            for piece in t.split_inclusive(' ') {
                frames.push(text_frame(wire, piece));
            }
        }
        Want::Tool(name, args) => {
            let a = args.to_string();
            let (first, second) = a.split_at(a.len() / 2);
            match wire {
                Wire::OpenAi => {
                    frames.push(sse(
                        None,
                        &json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                        {"index": 0, "id": "call_1", "type": "function",
                         "function": {"name": name, "arguments": first}}]}}]}),
                    ));
                    frames.push(sse(
                        None,
                        &json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                        {"index": 0, "function": {"arguments": second}}]}}]}),
                    ));
                }
                Wire::Anthropic => {
                    frames.push(sse(
                        Some("content_block_stop"),
                        &json!({"type": "content_block_stop", "index": 0}),
                    ));
                    frames.push(sse(
                        Some("content_block_start"),
                        &json!({"type": "content_block_start",
                        "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1",
                        "name": name, "input": {}}}),
                    ));
                    for part in [first, second] {
                        frames.push(sse(
                            Some("content_block_delta"),
                            &json!({
                            "type": "content_block_delta", "index": 1,
                            "delta": {"type": "input_json_delta", "partial_json": part}}),
                        ));
                    }
                }
            }
        }
        Want::Fail | Want::Slow => {}
    }
    match wire {
        Wire::OpenAi => {
            frames.push(sse(
                None,
                &json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            ));
            frames.push(sse(
                None,
                &json!({"choices": [],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}),
            ));
            frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
        }
        Wire::Anthropic => {
            frames.push(sse(
                Some("content_block_stop"),
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            frames.push(sse(
                Some("message_delta"),
                &json!({"type": "message_delta",
                "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}}),
            ));
            frames.push(sse(Some("message_stop"), &json!({"type": "message_stop"})));
        }
    }
    for f in frames {
        if tx.send(f).await.is_err() {
            return;
        }
    }
}

/// The MCP server of `tests/python/mcp_server.py` (the pinned `mcp` package) on a free port.
pub struct McpPeer {
    pub url: String,
    child: Child,
}

impl McpPeer {
    pub async fn start() -> McpPeer {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/mcp_server.py");
        let child = Command::new(crate::support::python())
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the MCP server starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        crate::support::wait_for(
            "the MCP server to listen",
            Duration::from_secs(30),
            || async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) },
        )
        .await;
        McpPeer {
            url: format!("http://127.0.0.1:{port}/mcp"),
            child,
        }
    }
}

impl Drop for McpPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the SSE events `(event, data)` of a response, one at a time.
pub struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> SseReader {
        SseReader {
            resp,
            buf: String::new(),
        }
    }

    /// The next event; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(pos) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..pos + 2).collect();
                let mut event = String::new();
                let mut data = String::new();
                for line in raw.lines() {
                    if let Some(e) = line.strip_prefix("event: ") {
                        event = e.to_string();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = d.to_string();
                    }
                }
                return Some((event, data));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.resp.chunk())
                .await
                .expect("the stream makes progress")
                .expect("the stream reads")?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Every remaining event.
    pub async fn rest(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}
