//! The agent runtime: everything `POST /v1/agents/{id}/invoke` needs beyond storage — the model
//! providers (OpenAI-compatible, Anthropic, the built-in offline model), the MCP client for
//! connectors, the memory loop and SSE framing.
//!
//! Invariants:
//! - Providers speak one provider-neutral conversation (`Msg`, `ToolDef`, `ModelReply`); each
//!   provider module only translates it to and from its wire format, so the invoke loop is the
//!   same for every model.
//! - A provider never panics on what an upstream sends: malformed answers become
//!   `ProviderError::Upstream` with a message that says what was wrong (→ 502).
//! - Text deltas are pushed to the caller's channel as they arrive, so streaming is not buffered.

pub mod gateway;
pub mod history;
pub mod invoke;
pub mod mcp;
pub mod providers;
pub mod recorder;
pub mod session_cache;
pub mod sse;
mod streaming;
mod turn;

use crate::config::{Config, ProviderKind};
use serde_json::Value;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::mpsc;

/// Who said a message of the conversation sent to a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    Tool,
}

/// A tool call the model asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    /// The provider's id for the call (echoed back with the result).
    pub id: String,
    /// The name the tool was offered under (`<connector>__<tool>`).
    pub name: String,
    pub arguments: Value,
}

/// One message of the conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct Msg {
    pub role: Role,
    pub content: String,
    /// Calls made by an assistant message.
    pub tool_calls: Vec<ToolCall>,
    /// For `Role::Tool`: the call this result answers.
    pub tool_call_id: Option<String>,
    /// For `Role::Tool`: whether the tool failed.
    pub is_error: bool,
}

impl Msg {
    pub fn user(content: impl Into<String>) -> Msg {
        Msg {
            role: Role::User,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            is_error: false,
        }
    }

    pub fn assistant(content: impl Into<String>, tool_calls: Vec<ToolCall>) -> Msg {
        Msg {
            role: Role::Assistant,
            content: content.into(),
            tool_calls,
            tool_call_id: None,
            is_error: false,
        }
    }

    pub fn tool(call_id: &str, content: impl Into<String>, is_error: bool) -> Msg {
        Msg {
            role: Role::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: Some(call_id.to_string()),
            is_error,
        }
    }
}

/// A tool offered to the model.
#[derive(Clone, Debug)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub schema: Value,
}

/// One model call.
#[derive(Clone, Debug)]
pub struct ModelRequest {
    pub model: String,
    pub system: String,
    pub messages: Vec<Msg>,
    pub tools: Vec<ToolDef>,
    pub stream: bool,
    pub max_tokens: u32,
}

/// What a model answered.
#[derive(Clone, Debug, Default)]
pub struct ModelReply {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    /// Tokens the upstream reports it used (prompt + completion), when it says.
    pub tokens: Option<u64>,
}

#[derive(Debug)]
pub enum ProviderError {
    /// The upstream failed or answered something unusable (→ 502 `upstream_error`).
    Upstream(String),
    /// An agent's script chose to fail with this status (fixtures testing error handling).
    Scripted { status: u16, message: String },
}

impl ProviderError {
    /// The error the caller sees: 502 for an upstream failure, the script's status otherwise.
    pub fn into_error(self) -> crate::error::Error {
        match self {
            ProviderError::Upstream(m) => crate::error::Error::Upstream(m),
            ProviderError::Scripted { status, message } => {
                crate::error::Error::injected(status, message)
            }
        }
    }
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderError::Upstream(m) | ProviderError::Scripted { message: m, .. } => {
                write!(f, "{m}")
            }
        }
    }
}

/// What a streamed invocation reports as it happens, in order.
#[derive(Clone, Debug)]
pub enum Note {
    /// A piece of the model's text.
    Delta(String),
    /// A finished tool call (`tools_called` item).
    Tool(Value),
}

/// Text deltas (and tool calls) of a streamed answer go here as they arrive.
pub type DeltaSink = mpsc::UnboundedSender<Note>;

/// Sends a text delta, if anyone listens (a closed channel only means the client left).
pub fn emit(sink: Option<&DeltaSink>, text: &str) {
    if let Some(s) = sink {
        if !text.is_empty() {
            let _ = s.send(Note::Delta(text.to_string()));
        }
    }
}

/// Shared by every invocation: the outbound HTTP client and the provider settings.
pub struct Runtime {
    pub http: reqwest::Client,
    pub openai_base_url: Option<String>,
    pub openai_api_key: Option<String>,
    pub anthropic_base_url: Option<String>,
    pub anthropic_api_key: Option<String>,
    pub model_providers: Vec<(String, ProviderKind)>,
    /// What tenants' connectors may reach (docs/security.md).
    pub outbound: crate::outbound::Policy,
    /// Writes finished turns in groups; started on the first invocation (it needs the database
    /// and a tokio runtime, neither of which exists when the runtime is configured).
    recorder: OnceLock<recorder::Recorder>,
    /// Recent messages of active sessions (the history of the next turn).
    pub sessions: session_cache::SessionCache,
}

impl Runtime {
    pub fn new(config: &Config) -> Runtime {
        // Warm the tokenizer tables off the request path (first use decodes them).
        std::thread::spawn(|| history::count_tokens("warm up"));
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        let clean = |s: &Option<String>| {
            s.as_ref()
                .map(|u| u.trim().trim_end_matches('/').to_string())
                .filter(|u| !u.is_empty())
        };
        Runtime {
            http,
            openai_base_url: clean(&config.openai_base_url),
            openai_api_key: config.openai_api_key.clone().filter(|k| !k.is_empty()),
            anthropic_base_url: clean(&config.anthropic_base_url),
            anthropic_api_key: config.anthropic_api_key.clone().filter(|k| !k.is_empty()),
            model_providers: config.model_providers.clone(),
            outbound: config.outbound.clone(),
            recorder: OnceLock::new(),
            // Nodes sharing PostgreSQL write each other's sessions: nothing cached.
            sessions: if config.database.is_some() {
                session_cache::SessionCache::pass_through()
            } else {
                session_cache::SessionCache::default()
            },
        }
    }

    /// The turn recorder, writing through `db`.
    pub fn recorder(&self, db: &crate::store::Db) -> &recorder::Recorder {
        self.recorder
            .get_or_init(|| recorder::Recorder::new(db.clone()))
    }

    /// Which provider answers `model`: the configured prefix mapping first; then `claude*` goes
    /// to Anthropic when it is configured; then anything to the OpenAI-compatible upstream when it
    /// is configured; otherwise (no network configured) the offline model.
    pub fn provider_for(&self, model: &str) -> ProviderKind {
        for (prefix, kind) in &self.model_providers {
            if model.starts_with(prefix.as_str()) {
                return *kind;
            }
        }
        if model.starts_with("offline") {
            return ProviderKind::Offline;
        }
        let anthropic = self.anthropic_base_url.is_some() || self.anthropic_api_key.is_some();
        let openai = self.openai_base_url.is_some() || self.openai_api_key.is_some();
        if model.starts_with("claude") && anthropic {
            ProviderKind::Anthropic
        } else if openai {
            ProviderKind::OpenAi
        } else if anthropic {
            ProviderKind::Anthropic
        } else {
            ProviderKind::Offline
        }
    }
}
