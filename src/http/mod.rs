//! HTTP plumbing shared by every handler: the request context handlers receive, query-string
//! parsing, and replies rendered in each family's format (docs/api.md "Common rules").

pub mod body;
pub mod client_ip;
pub mod conn;
pub mod query;
pub mod response;
pub mod sse;

pub use query::Query;
pub use response::{Body, Reply};

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{Error, Family, Result};
use bytes::Bytes;
use hyper::{HeaderMap, Method};
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Everything a handler gets: the parsed request, its principal and the shared state.
pub struct Ctx {
    pub state: Arc<AppState>,
    pub request_id: String,
    pub method: Method,
    pub path: String,
    /// The matched route pattern, e.g. `/v1/agents/{id}`.
    pub route: &'static str,
    pub family: Family,
    pub headers: HeaderMap,
    pub query: Query,
    /// Path parameters in pattern order.
    pub params: Vec<String>,
    pub body: Bytes,
    pub principal: Option<Principal>,
    pub peer: IpAddr,
    pub started: Instant,
}

impl Ctx {
    /// The authenticated caller (every route but health is authenticated before its handler).
    pub fn principal(&self) -> Result<&Principal> {
        self.principal
            .as_ref()
            .ok_or_else(|| Error::Unauthorized("missing API key".into()))
    }

    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map(String::as_str).unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON; an empty body is `null`. Invalid JSON is a validation error.
    pub fn json(&self) -> Result<Value> {
        if self.body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::validation("body", format!("invalid JSON: {e}")))
    }

    /// The body as a JSON object; an empty body is an empty object when `empty_ok`.
    pub fn json_object(&self, empty_ok: bool) -> Result<Map<String, Value>> {
        match self.json()? {
            Value::Object(m) => Ok(m),
            Value::Null if empty_ok => Ok(Map::new()),
            Value::Null => Err(Error::validation("body", "a JSON object is required")),
            _ => Err(Error::validation("body", "must be a JSON object")),
        }
    }
}
