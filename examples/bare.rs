//! A bare hyper HTTP/1.1 server for benchmarks (`bare_parts/server.rs`), in its own process so
//! an external load generator drives it like engram (`scripts/bench.sh`).
//!
//! ```text
//! cargo run --release --example bare -- [127.0.0.1:0]
//! ```
//! Prints `bare listening on http://<addr>` and serves until killed. Listens on loopback only.

#[path = "bare_parts/server.rs"]
mod bare_server;

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
    bare_server::serve(listener).await;
}
