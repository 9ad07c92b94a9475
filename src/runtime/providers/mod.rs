//! Model providers: one function per wire protocol, all taking the same `ModelRequest` and
//! answering the same `ModelReply`.
//!
//! Invariant: an upstream's HTTP error status, a connection failure or an unparseable answer is a
//! `ProviderError::Upstream` whose message names the provider, the status and what the upstream
//! said (trimmed), never a panic.

pub mod anthropic;
pub mod offline;
pub mod openai;

use super::sse::SseParser;
use super::ProviderError;

/// Most characters of an upstream error body quoted in our error message.
const QUOTE_LIMIT: usize = 300;

/// The upstream's error body, trimmed for quoting in a 502 message.
pub(crate) fn quote(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(QUOTE_LIMIT) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_string(),
    }
}

/// Maps a non-success upstream answer to an error.
async fn status_error(provider: &str, resp: reqwest::Response) -> ProviderError {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .or_else(|| v.get("error"))
                .and_then(|m| m.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| quote(&body));
    ProviderError::Upstream(format!(
        "the {provider} model API answered HTTP {}: {}",
        status.as_u16(),
        if detail.is_empty() {
            "(empty body)".to_string()
        } else {
            detail
        }
    ))
}

fn send_error(provider: &str, e: reqwest::Error) -> ProviderError {
    let what = if e.is_connect() {
        "could not connect to"
    } else if e.is_timeout() {
        "timed out talking to"
    } else {
        "failed talking to"
    };
    ProviderError::Upstream(format!("engram {what} the {provider} model API: {e}"))
}

/// Sends a request to a model API: a transport failure or a non-success status becomes an
/// `Upstream` error naming the provider.
pub(crate) async fn send(
    provider: &str,
    rb: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ProviderError> {
    let resp = rb.send().await.map_err(|e| send_error(provider, e))?;
    if !resp.status().is_success() {
        return Err(status_error(provider, resp).await);
    }
    Ok(resp)
}

/// The JSON body of a non-streamed model answer.
pub(crate) async fn json_body(
    provider: &str,
    resp: reqwest::Response,
) -> Result<serde_json::Value, ProviderError> {
    resp.json().await.map_err(|e| {
        ProviderError::Upstream(format!(
            "the {provider} model API sent an unreadable answer: {e}"
        ))
    })
}

/// Whether a stream's reader wants more events.
pub(crate) enum Flow {
    More,
    Done,
}

/// Reads a provider's SSE response event by event, handing `(event, data)` to `handle`, until it
/// answers `Done` or the stream ends. A broken stream is an upstream error naming the provider.
pub(crate) async fn read_events(
    resp: &mut reqwest::Response,
    provider: &str,
    mut handle: impl FnMut(&str, &str) -> Result<Flow, ProviderError>,
) -> Result<(), ProviderError> {
    let mut parser = SseParser::default();
    loop {
        let (events, ended) = parser.next_events(resp).await.map_err(|e| {
            ProviderError::Upstream(format!("the {provider} model stream broke: {e}"))
        })?;
        for (event, data) in &events {
            if let Flow::Done = handle(event, data)? {
                return Ok(());
            }
        }
        if ended {
            return Ok(());
        }
    }
}
