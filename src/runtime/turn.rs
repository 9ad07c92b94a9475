//! One turn of an agent: the model/tool loop (`converse`), what it produced so far (`Progress`),
//! how it ended (`End`) and recording it (`finish`). `invoke` prepares a turn and answers it
//! whole; `streaming` runs it and reports its updates as they happen. Both use this module, and
//! neither reaches into the other.
//!
//! Invariants:
//! - Everything written for a turn commits in one transaction, shared with the turns finishing
//!   at the same time (`recorder`, `store::sessions::record_turns`); the reply is sent after it.
//! - A turn cut short (timeout, failure, a client gone) is recorded with what it produced.

use super::history::count_tokens;
use super::invoke::Caller;
use super::mcp::{ConnectorError, Toolbox};
use super::providers::{anthropic, offline, openai};
use super::{DeltaSink, ModelReply, ModelRequest, Msg, Note, ProviderError, Runtime, ToolDef};
use crate::app::AppState;
use crate::config::ProviderKind;
use crate::error::{Error, Result};
use crate::limits::{Quota, Reservation};
use crate::store::connectors::Connector;
use crate::store::sessions::{StoredMessage, Turn};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// Most model calls in one turn (each tool round costs one).
pub const MAX_STEPS: usize = 8;
/// Most memory entries put into the system prompt.
pub(super) const MEMORY_ENTRIES: usize = 8;
/// Token budget of the memory synthesized into the system prompt.
pub(super) const MEMORY_TOKENS: u32 = 1000;
/// Tokens of the memory header `system_prompt` adds (and the list markers).
pub(super) const SYSTEM_HEADER_TOKENS: u64 = 32;
/// Most characters of a tool result kept in a memory event.
const EVENT_RESULT_CHARS: usize = 8192;
/// Largest answer asked of an upstream model.
const MAX_OUTPUT_TOKENS: u32 = 4096;

/// What invocation needs of an agent.
#[derive(Clone, Debug)]
pub(super) struct AgentRow {
    pub(super) id: String,
    pub(super) model: String,
    pub(super) instruction: String,
}

/// One memory event of a turn, before validation by the capture path.
#[derive(Clone, Debug)]
pub(super) struct TurnEvent {
    kind: &'static str,
    payload: Value,
}

/// Everything prepared before the model is called.
pub(super) struct Turnkit {
    pub(super) caller: Caller,
    pub(super) agent: AgentRow,
    pub(super) rules: Vec<offline::Rule>,
    pub(super) provider: ProviderKind,
    pub(super) session_id: String,
    pub(super) trace_id: String,
    pub(super) message: String,
    pub(super) system: String,
    pub(super) memory: Vec<String>,
    pub(super) history: Vec<Msg>,
    /// Tokens of everything sent on the first call (system prompt, history, message).
    pub(super) prompt_tokens: u64,
    pub(super) message_tokens: u64,
    pub(super) connectors: Vec<Connector>,
    pub(super) stream: bool,
    pub(super) deadline: Instant,
    pub(super) timeout_secs: u64,
}

/// What the turn produced so far (kept when it is cut short).
#[derive(Default)]
pub(super) struct Progress {
    pub(super) text: String,
    pub(super) tools_called: Vec<Value>,
    pub(super) events: Vec<TurnEvent>,
    pub(super) upstream_tokens: Option<u64>,
    /// Our own count, used when the upstream does not report usage: every call's input plus
    /// every output.
    pub(super) counted_tokens: u64,
    /// Tokens of the model's text (all steps).
    pub(super) reply_tokens: u64,
    pub(super) connector_errors: Vec<ConnectorError>,
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

pub(super) fn timeout_error(secs: u64) -> Error {
    Error::Timeout(format!(
        "the agent did not answer within its timeout of {secs} s"
    ))
}

/// The agent's instruction, then what its memory recalled.
pub(super) fn system_prompt(agent: &AgentRow, memory: &[String]) -> String {
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
    let now = state.config.clock.now_rfc3339();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perms::{Role, Scopes};
    use std::time::Duration;

    fn kit(script: Value, message: &str) -> Turnkit {
        let principal = crate::auth::Principal {
            tenant_id: "ten_t".into(),
            developer_id: "dev_d".into(),
            key_id: "key_k".into(),
            role: Role::Owner,
            scopes: Scopes::EMPTY,
            grant: Scopes::EMPTY,
            mode: "live",
            plan: crate::plans::Plan::Pro,
            limits_override: None,
        };
        let agent = AgentRow {
            id: "ag_a".into(),
            model: "offline-echo".into(),
            instruction: "You answer briefly.".into(),
        };
        let memory = vec!["the deploy uses blue-green".to_string()];
        let prompt_tokens = count_tokens(&agent.instruction) + count_tokens(message);
        Turnkit {
            caller: Caller {
                principal,
                request_id: "req_r".into(),
                started: Instant::now(),
            },
            system: system_prompt(&agent, &memory),
            agent,
            rules: offline::parse_script(&script).expect("a valid script"),
            provider: ProviderKind::Offline,
            session_id: "sess_s".into(),
            trace_id: "trace_t".into(),
            message: message.into(),
            memory,
            history: Vec::new(),
            prompt_tokens,
            message_tokens: count_tokens(message),
            connectors: Vec::new(),
            stream: false,
            deadline: Instant::now() + Duration::from_secs(10),
            timeout_secs: 10,
        }
    }

    fn runtime() -> (tempfile::TempDir, Runtime) {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(&crate::config::Config::for_data_dir(dir.path()));
        (dir, rt)
    }

    #[test]
    fn the_system_prompt_is_the_instruction_then_the_memory_one_line_each() {
        let agent = AgentRow {
            id: "ag".into(),
            model: "m".into(),
            instruction: "Be brief.".into(),
        };
        assert_eq!(system_prompt(&agent, &[]), "Be brief.");
        let s = system_prompt(&agent, &["one\ntwo".to_string(), "three".to_string()]);
        assert!(s.starts_with("Be brief.\n\n## Memory\n"), "{s}");
        assert!(s.ends_with("- one two\n- three\n"), "{s}");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("abc", 3), "abc");
    }

    /// A plain answer: the text, no events, and the tokens counted as prompt plus reply.
    #[tokio::test]
    async fn a_turn_without_tools_is_one_model_call() {
        let (_dir, rt) = runtime();
        let k = kit(json!([{"match": "ping", "reply": "pong"}]), "ping");
        let mut p = Progress::default();
        converse(&rt, &k, None, &mut p).await.unwrap();
        assert_eq!(p.text, "pong");
        assert!(p.events.is_empty() && p.tools_called.is_empty());
        assert_eq!(p.reply_tokens, count_tokens("pong"));
        assert_eq!(p.counted_tokens, k.prompt_tokens + count_tokens("pong"));
    }

    /// A tool the agent has no connector for: the call fails, the failure is recorded as a
    /// `tool_call` and an error `tool_result`, and the model's next step answers in words.
    #[tokio::test]
    async fn a_failed_tool_call_is_recorded_and_the_turn_goes_on() {
        let (_dir, rt) = runtime();
        let script = json!([{"match": "weather in (\\w+)", "reply": "I could not check: {{result}}",
                             "tool": {"connector": "weather", "name": "lookup",
                                      "arguments": {"city": "{{1}}"}}}]);
        let k = kit(script, "weather in Oslo");
        let mut p = Progress::default();
        converse(&rt, &k, None, &mut p).await.unwrap();
        let kinds: Vec<&str> = p.events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec!["tool_call", "tool_result"]);
        assert_eq!(p.events[0].payload["arguments"], json!({"city": "Oslo"}));
        assert_eq!(p.events[1].payload["status"], "error");
        assert_eq!(p.tools_called.len(), 1);
        assert_eq!(p.tools_called[0]["is_error"], true);
        assert!(p.text.starts_with("I could not check"), "{}", p.text);
    }

    /// A scripted failure status ends the turn with that status (`End::Failed`).
    #[tokio::test]
    async fn a_scripted_status_fails_the_turn() {
        let (_dir, rt) = runtime();
        let k = kit(
            json!([{"match": ".", "status": 503, "reply": "overloaded"}]),
            "hi",
        );
        let mut p = Progress::default();
        let e = converse(&rt, &k, None, &mut p).await.unwrap_err();
        assert!(
            matches!(e, ProviderError::Scripted { status: 503, .. }),
            "{e:?}"
        );
        assert!(p.text.is_empty());
    }
}
