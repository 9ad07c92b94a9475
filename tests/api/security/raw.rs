//! Raw HTTP/1.1 over TCP: requests written byte by byte as a test needs them, and a loopback
//! listener that records every connection it receives (the target of SSRF attempts).

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a `Target` received on one connection.
#[derive(Clone, Debug, Default)]
pub struct Received {
    pub head: String,
}

/// A loopback listener that answers every request with a fixed response and records what came.
pub struct Target {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Target {
    /// Answers with `status` (and a `Location` when `location` is given) and a body that names
    /// itself as internal, so a relayed body is easy to spot.
    pub async fn start(status: u16, location: Option<&str>) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let body = "INTERNAL-ONLY-BODY secret=hunter2";
        let mut response = format!(
            "HTTP/1.1 {status} Whatever\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        if let Some(l) = location {
            response.push_str(&format!("location: {l}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(body);
        let rec = received.clone();
        let task = tokio::spawn(async move {
            // Bounded: a test makes a handful of attempts at most.
            for _ in 0..200 {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let rec = rec.clone();
                let response = response.clone();
                tokio::spawn(async move {
                    let head = read_head(&mut s, Duration::from_secs(5)).await;
                    rec.lock().unwrap().push(Received { head });
                    let _ = s.write_all(response.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Target {
            port,
            received,
            task,
        }
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn heads(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.head.clone())
            .collect()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads up to the end of a request or response head (or what arrives before `limit`).
pub async fn read_head(s: &mut TcpStream, limit: Duration) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 1 << 20 {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads everything until the peer closes (or `limit` passes: then `closed` is false).
pub async fn read_to_close(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&buf).into_owned(), true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return (String::from_utf8_lossy(&buf).into_owned(), false),
        }
    }
}

/// The status code of a raw response.
pub fn status_of(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}
