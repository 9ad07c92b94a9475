//! Replies and their rendering: the memory family's `{ok, data, meta}` envelope, the registry
//! family's bare objects, streamed bodies (SSE), and errors in either format.

use crate::error::{Error, Family};
use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::Value;
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
    /// `body` (a response type of `api/`, or a JSON value) with `status`. Rendered through a JSON
    /// value, whose objects sort their keys, so the bytes do not depend on the order fields are
    /// declared in.
    pub fn json(status: u16, body: impl serde::Serialize) -> Reply {
        // Response types hold strings, numbers and string-keyed maps: serialising them to a
        // value cannot fail (non-finite floats become null).
        let value = serde_json::to_value(body).expect("a response type serialises to JSON");
        Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            payload: Payload::Json(value),
            headers: Vec::new(),
        }
    }

    pub fn ok(body: impl serde::Serialize) -> Reply {
        Reply::json(200, body)
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

    pub fn created(body: impl serde::Serialize) -> Reply {
        Reply::json(201, body)
    }

    pub fn accepted(body: impl serde::Serialize) -> Reply {
        Reply::json(202, body)
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

/// The memory family's `meta`. Fields in the order of their wire names: a reply sent as text
/// (`Payload::JsonText`) has its `meta` serialised straight from this struct, and it must read
/// like every other body's (keys sorted).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetaOut<'a> {
    duration_ms: u64,
    request_id: &'a str,
    tenant_id: Option<&'a str>,
}

impl<'a> From<&'a Meta<'a>> for MetaOut<'a> {
    fn from(m: &'a Meta<'a>) -> MetaOut<'a> {
        MetaOut {
            request_id: m.request_id,
            tenant_id: m.tenant_id,
            duration_ms: m.duration_ms,
        }
    }
}

/// The memory family's envelope of an answer.
#[derive(Serialize)]
struct MemorySuccess<'a> {
    ok: bool,
    data: Value,
    meta: MetaOut<'a>,
}

/// The memory family's envelope of an error.
#[derive(Serialize)]
struct MemoryFailure<'a> {
    ok: bool,
    error: crate::error::MemoryError<'a>,
    meta: MetaOut<'a>,
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
                Family::Memory => serde_json::to_value(MemorySuccess {
                    ok: true,
                    data: value,
                    meta: MetaOut::from(meta),
                })
                .unwrap_or_default(),
                Family::Registry => value,
            };
            json_response(reply.status, &body)
        }
        Payload::JsonText(text) => {
            let bytes = match family {
                Family::Memory => {
                    let meta = serde_json::to_string(&MetaOut::from(meta)).unwrap_or_default();
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
        Family::Memory => serde_json::to_value(MemoryFailure {
            ok: false,
            error: err.memory_error(),
            meta: MetaOut::from(meta),
        }),
        Family::Registry => serde_json::to_value(err.registry_body()),
    };
    let mut resp = json_response(status, &body.unwrap_or_default());
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn text(resp: Response<Body>) -> String {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// A reply sent as text and one sent as a value get the same envelope, byte for byte, with
    /// every object's keys sorted (the wire format does not depend on how a handler answered).
    #[tokio::test]
    async fn text_and_value_replies_have_one_envelope() {
        #[derive(Serialize)]
        struct Out {
            zeta: u8,
            alpha: &'static str,
        }
        let meta = Meta {
            request_id: "req_1",
            tenant_id: Some("ten_1"),
            duration_ms: 3,
        };
        let typed = text(render(
            Reply::ok(Out {
                zeta: 1,
                alpha: "a",
            }),
            Family::Memory,
            &meta,
        ))
        .await;
        let as_text = Reply::ok_json_text(r#"{"alpha":"a","zeta":1}"#.to_string());
        let as_text = text(render(as_text, Family::Memory, &meta)).await;
        let expected = r#"{"ok":true,"data":{"alpha":"a","zeta":1},"meta":{"durationMs":3,"requestId":"req_1","tenantId":"ten_1"}}"#;
        assert_eq!(as_text, expected);
        let sorted = r#"{"data":{"alpha":"a","zeta":1},"meta":{"durationMs":3,"requestId":"req_1","tenantId":"ten_1"},"ok":true}"#;
        assert_eq!(typed, sorted);
        let err = text(render_error(
            &Error::not_found("thing"),
            Family::Memory,
            &meta,
        ))
        .await;
        assert!(
            err.starts_with(r#"{"error":{"code":"not_found","message":"#),
            "{err}"
        );
        assert!(
            err.ends_with(
                r#""meta":{"durationMs":3,"requestId":"req_1","tenantId":"ten_1"},"ok":false}"#
            ),
            "{err}"
        );
    }
}
