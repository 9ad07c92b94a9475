//! One invocation of an agent: preparing the turn (memory, history, connectors, the prompt) and
//! answering it whole or as a stream of updates (`turn` runs it, `streaming` streams it).
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
use super::providers::offline;
use super::turn::{
    converse, finish, system_prompt, timeout_error, AgentRow, End, Progress, Turnkit,
    MEMORY_ENTRIES, MEMORY_TOKENS, SYSTEM_HEADER_TOKENS,
};
use crate::app::AppState;
use crate::auth::Principal;
use crate::config::ProviderKind;
use crate::error::{Error, Result};
use crate::limits::Reservation;
use crate::search::pack::SynthRequest;
use crate::store::{agents, connectors, sessions};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

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

/// What an invocation answers: the finished turn's response object, or (`stream: true`) the
/// turn's updates as they happen. `api` renders them (JSON, or SSE frames).
pub enum Invocation {
    Done(Value),
    Stream(mpsc::Receiver<TurnUpdate>),
}

/// One update of a streamed turn. The last one is `Done` or `Failed`; dropping the receiver
/// cancels the turn (it is still recorded, as `cancelled`).
#[derive(Debug)]
pub enum TurnUpdate {
    /// Text the model produced.
    Chunk(String),
    /// A tool call and its result.
    Tool(Value),
    /// The turn's response object (as `Invocation::Done` carries).
    Done(Value),
    /// The turn failed after it started (upstream error, timeout, recording failure).
    Failed(Error),
}

/// Runs an invocation of `agent_ref` (id or slug).
pub async fn invoke(
    state: Arc<AppState>,
    caller: Caller,
    agent_ref: String,
    input: InvokeInput,
    reservation: Reservation,
) -> Result<Invocation> {
    let kit = prepare(&state, caller, agent_ref, input).await?;
    if kit.stream {
        return Ok(Invocation::Stream(super::streaming::stream(
            state,
            kit,
            reservation,
        )));
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
        End::Completed | End::Cancelled => Ok(Invocation::Done(body)),
        End::Failed(e) => Err(e.into_error()),
        End::TimedOut => Err(timeout_error(timeout_secs)),
    }
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
        state.synthesize(
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
