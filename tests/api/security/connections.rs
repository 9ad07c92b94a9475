//! Connection hygiene: idle keep-alive connections close, slow and stalled bodies are cut with a
//! 408, a flood of idle connections cannot keep a new request out (also under a low open-file
//! limit), stalled clients do not hold shutdown, and over-limit bodies get a readable 413 even
//! when the client writes its whole body before reading.

use super::raw::{read_head, read_to_close, status_of};
use crate::support::{engram_bin, run_python, TestServer};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn connect(srv: &TestServer) -> TcpStream {
    TcpStream::connect(srv.state().bound).await.unwrap()
}

fn capture_head(key: &str, extra: &str) -> String {
    format!(
        "POST /v1/capture HTTP/1.1\r\nhost: engram\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let srv = TestServer::start_with(|c| c.idle_timeout = Duration::from_secs(1)).await;
    let mut s = connect(&srv).await;
    s.write_all(b"GET /v1/health HTTP/1.1\r\nhost: engram\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s, Duration::from_secs(10)).await;
    assert_eq!(status_of(&head), Some(200), "{head}");
    let (_, closed) = read_to_close(&mut s, Duration::from_secs(20)).await;
    assert!(closed, "the idle connection stayed open");
    srv.shutdown().await;
}

#[tokio::test]
async fn a_trickled_body_and_a_body_never_sent_get_408() {
    let srv = TestServer::start_with(|c| {
        c.body_read_timeout = Duration::from_secs(1);
        c.body_min_rate = 100;
    })
    .await;
    // Declared, never sent.
    let mut s = connect(&srv).await;
    s.write_all(capture_head(&srv.key, "content-length: 200\r\n").as_bytes())
        .await
        .unwrap();
    let (resp, closed) = read_to_close(&mut s, Duration::from_secs(20)).await;
    assert_eq!(status_of(&resp), Some(408), "{resp}");
    assert!(
        closed && resp.to_ascii_lowercase().contains("connection: close"),
        "{resp}"
    );
    // One byte every 200 ms: far below 100 bytes a second.
    let s = connect(&srv).await;
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(capture_head(&srv.key, "content-length: 500\r\n").as_bytes())
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if wr.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        use tokio::io::AsyncReadExt;
        let _ = rd.read_to_end(&mut buf).await;
    })
    .await;
    assert!(read.is_ok(), "the trickle was never cut");
    let resp = String::from_utf8_lossy(&buf);
    assert_eq!(status_of(&resp), Some(408), "{resp}");
    trickle.abort();
    srv.shutdown().await;
}

#[tokio::test]
async fn a_flood_of_idle_connections_cannot_keep_health_out() {
    let srv = TestServer::start_with(|c| c.max_connections = 8).await;
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(connect(&srv).await);
    }
    let started = Instant::now();
    let (s, b) = crate::support::send(srv.http.get(srv.url("/v1/health"))).await;
    assert_eq!(s, 200, "{b}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "health waited {:?}",
        started.elapsed()
    );
    drop(idle);
    srv.shutdown().await;
}

/// The finding as reported: `ulimit -n 256` and 300 idle connections made health time out.
#[tokio::test]
async fn health_answers_under_a_low_open_file_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 256 && exec \"{}\" serve --listen 127.0.0.1:0 --data-dir \"{}\"",
            engram_bin().display(),
            dir.path().display()
        ))
        .env_remove("ENGRAM_BOOTSTRAP_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("engram listening on http://") {
                let _ = tx.send(a.trim().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("engram starts");
    let mut idle = Vec::new();
    for _ in 0..300 {
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&addr)).await {
            Ok(Ok(s)) => idle.push(s),
            _ => break,
        }
    }
    let http = crate::support::client();
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        http.get(format!("http://{addr}/v1/health")).send(),
    )
    .await
    .expect("health answered in time")
    .expect("health answered");
    assert_eq!(resp.status(), 200);
    drop(idle);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_stalled_body_does_not_hold_shutdown() {
    let srv = TestServer::start().await; // shutdown grace: 30 s
    let mut s = connect(&srv).await;
    s.write_all(capture_head(&srv.key, "content-length: 100\r\n").as_bytes())
        .await
        .unwrap();
    s.write_all(b"{\"type\":").await.unwrap();
    let state = srv.running.as_ref().unwrap().state.clone();
    crate::support::wait_for("the request to arrive", Duration::from_secs(10), || {
        let n = state.inflight.load(std::sync::atomic::Ordering::SeqCst);
        async move { (n >= 1).then_some(()) }
    })
    .await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), srv.shutdown())
        .await
        .expect("shutdown was held by a stalled client");
    assert!(started.elapsed() < Duration::from_secs(15));
    let (resp, _) = read_to_close(&mut s, Duration::from_secs(5)).await;
    if let Some(status) = status_of(&resp) {
        assert_eq!(status, 503, "{resp}");
    }
}

/// Writes a whole request (head and body) before reading anything, as simple clients do.
fn write_all_then_read(addr: std::net::SocketAddr, head: String, body: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).expect("the whole body could be written");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn over_limit_bodies_get_a_readable_413() {
    let srv = TestServer::start().await;
    let addr = srv.state().bound;
    let key = srv.key.clone();
    let resp = tokio::task::spawn_blocking(move || {
        let body = vec![b' '; 3 << 20];
        let head = capture_head(&key, &format!("content-length: {}\r\n", body.len()));
        write_all_then_read(addr, head, body)
    })
    .await
    .unwrap();
    assert_eq!(status_of(&resp), Some(413), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("connection: close"),
        "{resp}"
    );
    assert!(resp.contains("payload_too_large"), "{resp}");
    // A 20 MiB batch (cap 16 MiB).
    let key = srv.key.clone();
    let resp = tokio::task::spawn_blocking(move || {
        let body = vec![b' '; 20 << 20];
        let head = format!(
            "POST /v1/capture/batch HTTP/1.1\r\nhost: engram\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        write_all_then_read(addr, head, body)
    })
    .await
    .unwrap();
    assert_eq!(status_of(&resp), Some(413), "{resp}");
    // Chunked, no declared length: refused once past the cap, the rest drained.
    let key = srv.key.clone();
    let resp = tokio::task::spawn_blocking(move || {
        let mut body = Vec::new();
        for _ in 0..48 {
            body.extend_from_slice(format!("{:x}\r\n", 64 << 10).as_bytes());
            body.extend_from_slice(&vec![b' '; 64 << 10]);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        let head = capture_head(&key, "transfer-encoding: chunked\r\n");
        write_all_then_read(addr, head, body)
    })
    .await
    .unwrap();
    assert_eq!(status_of(&resp), Some(413), "{resp}");
    // A request refused before its body is read (bad key) is drained too.
    let resp = tokio::task::spawn_blocking(move || {
        let body = vec![b' '; 900 << 10];
        let head = capture_head(
            "hk_live_0000000000000000000000000000000000",
            &format!("content-length: {}\r\n", body.len()),
        );
        write_all_then_read(
            addr,
            head.replace("\r\n\r\n", "\r\nconnection: close\r\n\r\n"),
            body,
        )
    })
    .await
    .unwrap();
    assert_eq!(status_of(&resp), Some(401), "{resp}");
    srv.shutdown().await;
}

/// A client that asks `Expect: 100-continue` for an over-limit body is refused without being
/// told to send it.
#[tokio::test]
async fn an_expect_continue_client_is_refused_before_it_sends() {
    let srv = TestServer::start().await;
    let mut s = connect(&srv).await;
    let head = capture_head(
        &srv.key,
        &format!("content-length: {}\r\nexpect: 100-continue\r\n", 3 << 20),
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let resp = read_head(&mut s, Duration::from_secs(10)).await;
    assert_eq!(status_of(&resp), Some(413), "{resp}");
    assert!(!resp.contains("100 Continue"), "{resp}");
    srv.shutdown().await;
}

/// Python's urllib writes the whole body before it reads: every try must read the 413.
#[tokio::test]
async fn python_clients_read_the_413() {
    let srv = TestServer::start().await;
    let base = srv.base.clone();
    let key = srv.key.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_python(
            "security_413.py",
            &[("ENGRAM_BASE_URL", &base), ("ENGRAM_API_KEY", &key)],
        )
    })
    .await
    .unwrap();
    assert!(out.contains("413 30/30"), "{out}");
    srv.shutdown().await;
}
