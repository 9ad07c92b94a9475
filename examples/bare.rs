//! A bare hyper HTTP/1.1 server for benchmarks: answers every request with a small JSON 202 after
//! reading its body — the ceiling of the HTTP stack on this machine, driven by the same external
//! load generator as engram (`scripts/bench.sh`).
//!
//! ```text
//! cargo run --release --example bare -- [127.0.0.1:0]
//! ```
//! Prints `bare listening on http://<addr>` and serves until killed. Listens on loopback only.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let addr: std::net::SocketAddr = addr.parse().expect("an address like 127.0.0.1:0");
    assert!(
        addr.ip().is_loopback(),
        "the baseline listens on loopback only"
    );
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    eprintln!(
        "bare listening on http://{}",
        listener.local_addr().unwrap()
    );
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    let body = Full::new(Bytes::from_static(
                        br#"{"ok":true,"data":{"eventId":"evt_0","status":"ingested"}}"#,
                    ));
                    let mut resp = Response::new(body);
                    *resp.status_mut() = StatusCode::ACCEPTED;
                    Ok::<_, std::convert::Infallible>(resp)
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
