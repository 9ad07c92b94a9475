//! The route table: `(method, path pattern)` → handler, with each route's family, whether it is
//! authenticated and its body cap. Unknown paths are 404; known paths with another method are 405
//! with `Allow`. Both are rendered in the memory format unless the path belongs to the registry.

use crate::api;
use crate::error::{Error, Family, Result};
use crate::http::{Ctx, Reply};
use hyper::Method;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

pub type HandlerFut = Pin<Box<dyn Future<Output = Result<Reply>> + Send>>;
pub type Handler = fn(Ctx) -> HandlerFut;

pub const KIB: usize = 1024;
pub const MIB: usize = 1024 * 1024;
/// Default body cap (docs/api.md "Common rules").
pub const DEFAULT_CAP: usize = 256 * KIB;

pub struct Route {
    pub method: Method,
    pub pattern: &'static str,
    pub family: Family,
    pub auth: bool,
    pub body_cap: usize,
    pub handler: Handler,
    segments: Vec<Seg>,
}

enum Seg {
    Lit(&'static str),
    Param,
}

macro_rules! route {
    ($m:ident $p:literal $fam:ident $f:path) => {
        route!($m $p $fam $f, DEFAULT_CAP)
    };
    ($m:ident $p:literal $fam:ident $f:path, $cap:expr) => {
        Route::new(Method::$m, $p, Family::$fam, true, $cap, |ctx| Box::pin($f(ctx)))
    };
    // Not authenticated by tenant key: the handler checks its own token (the operator API).
    (@token $m:ident $p:literal $fam:ident $f:path) => {
        route!(@token $m $p $fam $f, DEFAULT_CAP)
    };
    (@token $m:ident $p:literal $fam:ident $f:path, $cap:expr) => {
        Route::new(Method::$m, $p, Family::$fam, false, $cap, |ctx| Box::pin($f(ctx)))
    };
}

impl Route {
    fn new(
        method: Method,
        pattern: &'static str,
        family: Family,
        auth: bool,
        body_cap: usize,
        handler: Handler,
    ) -> Route {
        let segments = pattern
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.starts_with('{') {
                    Seg::Param
                } else {
                    Seg::Lit(s)
                }
            })
            .collect();
        Route {
            method,
            pattern,
            family,
            auth,
            body_cap,
            handler,
            segments,
        }
    }

    fn matches(&self, parts: &[&str]) -> Option<Vec<String>> {
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (seg, part) in self.segments.iter().zip(parts) {
            match seg {
                Seg::Lit(l) if l == part => {}
                Seg::Lit(_) => return None,
                Seg::Param => params.push(percent_decode_segment(part)?),
            }
        }
        Some(params)
    }
}

fn percent_decode_segment(s: &str) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    crate::http::Query::parse(Some(&format!("v={}", s.replace('+', "%2B"))))
        .ok()
        .and_then(|q| q.get("v").map(str::to_string))
}

fn table() -> Vec<Route> {
    use api::{health, memory as m, registry as r};
    let mut routes = vec![
        // Memory family (docs/api.md "Memory family").
        route!(POST "/v1/capture" Memory m::capture::capture, MIB),
        route!(POST "/v1/capture/batch" Memory m::capture::capture_batch, 16 * MIB),
        route!(GET "/v1/events" Memory m::events::list_events),
        route!(GET "/v1/events/{id}" Memory m::events::get_event),
        route!(GET "/v1/memories" Memory m::events::list_memories),
        route!(GET "/v1/memories/{id}" Memory m::events::get_memory),
        route!(DELETE "/v1/sessions/{id}" Memory m::events::forget_session),
        route!(POST "/v1/learn" Memory m::learn::learn),
        route!(GET "/v1/learn/{id}" Memory m::learn::learn_status),
        route!(POST "/v1/synthesize" Memory m::synthesize::synthesize),
        route!(GET "/v1/artifacts" Memory m::artifacts::list),
        route!(GET "/v1/artifacts/{id}" Memory m::artifacts::get),
        route!(DELETE "/v1/artifacts/{id}" Memory m::artifacts::delete),
        route!(PATCH "/v1/artifacts/{id}" Memory m::artifacts::patch),
        route!(GET "/v1/usage-metrics" Memory m::metrics::usage_metrics),
        // The operator API (docs/api.md "Operator API"): its own token, checked by the handlers.
        route!(@token POST "/v1/admin/tenants" Memory api::admin::create_tenant),
        route!(@token GET "/v1/admin/tenants" Memory api::admin::list_tenants),
        route!(@token DELETE "/v1/admin/tenants/{id}" Memory api::admin::delete_tenant),
        route!(@token POST "/v1/admin/tenants/{id}/reset" Memory api::admin::reset_tenant),
        route!(@token POST "/v1/admin/reset" Memory api::admin::reset_all),
        route!(@token GET "/v1/admin/tenants/{id}/export" Memory api::admin::export_tenant),
        route!(@token POST "/v1/admin/import" Memory api::admin::import_tenant, 256 * MIB),
        route!(@token GET "/v1/admin/requests" Memory api::fixture::list_requests),
        route!(@token DELETE "/v1/admin/requests" Memory api::fixture::clear_requests),
        route!(@token POST "/v1/admin/faults" Memory api::fixture::create_fault),
        route!(@token GET "/v1/admin/faults" Memory api::fixture::list_faults),
        route!(@token DELETE "/v1/admin/faults" Memory api::fixture::delete_faults),
        route!(@token DELETE "/v1/admin/faults/{id}" Memory api::fixture::delete_fault),
        // The memory gateway (docs/api.md "Memory gateway").
        route!(POST "/v1/chat/completions" Memory m::gateway::chat_completions, 4 * MIB),
        // The vault (docs/api.md "Vault").
        route!(POST "/v1/vault/query" Memory m::vault::query),
        route!(POST "/v1/vault/query/{id}/reveal" Memory m::vault::reveal),
        route!(GET "/v1/vault/audit" Memory m::vault::audit),
        route!(POST "/v1/vaults" Memory m::vault::create_vault),
        route!(GET "/v1/vaults" Memory m::vault::list_vaults),
        route!(DELETE "/v1/vaults/{id}" Memory m::vault::delete_vault),
        route!(POST "/v1/vaults/{id}/items" Memory m::vault::create_item),
        route!(GET "/v1/vaults/{id}/items" Memory m::vault::list_items),
        route!(PATCH "/v1/vaults/{id}/items/{item}" Memory m::vault::patch_item),
        route!(DELETE "/v1/vaults/{id}/items/{item}" Memory m::vault::delete_item),
        route!(POST "/v1/api-keys" Memory m::keys::create),
        route!(GET "/v1/api-keys" Memory m::keys::list),
        route!(DELETE "/v1/api-keys/{id}" Memory m::keys::revoke),
        // Registry family (docs/api.md "Registry family").
        route!(GET "/v1/projects" Registry r::projects::list),
        route!(POST "/v1/projects" Registry r::projects::create),
        route!(GET "/v1/projects/{id}" Registry r::projects::get),
        route!(GET "/v1/projects/{id}/members" Registry r::projects::list_members),
        route!(POST "/v1/projects/{id}/members" Registry r::projects::invite),
        route!(DELETE "/v1/projects/{id}/members/{member}" Registry r::projects::remove_member),
        route!(GET "/v1/projects/{id}/connectors" Registry r::connectors::list),
        route!(POST "/v1/projects/{id}/connectors" Registry r::connectors::create),
        route!(DELETE "/v1/projects/{id}/connectors/{connector}" Registry r::connectors::delete),
        route!(GET "/v1/connectors/registry" Registry r::connectors::catalogue),
        route!(POST "/v1/agents/deploy" Registry r::agents::deploy),
        route!(GET "/v1/agents" Registry r::agents::list),
        route!(GET "/v1/agents/{id}" Registry r::agents::get),
        route!(DELETE "/v1/agents/{id}" Registry r::agents::delete),
        route!(POST "/v1/agents/{id}/invoke" Registry r::invoke::invoke),
        route!(GET "/v1/usage" Registry r::usage::usage),
        route!(GET "/v1/me" Registry r::usage::me),
    ];
    // Health is the one unauthenticated route.
    routes.push(Route::new(
        Method::GET,
        "/v1/health",
        Family::Memory,
        false,
        DEFAULT_CAP,
        |ctx| Box::pin(health::health(ctx)),
    ));
    routes
}

fn routes() -> &'static [Route] {
    static ROUTES: OnceLock<Vec<Route>> = OnceLock::new();
    ROUTES.get_or_init(table)
}

/// A matched route with its path parameters.
pub struct Matched {
    pub route: &'static Route,
    pub params: Vec<String>,
}

/// The family a path's errors are rendered in before (or without) a match.
pub fn family_of_path(path: &str) -> Family {
    const REGISTRY: [&str; 5] = [
        "/v1/projects",
        "/v1/agents",
        "/v1/connectors",
        "/v1/usage",
        "/v1/me",
    ];
    let registry = REGISTRY.iter().any(|p| {
        path == *p || path.starts_with(&format!("{p}/")) || path.starts_with(&format!("{p}?"))
    });
    if registry {
        Family::Registry
    } else {
        Family::Memory
    }
}

/// Finds the route for a request: 404 for an unknown path, 405 (with the allowed methods) for a
/// known path and another method. HEAD is answered like GET.
/// Memory-family routes also answer without the `/v1` prefix (an SDK given a base URL without
/// it would otherwise get 404 on every call, which its `wrap()` swallows).
pub fn find(method: &Method, path: &str) -> Result<Matched> {
    let mut parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let unprefixed = parts.first() != Some(&"v1");
    if unprefixed {
        parts.insert(0, "v1");
    }
    let mut allow: Vec<&'static str> = Vec::new();
    for route in routes() {
        if unprefixed && route.family != Family::Memory {
            continue;
        }
        if let Some(params) = route.matches(&parts) {
            if route.method == method || (method == Method::HEAD && route.method == Method::GET) {
                return Ok(Matched { route, params });
            }
            allow.push(route.method.as_str_static());
        }
    }
    if allow.is_empty() {
        Err(Error::NotFound(format!("no route for {method} {path}")))
    } else {
        allow.sort_unstable();
        allow.dedup();
        Err(Error::MethodNotAllowed { allow })
    }
}

trait MethodName {
    fn as_str_static(&self) -> &'static str;
}

impl MethodName for Method {
    fn as_str_static(&self) -> &'static str {
        match *self {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            Method::HEAD => "HEAD",
            Method::OPTIONS => "OPTIONS",
            _ => "GET",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_routes_answer_without_the_prefix_registry_routes_do_not() {
        let m = find(&Method::POST, "/capture").unwrap();
        assert_eq!(m.route.pattern, "/v1/capture");
        let m = find(&Method::POST, "/vault/query/vit_1/reveal").unwrap();
        assert_eq!(m.params, vec!["vit_1".to_string()]);
        assert!(find(&Method::GET, "/agents").is_err());
        assert!(find(&Method::GET, "/me").is_err());
    }

    #[test]
    fn matches_params_and_methods() {
        let m = find(&Method::GET, "/v1/agents/ag_1").unwrap();
        assert_eq!(m.route.pattern, "/v1/agents/{id}");
        assert_eq!(m.params, vec!["ag_1".to_string()]);
        match find(&Method::PUT, "/v1/agents/ag_1") {
            Err(Error::MethodNotAllowed { allow }) => assert_eq!(allow, vec!["DELETE", "GET"]),
            _ => panic!("expected 405"),
        }
        assert!(matches!(
            find(&Method::GET, "/v1/nope"),
            Err(Error::NotFound(_))
        ));
        assert_eq!(family_of_path("/v1/agents/x"), Family::Registry);
        assert_eq!(family_of_path("/v1/agentsx"), Family::Memory);
    }
}
