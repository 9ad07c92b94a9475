//! Server-sent events from an upstream: splitting a provider's SSE byte stream into events
//! (`http::sse` frames what this server streams).

/// Splits an upstream SSE byte stream into `(event, data)` pairs (`data` lines joined by `\n`).
#[derive(Default)]
pub struct SseParser {
    buf: String,
    event: String,
    data: Vec<String>,
}

impl SseParser {
    /// Feeds bytes; returns the events completed by them.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<(String, String)> {
        self.buf.push_str(&String::from_utf8_lossy(chunk));
        let mut out = Vec::new();
        while let Some(pos) = self.buf.find('\n') {
            let line: String = self.buf.drain(..=pos).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() || !self.event.is_empty() {
                    out.push((
                        std::mem::take(&mut self.event),
                        std::mem::take(&mut self.data).join("\n"),
                    ));
                }
            } else if let Some(v) = line.strip_prefix("data:") {
                self.data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
            } else if let Some(v) = line.strip_prefix("event:") {
                self.event = v.trim().to_string();
            }
            // `id:`, `retry:` and `:` comments carry nothing a model answer needs.
        }
        out
    }

    /// Reads the next chunk of an upstream body: the events it completes, and whether the body
    /// ended (then an unterminated last event is included).
    pub async fn next_events(
        &mut self,
        resp: &mut reqwest::Response,
    ) -> Result<(Vec<(String, String)>, bool), reqwest::Error> {
        Ok(match resp.chunk().await? {
            Some(c) => (self.push(&c), false),
            None => (self.finish().into_iter().collect(), true),
        })
    }

    /// An event left unterminated when the stream ended.
    pub fn finish(&mut self) -> Option<(String, String)> {
        let rest = std::mem::take(&mut self.buf);
        if !rest.trim().is_empty() {
            self.push(format!("{rest}\n").as_bytes());
        }
        if self.data.is_empty() {
            None
        } else {
            Some((
                std::mem::take(&mut self.event),
                std::mem::take(&mut self.data).join("\n"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.push(b"event: message_start\nda").is_empty());
        let ev = p.push(b"ta: {\"a\":1}\n\ndata: [DONE]\r\n\r\n");
        assert_eq!(
            ev,
            vec![
                ("message_start".to_string(), "{\"a\":1}".to_string()),
                (String::new(), "[DONE]".to_string())
            ]
        );
        assert!(p.finish().is_none());
    }
}
