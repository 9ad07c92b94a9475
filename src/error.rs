//! One error type for the whole server.
//!
//! Handlers return `Error`; `http::response` renders it in the format of the route's family
//! (memory envelope or registry object, docs/api.md "Common rules"). The message shown to clients is always safe:
//! an `Internal` error carries its details only for the log, never for the body.

use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// Which API family a route belongs to; decides the error and success body formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Memory,
    Registry,
}

/// One field-level problem in a request.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug)]
pub enum Error {
    /// Invalid body: 422 (memory) or 400 (registry), naming the fields.
    Validation {
        message: String,
        details: Vec<FieldError>,
    },
    /// A malformed query string or path parameter: 400 in both families.
    BadRequest {
        message: String,
        details: Vec<FieldError>,
    },
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    MethodNotAllowed {
        allow: Vec<&'static str>,
    },
    Conflict(String),
    PayloadTooLarge {
        limit: usize,
    },
    RateLimited {
        retry_after: u64,
        message: String,
    },
    QuotaExceeded {
        retry_after: u64,
        message: String,
        details: Value,
    },
    Timeout(String),
    /// The client took too long to send its request (408; the connection is closed).
    RequestTimeout(String),
    Upstream(String),
    Unavailable(String),
    /// Overloaded (capture's backlog): 503 `unavailable` with `Retry-After`.
    Saturated {
        retry_after: u64,
        message: String,
    },
    /// A status chosen by the operator or an agent's script (fixture faults, scripted errors):
    /// the code follows the status.
    Injected {
        status: u16,
        message: String,
    },
    /// Details go to the log with the request id; the client sees a generic message.
    Internal(String),
    /// An internal failure caused by another error (the database, the connection pool, JSON),
    /// kept whole for the log (`std::error::Error::source`); the client sees a generic message.
    Failed {
        context: &'static str,
        source: Arc<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Error {
    pub fn validation(field: &str, message: impl Into<String>) -> Error {
        let message = message.into();
        Error::Validation {
            message: format!("{field}: {message}"),
            details: vec![FieldError::new(field, message)],
        }
    }

    pub fn invalid(details: Vec<FieldError>) -> Error {
        let message = match details.as_slice() {
            [] => "invalid request".to_string(),
            [one] => format!("{}: {}", one.field, one.message),
            [first, rest @ ..] => format!(
                "{}: {} (and {} more problem{})",
                first.field,
                first.message,
                rest.len(),
                if rest.len() == 1 { "" } else { "s" }
            ),
        };
        Error::Validation { message, details }
    }

    pub fn bad_query(field: &str, message: impl Into<String>) -> Error {
        let message = message.into();
        Error::BadRequest {
            message: format!("{field}: {message}"),
            details: vec![FieldError::new(field, message)],
        }
    }

    pub fn not_found(what: &str) -> Error {
        Error::NotFound(format!("{what} not found"))
    }

    pub fn internal(e: impl fmt::Display) -> Error {
        Error::Internal(e.to_string())
    }

    /// An error with the status `status` (clamped to 400–599).
    pub fn injected(status: u16, message: impl Into<String>) -> Error {
        Error::Injected {
            status: status.clamp(400, 599),
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::Validation { .. } => 422,
            Error::BadRequest { .. } => 400,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound(_) => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::Conflict(_) => 409,
            Error::PayloadTooLarge { .. } => 413,
            Error::RateLimited { .. } | Error::QuotaExceeded { .. } => 429,
            Error::Timeout(_) => 504,
            Error::RequestTimeout(_) => 408,
            Error::Upstream(_) => 502,
            Error::Unavailable(_) | Error::Saturated { .. } => 503,
            Error::Injected { status, .. } => *status,
            Error::Internal(_) | Error::Failed { .. } => 500,
        }
    }

    /// The status in a family: the registry reports body validation errors as 400.
    pub fn status_in(&self, family: Family) -> u16 {
        match (self, family) {
            (Error::Validation { .. }, Family::Registry) => 400,
            _ => self.status(),
        }
    }

    pub fn code(&self, family: Family) -> &'static str {
        match (self, family) {
            (Error::Validation { .. }, Family::Memory) => "validation_error",
            (Error::Validation { .. }, Family::Registry) => "bad_request",
            (Error::BadRequest { .. }, Family::Memory) => "validation_error",
            (Error::BadRequest { .. }, Family::Registry) => "bad_request",
            (Error::Unauthorized(_), _) => "unauthorized",
            (Error::Forbidden(_), _) => "forbidden",
            (Error::NotFound(_), _) => "not_found",
            (Error::MethodNotAllowed { .. }, _) => "method_not_allowed",
            (Error::Conflict(_), _) => "conflict",
            (Error::PayloadTooLarge { .. }, _) => "payload_too_large",
            (Error::RateLimited { .. }, Family::Memory) => "rate_limited",
            (Error::RateLimited { .. }, Family::Registry) => "rate_limit_exceeded",
            (Error::QuotaExceeded { .. }, _) => "quota_exceeded",
            (Error::Timeout(_), _) => "timeout",
            (Error::RequestTimeout(_), _) => "request_timeout",
            (Error::Upstream(_), _) => "upstream_error",
            (Error::Unavailable(_), _) | (Error::Saturated { .. }, _) => "unavailable",
            (Error::Injected { status, .. }, family) => injected_code(*status, family),
            (Error::Internal(_) | Error::Failed { .. }, _) => "internal_error",
        }
    }

    /// The message a client may see (at most `MAX_MESSAGE_CHARS`: input echoed in an error is
    /// cut, never sent back whole).
    pub fn public_message(&self) -> String {
        truncate_message(self.full_public_message())
    }

    fn full_public_message(&self) -> String {
        match self {
            Error::Validation { message, .. } | Error::BadRequest { message, .. } => {
                message.clone()
            }
            Error::Unauthorized(m)
            | Error::Forbidden(m)
            | Error::NotFound(m)
            | Error::Conflict(m)
            | Error::Timeout(m)
            | Error::RequestTimeout(m)
            | Error::Upstream(m)
            | Error::Unavailable(m)
            | Error::Injected { message: m, .. } => m.clone(),
            Error::RateLimited { message, .. }
            | Error::QuotaExceeded { message, .. }
            | Error::Saturated { message, .. } => message.clone(),
            Error::MethodNotAllowed { allow } => format!(
                "method not allowed on this route; allowed: {}",
                allow.join(", ")
            ),
            Error::PayloadTooLarge { limit } => {
                format!("request body is larger than this route's limit of {limit} bytes")
            }
            Error::Internal(_) | Error::Failed { .. } => "internal server error".to_string(),
        }
    }

    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Error::RateLimited { retry_after, .. }
            | Error::QuotaExceeded { retry_after, .. }
            | Error::Saturated { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    fn details(&self) -> Option<Details<'_>> {
        match self {
            Error::Validation { details, .. } | Error::BadRequest { details, .. } => {
                Some(Details::Fields(
                    details
                        .iter()
                        .map(|d| FieldError {
                            field: truncate_message(d.field.clone()),
                            message: truncate_message(d.message.clone()),
                        })
                        .collect(),
                ))
            }
            Error::RateLimited { retry_after, .. } => Some(Details::Retry {
                retry_after: *retry_after,
            }),
            Error::QuotaExceeded {
                retry_after,
                details,
                ..
            } => {
                let mut d = match details {
                    Value::Object(m) => m.clone(),
                    _ => Map::new(),
                };
                d.insert("retryAfter".into(), Value::from(*retry_after));
                Some(Details::Quota(d))
            }
            Error::PayloadTooLarge { limit } => Some(Details::Size {
                limit_bytes: *limit,
            }),
            Error::MethodNotAllowed { allow } => Some(Details::Allow { allow }),
            _ => None,
        }
    }

    /// The memory family's `error` object (the envelope is added by the response layer).
    pub fn memory_error(&self) -> MemoryError<'_> {
        MemoryError {
            code: self.code(Family::Memory),
            message: self.public_message(),
            details: self.details(),
            retry_after: self.retry_after(),
        }
    }

    /// The registry family's whole body.
    pub fn registry_body(&self) -> RegistryError<'_> {
        let details = match self {
            Error::Validation { .. } | Error::BadRequest { .. } | Error::QuotaExceeded { .. } => {
                self.details()
            }
            _ => None,
        };
        RegistryError {
            error: self.code(Family::Registry),
            message: self.public_message(),
            retry_after: self.retry_after(),
            details,
        }
    }
}

/// An error's `details`: the fields at fault, or facts about the limit that was hit.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Details<'a> {
    Fields(Vec<FieldError>),
    #[serde(rename_all = "camelCase")]
    Retry {
        retry_after: u64,
    },
    /// The quota's own facts, with `retryAfter`.
    Quota(Map<String, Value>),
    #[serde(rename_all = "camelCase")]
    Size {
        limit_bytes: usize,
    },
    Allow {
        allow: &'a [&'static str],
    },
}

/// The memory family's `error` object.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryError<'a> {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Details<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// The registry family's error body.
#[derive(Debug, Serialize)]
pub struct RegistryError<'a> {
    pub error: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Details<'a>>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Internal(detail) => write!(f, "internal error: {detail}"),
            Error::Failed { context, source } => write!(f, "internal error: {context}: {source}"),
            other => write!(
                f,
                "{} ({})",
                other.public_message(),
                other.code(Family::Memory)
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Failed { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

impl Error {
    /// An internal failure caused by `source`, described by `context` (what was being done).
    pub fn failed(
        context: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Failed {
            context,
            source: Arc::new(source),
        }
    }

    /// Whether the client is told only "internal server error" (details go to the log).
    pub fn is_internal(&self) -> bool {
        matches!(self, Error::Internal(_) | Error::Failed { .. })
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::failed("json", e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The longest error message or detail sent to a client, in characters.
pub const MAX_MESSAGE_CHARS: usize = 300;
/// The longest piece of client input quoted in an error, in characters.
pub const MAX_ECHO_CHARS: usize = 64;

/// Cuts a message to `MAX_MESSAGE_CHARS`, marking the cut.
fn truncate_message(m: String) -> String {
    if m.chars().count() <= MAX_MESSAGE_CHARS {
        return m;
    }
    let mut out: String = m.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    out.push('…');
    out
}

/// Client input as quoted in an error: at most `MAX_ECHO_CHARS` characters, the cut marked.
pub fn echo(input: &str) -> String {
    if input.chars().count() <= MAX_ECHO_CHARS {
        return input.to_string();
    }
    let mut out: String = input.chars().take(MAX_ECHO_CHARS - 1).collect();
    out.push('…');
    out
}

/// The code an injected status is reported with: the one the same status has elsewhere.
fn injected_code(status: u16, family: Family) -> &'static str {
    match (status, family) {
        (400 | 422, Family::Memory) => "validation_error",
        (400 | 422, Family::Registry) => "bad_request",
        (401, _) => "unauthorized",
        (403, _) => "forbidden",
        (404, _) => "not_found",
        (405, _) => "method_not_allowed",
        (408, _) => "request_timeout",
        (409, _) => "conflict",
        (413, _) => "payload_too_large",
        (429, Family::Memory) => "rate_limited",
        (429, Family::Registry) => "rate_limit_exceeded",
        (502, _) => "upstream_error",
        (503, _) => "unavailable",
        (504, _) => "timeout",
        (400..=499, _) => "bad_request",
        _ => "internal_error",
    }
}
