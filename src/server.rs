//! The HTTP server: accept loop, HTTP/1.1 and h2c on one port, timeouts, graceful shutdown, and
//! the per-request pipeline (request id → route → auth → limits → body cap → handler → render).

use crate::app::AppState;
use crate::error::Error;
use crate::http::response::{render, render_error, Body, Meta};
use crate::http::{Ctx, Query};
use crate::router;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Accepts connections until `stop` flips, then waits for in-flight requests up to the grace
/// period.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors or a reset before accept: back off briefly.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(state, req, peer).await) }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let grace = state.config.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "in-flight requests did not finish within the shutdown grace period"
        );
    }
}

/// Counts a request out of `AppState::inflight` however its handling ends.
struct InflightGuard(Arc<AppState>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn request_id(req: &Request<Incoming>) -> String {
    req.headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| crate::ids::new("req"))
}

async fn read_body(body: Incoming, cap: usize, declared: Option<u64>) -> Result<Bytes, Error> {
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(Error::PayloadTooLarge { limit: cap });
    }
    match Limited::new(body, cap).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Error::PayloadTooLarge { limit: cap })
        }
        Err(e) => Err(Error::BadRequest {
            message: format!("could not read the request body: {e}"),
            details: vec![],
        }),
    }
}

async fn handle(state: Arc<AppState>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let request_id = request_id(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let matched = router::find(&method, &path);
    let (route_name, family) = match &matched {
        Ok(m) => (m.route.pattern, m.route.family),
        Err(_) => ("unmatched", router::family_of_path(&path)),
    };
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = route_name,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
        tenant = tracing::field::Empty,
    );
    state.inflight.fetch_add(1, Ordering::SeqCst);
    let _inflight = InflightGuard(state.clone());
    async move {
        let mut tenant: Option<String> = None;
        let mut rate = None;
        let result = async {
            let m = matched?;
            let query = Query::parse(req.uri().query())?;
            let principal = if m.route.auth {
                state.limits.throttled(peer.ip())?;
                let header = req
                    .headers()
                    .get(hyper::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                let p = match state.auth.authenticate(header).await {
                    Ok(p) => p,
                    Err(e) => {
                        state.limits.check_anonymous(peer.ip())?;
                        return Err(e);
                    }
                };
                tenant = Some(p.tenant_id.clone());
                let admission = state.limits.admit(&p);
                rate = admission.info;
                admission.result?;
                state.limits.prepare(&p).await?;
                Some(p)
            } else {
                None
            };
            let declared = req
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let (parts, body) = req.into_parts();
            let body = read_body(body, m.route.body_cap, declared).await?;
            let ctx = Ctx {
                state: state.clone(),
                request_id: request_id.clone(),
                method: parts.method,
                path: path.clone(),
                route: m.route.pattern,
                family: m.route.family,
                headers: parts.headers,
                query,
                params: m.params,
                body,
                principal,
                peer: peer.ip(),
                started,
            };
            (m.route.handler)(ctx).await
        }
        .await;

        let meta = Meta {
            request_id: &request_id,
            tenant_id: tenant.as_deref(),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        let mut resp = match result {
            Ok(reply) => render(reply, family, &meta),
            Err(e) => {
                if let Error::Internal(detail) = &e {
                    tracing::error!(request_id = %request_id, error = %detail, "internal error");
                }
                render_error(&e, family, &meta)
            }
        };
        let headers = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            headers.insert(X_REQUEST_ID.clone(), v);
        }
        if let Some(r) = rate {
            headers.insert("x-ratelimit-limit", HeaderValue::from(r.limit));
            headers.insert("x-ratelimit-remaining", HeaderValue::from(r.remaining));
            headers.insert("x-ratelimit-reset", HeaderValue::from(r.reset));
        }
        let status = resp.status().as_u16();
        let span = tracing::Span::current();
        span.record("status", status);
        span.record("latency_ms", started.elapsed().as_millis() as u64);
        if let Some(t) = &tenant {
            span.record("tenant", t.as_str());
        }
        if status >= 500 {
            tracing::warn!(status, "request failed");
        } else {
            tracing::debug!(status, "request done");
        }
        resp
    }
    .instrument(span)
    .await
}
