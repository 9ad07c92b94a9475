//! The bare hyper HTTP/1.1 server both benchmarks measure engram against: every request is
//! answered with a small JSON 202 after its body is read — the ceiling of the HTTP stack on this
//! machine. Used by `examples/bare.rs` (its own process, for wrk) and `examples/loadgen.rs`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// Serves `listener` until the runtime stops.
pub async fn serve(listener: tokio::net::TcpListener) {
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
