//! Connectors as MCP servers: connect over streamable HTTP (rmcp), list their tools, call them.
//!
//! Invariants:
//! - Every network step is bounded by a deadline; a connector that cannot be reached or fails
//!   the handshake is reported as a `ConnectorError` (shown in the invoke response) and its
//!   tools are simply not offered — it never fails the invocation.
//! - Every connector URL passes the outbound policy (`crate::outbound`) at each connection:
//!   the request goes to the vetted addresses only, without redirects or credentials, and a
//!   failure is described by our own short text, never by what the remote side answered.
//! - Tools are offered as `<connector slug>__<tool name>`, so two connectors may expose tools of
//!   the same name; `Toolbox::call` maps the name back.

use super::providers::offline::tool_name;
use super::ToolDef;
use crate::outbound::{describe_failure, Policy};
use crate::store::connectors::Connector;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Longest time one connector gets to connect and list its tools.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connector that could not be used this time.
#[derive(Clone, Debug)]
pub struct ConnectorError {
    pub connector: String,
    pub error: String,
}

struct Session {
    slug: String,
    client: RunningService<RoleClient, ()>,
}

/// The tools of the connectors that answered.
#[derive(Default)]
pub struct Toolbox {
    sessions: Vec<Session>,
    /// Offered name → (session index, tool name on its server).
    names: Vec<(String, usize, String)>,
    pub tools: Vec<ToolDef>,
    pub errors: Vec<ConnectorError>,
}

/// The result of one tool call.
#[derive(Clone, Debug)]
pub struct ToolOutcome {
    pub connector: String,
    pub tool: String,
    pub output: String,
    pub is_error: bool,
}

async fn open(
    policy: &Policy,
    c: &Connector,
) -> Result<(RunningService<RoleClient, ()>, Vec<rmcp::model::Tool>), String> {
    let vetted = policy.vet(&c.mcp_url).await.map_err(|r| r.to_string())?;
    let http = vetted.client(CONNECT_TIMEOUT)?;
    let transport = StreamableHttpClientTransport::with_client(
        http,
        StreamableHttpClientTransportConfig::with_uri(vetted.url.as_str()),
    );
    let client = ().serve(transport).await.map_err(|e| {
        tracing::debug!(connector = %c.slug, error = %e, "MCP handshake failed");
        format!(
            "MCP handshake failed: {}",
            describe_failure(&e.to_string(), Some(&e))
        )
    })?;
    let tools = client.list_all_tools().await.map_err(|e| {
        tracing::debug!(connector = %c.slug, error = %e, "listing MCP tools failed");
        format!(
            "listing tools failed: {}",
            describe_failure(&e.to_string(), Some(&e))
        )
    })?;
    Ok((client, tools))
}

impl Toolbox {
    /// Connects to every connector concurrently (each bounded by `CONNECT_TIMEOUT` and the
    /// invocation's `deadline`).
    pub async fn connect(policy: &Policy, connectors: &[Connector], deadline: Instant) -> Toolbox {
        let limit = CONNECT_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
        let opened = futures_util::future::join_all(connectors.iter().map(|c| async move {
            let r = match tokio::time::timeout(limit, open(policy, c)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
            };
            (c, r)
        }))
        .await;
        let mut tb = Toolbox::default();
        for (c, r) in opened {
            match r {
                Ok((client, tools)) => {
                    let idx = tb.sessions.len();
                    for t in tools {
                        let offered = tool_name(&c.slug, &t.name);
                        tb.tools.push(ToolDef {
                            name: offered.clone(),
                            description: t
                                .description
                                .as_deref()
                                .map(str::to_string)
                                .unwrap_or_else(|| format!("{} on {}", t.name, c.name)),
                            schema: Value::Object((*t.input_schema).clone()),
                        });
                        tb.names.push((offered, idx, t.name.to_string()));
                    }
                    tb.sessions.push(Session {
                        slug: c.slug.clone(),
                        client,
                    });
                }
                Err(error) => tb.errors.push(ConnectorError {
                    connector: c.slug.clone(),
                    error: format!("connector '{}' is unreachable: {error}", c.slug),
                }),
            }
        }
        tb
    }

    /// Calls the tool offered as `name`. Unknown tools and failures come back as error results
    /// (the model is told, and may recover).
    pub async fn call(&self, name: &str, arguments: &Value, timeout: Duration) -> ToolOutcome {
        let (connector, tool) = name.split_once("__").unwrap_or(("", name));
        let fail = |output: String| ToolOutcome {
            connector: connector.to_string(),
            tool: tool.to_string(),
            output,
            is_error: true,
        };
        let Some((_, idx, remote)) = self.names.iter().find(|(n, _, _)| n == name) else {
            if let Some(e) = self.errors.iter().find(|e| e.connector == connector) {
                return fail(e.error.clone());
            }
            return fail(format!(
                "no tool '{tool}' on connector '{connector}' for this agent"
            ));
        };
        let session = &self.sessions[*idx];
        let mut params = CallToolRequestParams::new(remote.clone());
        match arguments {
            Value::Object(m) => params = params.with_arguments(m.clone()),
            Value::Null => {}
            other => {
                return fail(format!(
                    "tool arguments must be a JSON object, got: {other}"
                ));
            }
        }
        let result = tokio::time::timeout(timeout, session.client.call_tool(params)).await;
        match result {
            Err(_) => fail(format!(
                "the tool did not answer within {} ms",
                timeout.as_millis()
            )),
            Ok(Err(e)) => {
                tracing::debug!(connector = %session.slug, tool = %remote, error = %e, "MCP tool call failed");
                fail(format!(
                    "the tool call failed: {}",
                    describe_failure(&e.to_string(), Some(&e))
                ))
            }
            Ok(Ok(r)) => {
                let v = serde_json::to_value(&r).unwrap_or_else(|_| json!({}));
                ToolOutcome {
                    connector: session.slug.clone(),
                    tool: remote.clone(),
                    output: result_text(&v),
                    is_error: r.is_error.unwrap_or(false),
                }
            }
        }
    }

    /// Closes the MCP sessions.
    pub async fn close(self) {
        for s in self.sessions {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.client.cancel()).await;
        }
    }
}

/// The text of a tool result: its text blocks, else its structured content, else the JSON.
fn result_text(v: &Value) -> String {
    let texts: Vec<&str> = v["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    if !texts.is_empty() {
        return texts.join("\n");
    }
    match v.get("structuredContent") {
        Some(s) if !s.is_null() => s.to_string(),
        _ => v["content"].to_string(),
    }
}
