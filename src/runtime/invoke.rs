//! One invocation of an agent: the memory loop around the model call, the tool steps, the
//! timeout, and recording the turn (streaming is in `streaming.rs`).
//!
//! Order of a turn: recall the agent's memory and put it in the system prompt with the agent's
//! instruction → load the session history within its budget → connect the project's MCP
//! connectors → call the model, executing tool calls for at most `MAX_STEPS` rounds → record the
//! turn (messages, invocation row, counters, memory events).
//!
//! Invariants:
//! - The work runs on its own task, so a turn is recorded whatever happens to the client:
//!   completed, timed out (504), failed upstream (502) or cancelled by a disconnect mid-stream
//!   (what was produced so far is what gets recorded).
//! - Everything written for a turn commits in one transaction, shared with the turns finishing
//!   at the same time (`recorder`, `store::sessions::record_turns`); the reply is sent after it.

use super::history::{self, count_tokens};
use super::mcp::{ConnectorError, Toolbox};
use super::providers::{anthropic, offline, openai};
use super::{DeltaSink, ModelReply, ModelRequest, Msg, Note, ProviderError, Runtime, ToolDef};
use crate::app::AppState;
use crate::auth::Principal;
use crate::config::ProviderKind;
use crate::error::{Error, Result};
use crate::http::Reply;
use crate::limits::{Quota, Reservation};
use crate::search::pack::{synthesize_pack, SynthRequest};
use crate::store::connectors::Connector;
use crate::store::sessions::{self, StoredMessage, Turn};
use crate::store::{agents, connectors};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most model calls in one turn (each tool round costs one).
pub const MAX_STEPS: usize = 8;
/// Most memory entries put into the system prompt.
const MEMORY_ENTRIES: usize = 8;
/// Token budget of the memory synthesized into the system prompt.
const MEMORY_TOKENS: u32 = 1000;
/// Tokens of the memory header `system_prompt` adds (and the list markers).
const SYSTEM_HEADER_TOKENS: u64 = 32;
/// Most characters of a tool result kept in a memory event.
const EVENT_RESULT_CHARS: usize = 8192;
/// Largest answer asked of an upstream model.
const MAX_OUTPUT_TOKENS: u32 = 4096;

/// A validated invoke request.
#[derive(Clone, Debug)]
pub struct InvokeInput {
    pub message: String,
    pub session_id: Option<String>,
    pub stream: bool,
    /// Per-call timeout override (seconds).
    pub timeout: Option<u64>,
}

/// Who invokes, and the request's identity.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    pub request_id: String,
    pub started: Instant,
}

/// What invocation needs of an agent.
#[derive(Clone, Debug)]
struct AgentRow {
    id: String,
    model: String,
    instruction: String,
}

/// One memory event of a turn, before validation by the capture path.
#[derive(Clone, Debug)]
struct TurnEvent {
    kind: &'static str,
    payload: Value,
}

/// Everything prepared before the model is called.
pub(super) struct Turnkit {
    caller: Caller,
    agent: AgentRow,
    rules: Vec<offline::Rule>,
    provider: ProviderKind,
    session_id: String,
    trace_id: String,
    message: String,
    system: String,
    memory: Vec<String>,
    history: Vec<Msg>,
    /// Tokens of everything sent on the first call (system prompt, history, message).
    prompt_tokens: u64,
    message_tokens: u64,
    connectors: Vec<Connector>,
    stream: bool,
    pub(super) deadline: Instant,
    pub(super) timeout_secs: u64,
}

/// What the turn produced so far (kept when it is cut short).
#[derive(Default)]
pub(super) struct Progress {
    pub(super) text: String,
    tools_called: Vec<Value>,
    events: Vec<TurnEvent>,
    upstream_tokens: Option<u64>,
    /// Our own count, used when the upstream does not report usage: every call's input plus
    /// every output.
    counted_tokens: u64,
    /// Tokens of the model's text (all steps).
    reply_tokens: u64,
    connector_errors: Vec<ConnectorError>,
}

/// How a turn ended.
pub(super) enum End {
    Completed,
    Failed(ProviderError),
    TimedOut,
    Cancelled,
}

impl End {
    fn status(&self) -> &'static str {
        match self {
            End::Completed => "completed",
            End::Failed(_) => "error",
            End::TimedOut => "timeout",
            End::Cancelled => "cancelled",
        }
    }
}

/// Runs an invocation of `agent_ref` (id or slug) and answers it (JSON or SSE).
pub async fn invoke(
    state: Arc<AppState>,
    caller: Caller,
    agent_ref: String,
    input: InvokeInput,
    reservation: Reservation,
) -> Result<Reply> {
    let kit = prepare(&state, caller, agent_ref, input).await?;
    if kit.stream {
        return Ok(super::streaming::stream(state, kit, reservation));
    }
    // On its own task: a client that hangs up does not stop the turn from being recorded.
    let task = tokio::spawn(async move {
        let mut progress = Progress::default();
        let end = {
            let work = converse(&state.runtime, &kit, None, &mut progress);
            match tokio::time::timeout_at(kit.deadline.into(), work).await {
                Ok(Ok(())) => End::Completed,
                Ok(Err(e)) => End::Failed(e),
                Err(_) => End::TimedOut,
            }
        };
        let body = finish(&state, &kit, &progress, &end, reservation).await;
        (end, body, kit.timeout_secs)
    });
    let (end, body, timeout_secs) = task.await.map_err(Error::internal)?;
    let body = body?;
    match end {
        End::Completed | End::Cancelled => Ok(Reply::ok(body)),
        End::Failed(e) => Err(e.into_error()),
        End::TimedOut => Err(timeout_error(timeout_secs)),
    }
}

pub(super) fn timeout_error(secs: u64) -> Error {
    Error::Timeout(format!(
        "the agent did not answer within its timeout of {secs} s"
    ))
}

async fn prepare(
    state: &Arc<AppState>,
    caller: Caller,
    agent_ref: String,
    input: InvokeInput,
) -> Result<Turnkit> {
    let tenant = caller.principal.tenant_id.clone();
    // A session id made up here is new: it has no history to read.
    let new_session = input.session_id.is_none();
    let session_id = input
        .session_id
        .clone()
        .unwrap_or_else(|| crate::ids::new("sess"));
    let sid = session_id.clone();
    let state2 = state.clone();
    let recall = |agent_id: String| {
        synthesize_pack(
            state,
            &caller.principal.tenant_id,
            SynthRequest {
                query: Some(input.message.clone()),
                agent_id: Some(agent_id),
                max_tokens: MEMORY_TOKENS,
                ..SynthRequest::default()
            },
        )
    };
    // An `ag_…` id is known before the agent is loaded: recall its memory meanwhile (the search
    // is tenant-scoped, so an id of another tenant finds nothing and is answered 404 below).
    let early = agent_ref.starts_with("ag_").then(|| agent_ref.clone());
    let load = state.db.read(move |c| {
        let Some(agent) = agents::get(c, &tenant, &agent_ref)? else {
            return Ok(None);
        };
        let stored = if new_session {
            Vec::new()
        } else {
            state2
                .runtime
                .sessions
                .get_or_load(&tenant, &agent.id, &sid, || {
                    sessions::recent_messages(
                        c,
                        &tenant,
                        &agent.id,
                        &sid,
                        history::MAX_HISTORY_MESSAGES,
                        history::HISTORY_TOKEN_BUDGET,
                    )
                })?
        };
        let connectors = match &agent.project_id {
            Some(p) => connectors::list_for_project(c, &tenant, p)?,
            None => Vec::new(),
        };
        Ok(Some((agent, stored, connectors)))
    });
    let (loaded, early_pack) = match early {
        Some(id) => {
            let (l, p) = tokio::join!(load, recall(id));
            (l?, Some(p))
        }
        None => (load.await?, None),
    };
    let Some((agent, stored, connectors)) = loaded else {
        return Err(Error::NotFound("agent not found".into()));
    };
    // The memory loop, first half: what this agent's memory says about the message.
    let pack = match early_pack {
        Some(p) => p?,
        None => recall(agent.id.clone()).await?,
    };
    let memory_tokens = pack.used;
    let memory: Vec<String> = pack
        .entries
        .into_iter()
        .take(MEMORY_ENTRIES)
        .map(|e| e.content)
        .collect();
    let rules = match &agent.script {
        Some(rules) => {
            let v = serde_json::to_value(rules).map_err(Error::internal)?;
            offline::parse_script(&v).map_err(|e| {
                Error::Upstream(format!("the agent's offline script is unusable: {e}"))
            })?
        }
        None => Vec::new(),
    };
    let provider = if agent.script.is_some() {
        ProviderKind::Offline
    } else {
        state.runtime.provider_for(&agent.model)
    };
    let (history, history_tokens) = history::within_budget(&stored, history::HISTORY_TOKEN_BUDGET);
    let timeout_secs = input
        .timeout
        .unwrap_or(u64::from(agent.timeout_secs).max(1));
    let agent = AgentRow {
        id: agent.id,
        model: agent.model,
        instruction: agent.instruction,
    };
    let system = system_prompt(&agent, &memory);
    // Counted from parts whose counts are known (the pack's and the stored history's), so the
    // prompt is not re-tokenized on every call.
    let message_tokens = count_tokens(&input.message);
    let prompt_tokens = count_tokens(&agent.instruction)
        + SYSTEM_HEADER_TOKENS
        + memory_tokens
        + history_tokens
        + message_tokens;
    Ok(Turnkit {
        deadline: caller.started + Duration::from_secs(timeout_secs),
        caller,
        rules,
        provider,
        session_id,
        trace_id: crate::ids::new("trace"),
        message: input.message,
        system,
        memory,
        history,
        prompt_tokens,
        message_tokens,
        connectors,
        stream: input.stream,
        timeout_secs,
        agent,
    })
}

/// The agent's instruction, then what its memory recalled.
fn system_prompt(agent: &AgentRow, memory: &[String]) -> String {
    let mut s = agent.instruction.clone();
    if !memory.is_empty() {
        s.push_str(
            "\n\n## Memory\nRecalled from this agent's memory (earlier sessions); use it when it \
             is relevant:\n",
        );
        for m in memory {
            s.push_str("- ");
            s.push_str(&m.replace('\n', " "));
            s.push('\n');
        }
    }
    s
}

/// The model/tool loop. Partial results land in `progress` as they happen.
pub(super) async fn converse(
    rt: &Runtime,
    kit: &Turnkit,
    sink: Option<&DeltaSink>,
    progress: &mut Progress,
) -> std::result::Result<(), ProviderError> {
    let toolbox = Toolbox::connect(&rt.outbound, &kit.connectors, kit.deadline).await;
    progress.connector_errors = toolbox.errors.clone();
    let mut messages = kit.history.clone();
    messages.push(Msg::user(kit.message.clone()));
    progress.counted_tokens = kit.prompt_tokens;
    let result = steps(rt, kit, &toolbox, &mut messages, sink, progress).await;
    toolbox.close().await;
    result
}

async fn steps(
    rt: &Runtime,
    kit: &Turnkit,
    toolbox: &Toolbox,
    messages: &mut Vec<Msg>,
    sink: Option<&DeltaSink>,
    progress: &mut Progress,
) -> std::result::Result<(), ProviderError> {
    // What each call sends: the prompt, then what the turn added to the conversation.
    let mut conversation = kit.prompt_tokens;
    for step in 0..MAX_STEPS {
        if step > 0 {
            progress.counted_tokens += conversation;
        }
        // The last step offers no tools, so the model has to answer in words.
        let tools = if step + 1 == MAX_STEPS {
            Vec::new()
        } else {
            toolbox.tools.clone()
        };
        let reply = call_model(rt, kit, messages, tools, sink).await?;
        if let Some(t) = reply.tokens {
            *progress.upstream_tokens.get_or_insert(0) += t;
        }
        let t = count_tokens(&reply.text);
        progress.counted_tokens += t;
        progress.reply_tokens += t;
        conversation += t;
        progress.text.push_str(&reply.text);
        if reply.tool_calls.is_empty() {
            return Ok(());
        }
        messages.push(Msg::assistant(reply.text.clone(), reply.tool_calls.clone()));
        for call in &reply.tool_calls {
            let left = kit.deadline.saturating_duration_since(Instant::now());
            let started = Instant::now();
            let out = toolbox.call(&call.name, &call.arguments, left).await;
            let item = json!({
                "connector": out.connector,
                "tool": out.tool,
                "arguments": call.arguments,
                "is_error": out.is_error,
                "duration_ms": started.elapsed().as_millis() as u64,
            });
            progress.events.push(TurnEvent {
                kind: "tool_call",
                payload: json!({"connector": out.connector, "tool": out.tool,
                                "arguments": call.arguments}),
            });
            progress.events.push(TurnEvent {
                kind: "tool_result",
                payload: if out.is_error {
                    json!({"connector": out.connector, "tool": out.tool, "status": "error",
                           "error": clip(&out.output, EVENT_RESULT_CHARS)})
                } else {
                    json!({"connector": out.connector, "tool": out.tool, "status": "success",
                           "result": clip(&out.output, EVENT_RESULT_CHARS)})
                },
            });
            conversation += count_tokens(&out.output) + count_tokens(&call.arguments.to_string());
            if let Some(s) = sink {
                let _ = s.send(Note::Tool(item.clone()));
            }
            progress.tools_called.push(item);
            messages.push(Msg::tool(&call.id, out.output, out.is_error));
        }
    }
    Ok(())
}

async fn call_model(
    rt: &Runtime,
    kit: &Turnkit,
    messages: &[Msg],
    tools: Vec<ToolDef>,
    sink: Option<&DeltaSink>,
) -> std::result::Result<ModelReply, ProviderError> {
    if kit.provider == ProviderKind::Offline {
        if let Some(delay) = offline::delay(&kit.rules, messages) {
            tokio::time::sleep(delay).await;
        }
        return offline::complete(&kit.rules, &kit.memory, messages, sink);
    }
    let req = ModelRequest {
        model: kit.agent.model.clone(),
        system: kit.system.clone(),
        messages: messages.to_vec(),
        tools,
        stream: sink.is_some(),
        max_tokens: MAX_OUTPUT_TOKENS,
    };
    let missing = |what: &str| {
        ProviderError::Upstream(format!(
            "model '{}' is mapped to the {what} provider, but no {what} base URL is configured",
            kit.agent.model
        ))
    };
    match kit.provider {
        ProviderKind::OpenAi => {
            let base = rt
                .openai_base_url
                .as_deref()
                .unwrap_or("https://api.openai.com/v1");
            openai::complete(&rt.http, base, rt.openai_api_key.as_deref(), &req, sink).await
        }
        ProviderKind::Anthropic => {
            let base = rt
                .anthropic_base_url
                .as_deref()
                .unwrap_or("https://api.anthropic.com");
            if rt.anthropic_base_url.is_none() && rt.anthropic_api_key.is_none() {
                return Err(missing("Anthropic"));
            }
            anthropic::complete(&rt.http, base, rt.anthropic_api_key.as_deref(), &req, sink).await
        }
        ProviderKind::Offline => unreachable!("answered above"),
    }
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Records the turn and builds the response object.
pub(super) async fn finish(
    state: &Arc<AppState>,
    kit: &Turnkit,
    progress: &Progress,
    end: &End,
    reservation: Reservation,
) -> Result<Value> {
    let latency_ms = kit.caller.started.elapsed().as_millis() as u64;
    let tokens_used = progress.upstream_tokens.unwrap_or(progress.counted_tokens);
    let now = crate::time::now_rfc3339();
    let mut events = Vec::with_capacity(progress.events.len() + 2);
    events.push(TurnEvent {
        kind: "message",
        payload: json!({"role": "user", "content": kit.message}),
    });
    events.extend(progress.events.iter().cloned());
    if !progress.text.is_empty() {
        events.push(TurnEvent {
            kind: "message",
            payload: json!({"role": "assistant", "content": progress.text}),
        });
    }
    // The memory loop, second half: the turn's events go the way of any captured event.
    let metadata = json!({
        "agentId": kit.agent.id,
        "source": "invoke",
        "requestId": kit.caller.request_id,
        "traceId": kit.trace_id,
    });
    let checked: Vec<_> = events
        .into_iter()
        .filter_map(|e| {
            let raw = json!({"type": e.kind, "sessionId": kit.session_id,
                             "payload": e.payload, "metadata": metadata});
            match crate::capture::validate(raw) {
                Ok(ev) => Some(ev),
                Err(errs) => {
                    tracing::warn!(?errs, "an invocation event did not validate; not captured");
                    None
                }
            }
        })
        .collect();
    let p = &kit.caller.principal;
    let (checked, events_held) = match state.limits.reserve(p, Quota::Events, checked.len() as u64)
    {
        Ok(r) => (checked, Some(r)),
        Err(e) => {
            tracing::warn!(tenant = %p.tenant_id, error = %e, "event quota exhausted: the turn is not captured");
            (Vec::new(), None)
        }
    };
    let turn = Turn {
        request_id: kit.caller.request_id.clone(),
        tenant_id: p.tenant_id.clone(),
        mode: p.mode,
        agent_id: kit.agent.id.clone(),
        session_id: kit.session_id.clone(),
        status: end.status(),
        user_tokens: kit.message_tokens,
        user_message: kit.message.clone(),
        reply_tokens: match end {
            End::Completed => progress.reply_tokens,
            _ => count_tokens(&progress.text),
        },
        reply: progress.text.clone(),
        latency_ms,
        tokens_used,
        events: checked,
        created_at: now.clone(),
    };
    let (user_message, user_tokens) = (turn.user_message.clone(), turn.user_tokens);
    let (reply, reply_tokens) = (turn.reply.clone(), turn.reply_tokens);
    let written = state.runtime.recorder(&state.db).record(turn).await?;
    // Committed: the session's next turn may now see it.
    let mut added = vec![(
        written.user_seq,
        StoredMessage {
            role: "user".into(),
            content: user_message,
            tokens: user_tokens,
        },
    )];
    if let Some(seq) = written.reply_seq {
        added.push((
            seq,
            StoredMessage {
                role: "assistant".into(),
                content: reply,
                tokens: reply_tokens,
            },
        ));
    }
    state
        .runtime
        .sessions
        .record(&p.tenant_id, &kit.agent.id, &kit.session_id, added);
    let captured = written.events;
    reservation.commit(1);
    if let Some(r) = events_held {
        r.commit(captured);
    }
    if captured > 0 {
        state.jobs.ring(crate::jobs::CAPTURE);
    }
    let mut body = json!({
        "content": progress.text,
        "agent_id": kit.agent.id,
        "session_id": kit.session_id,
        "latency_ms": latency_ms,
        "tokens_used": tokens_used,
        "tools_called": progress.tools_called,
        "request_id": kit.caller.request_id,
        "trace_id": kit.trace_id,
        "model": kit.agent.model,
        "status": end.status(),
        "timestamp": now,
    });
    if !progress.connector_errors.is_empty() {
        body["connector_errors"] = progress
            .connector_errors
            .iter()
            .map(|e| json!({"connector": e.connector, "error": e.error}))
            .collect();
    }
    Ok(body)
}
