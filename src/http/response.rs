//! Replies and their rendering: the memory family's `{ok, data, meta}` envelope, the registry
//! family's bare objects, streamed bodies (SSE), and errors in either format.

use crate::error::{Error, Family};
use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use std::convert::Infallible;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

enum Payload {
    /// Wrapped in the memory envelope, or sent bare for the registry family.
    Json(Value),
    /// The same, already serialised (a JSON value's text): large replies skip building a `Value`.
    JsonText(String),
    /// Sent as is (already complete bytes with their content type, or a stream).
    Body(Body, &'static str),
}

/// What a handler answers.
pub struct Reply {
    pub status: StatusCode,
    payload: Payload,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reply {
    pub fn json(status: u16, value: Value) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            payload: Payload::Json(value),
            headers: Vec::new(),
        }
    }

    pub fn ok(value: Value) -> Reply {
        Reply::json(200, value)
    }

    /// 200 with `text`, which must be the serialisation of one JSON value (it is embedded as is).
    pub fn ok_json_text(text: String) -> Reply {
        Reply::json_text(StatusCode::OK, text)
    }

    /// `ok_json_text` with another status.
    pub fn json_text(status: StatusCode, text: String) -> Reply {
        Reply {
            status,
            payload: Payload::JsonText(text),
            headers: Vec::new(),
        }
    }

    pub fn created(value: Value) -> Reply {
        Reply::json(201, value)
    }

    pub fn accepted(value: Value) -> Reply {
        Reply::json(202, value)
    }

    /// `body` sent as is with `status`: a JSON string as plain text, anything else as JSON.
    pub fn raw(status: u16, body: &Value) -> Reply {
        let (bytes, content_type) = match body {
            Value::String(s) => (Bytes::from(s.clone()), "text/plain; charset=utf-8"),
            v => (
                Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
                "application/json",
            ),
        };
        Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            payload: Payload::Body(full(bytes), content_type),
            headers: Vec::new(),
        }
    }

    /// A streamed body (e.g. `text/event-stream`).
    pub fn stream(body: Body, content_type: &'static str) -> Reply {
        Reply {
            status: StatusCode::OK,
            payload: Payload::Body(body, content_type),
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Reply {
        self.headers.push((name, value));
        self
    }
}

/// Request-level facts every rendered body or header needs.
pub struct Meta<'a> {
    pub request_id: &'a str,
    pub tenant_id: Option<&'a str>,
    pub duration_ms: u64,
}

fn meta_json(meta: &Meta<'_>) -> Value {
    json!({
        "requestId": meta.request_id,
        "tenantId": meta.tenant_id,
        "durationMs": meta.duration_ms,
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    json_bytes_response(
        status,
        serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec()),
    )
}

fn json_bytes_response(status: StatusCode, bytes: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn render(reply: Reply, family: Family, meta: &Meta<'_>) -> Response<Body> {
    let mut resp = match reply.payload {
        Payload::Json(value) => {
            let body = match family {
                Family::Memory => json!({"ok": true, "data": value, "meta": meta_json(meta)}),
                Family::Registry => value,
            };
            json_response(reply.status, &body)
        }
        Payload::JsonText(text) => {
            let bytes = match family {
                Family::Memory => {
                    let meta = meta_json(meta).to_string();
                    let mut out = String::with_capacity(text.len() + meta.len() + 32);
                    out.push_str("{\"ok\":true,\"data\":");
                    out.push_str(&text);
                    out.push_str(",\"meta\":");
                    out.push_str(&meta);
                    out.push('}');
                    out
                }
                Family::Registry => text,
            };
            json_bytes_response(reply.status, bytes)
        }
        Payload::Body(body, content_type) => {
            let mut resp = Response::new(body);
            *resp.status_mut() = reply.status;
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp
        }
    };
    for (k, v) in reply.headers {
        resp.headers_mut().append(k, v);
    }
    resp
}

pub fn render_error(err: &Error, family: Family, meta: &Meta<'_>) -> Response<Body> {
    let status =
        StatusCode::from_u16(err.status_in(family)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match family {
        Family::Memory => json!({
            "ok": false,
            "error": err.memory_error_object(),
            "meta": meta_json(meta),
        }),
        Family::Registry => err.registry_body(),
    };
    let mut resp = json_response(status, &body);
    if let Some(secs) = err.retry_after() {
        resp.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Error::MethodNotAllowed { allow } = err {
        if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
            resp.headers_mut().insert(hyper::header::ALLOW, v);
        }
    }
    resp
}
