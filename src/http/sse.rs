//! Server-sent events this server streams: framing (`event: <name>` with a JSON `data` line, and
//! the final `data: [DONE]`) and a response body fed by a channel.
//!
//! Invariant: frames are produced whole (one `Bytes` per event), so a client never sees half an
//! event, and each one is handed to hyper as soon as it exists (no buffering here).

use super::Body;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use tokio::sync::mpsc;

/// One `event: <name>` frame with a JSON `data` line (written through a JSON value, whose
/// objects sort their keys, like every other body).
pub fn frame(event: &str, data: &impl serde::Serialize) -> Bytes {
    let data = serde_json::to_value(data).unwrap_or_default();
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// The final `data: [DONE]` frame.
pub fn done_marker() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// A response body fed by a channel: every `Bytes` sent is flushed to the client as it comes;
/// when the client goes away the receiver is dropped and the sender sees the channel closed.
pub fn channel_body(capacity: usize) -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel::<Bytes>(capacity);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    (tx, StreamBody::new(stream).boxed_unsync())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_events() {
        let f = frame("chunk", &serde_json::json!({"delta": "hi"}));
        assert_eq!(&f[..], b"event: chunk\ndata: {\"delta\":\"hi\"}\n\n");
        assert_eq!(&done_marker()[..], b"data: [DONE]\n\n");
    }
}
