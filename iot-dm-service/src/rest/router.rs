//! The route table: every route is one [`Route`] (verb, path pattern, the rights it needs, the
//! handler), collected from the route groups in [`table`]. Adding a group (jobs,
//! configurations) is one more line there.

use std::future::Future;
use std::pin::Pin;

use http::Method;

use super::context::{Ctx, Reply};
use super::error::ApiError;
use super::handlers;
use crate::access::{Need, Rights};

/// What a handler returns.
pub(crate) type Handled = Pin<Box<dyn Future<Output = Result<Reply, ApiError>> + Send>>;
/// A handler: an `async fn(Ctx) -> Result<Reply, ApiError>` behind a plain function pointer.
pub(crate) type Handler = fn(Ctx) -> Handled;

/// One route.
pub(crate) struct Route {
    pub(crate) method: Method,
    /// `/devices/{id}/plan`: literal segments and `{name}` parameters (one segment each).
    pub(crate) path: &'static str,
    pub(crate) need: Need,
    pub(crate) handler: Handler,
    /// The handler reads the request body itself, streamed (uploads), instead of getting it
    /// whole within the body limit.
    pub(crate) streams_body: bool,
    /// A device's own SAS token is accepted too (artifact downloads).
    pub(crate) devices_too: bool,
}

impl Route {
    /// The handler reads the body itself ([`Ctx::upload`](super::context::Ctx)).
    pub(crate) fn streaming_body(mut self) -> Route {
        self.streams_body = true;
        self
    }

    /// Devices may call the route with their own SAS token.
    pub(crate) fn devices_too(mut self) -> Route {
        self.devices_too = true;
        self
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// `route!(GET "/devices/{id}", need, handler_fn)`.
macro_rules! route {
    ($method:ident $path:literal, $need:expr, $handler:path) => {
        $crate::rest::router::Route {
            method: http::Method::$method,
            path: $path,
            need: $need,
            handler: |cx| Box::pin($handler(cx)),
            streams_body: false,
            devices_too: false,
        }
    };
}
pub(crate) use route;

/// Reading the identity registry: RegistryRead (RegistryWrite also reads).
pub(crate) fn registry_read() -> Need {
    Need::AnyOf(Rights::REGISTRY_READ | Rights::REGISTRY_WRITE)
}

/// Changing the identity registry and the lifecycle: RegistryWrite.
pub(crate) fn registry_write() -> Need {
    Need::AnyOf(Rights::REGISTRY_WRITE)
}

/// Reading twins, queries, the archive and service statistics: RegistryRead or ServiceConnect.
pub(crate) fn twin_read() -> Need {
    Need::AnyOf(Rights::REGISTRY_READ | Rights::SERVICE_CONNECT)
}

/// Changing twins and invoking methods: ServiceConnect.
pub(crate) fn service_connect() -> Need {
    Need::AnyOf(Rights::SERVICE_CONNECT)
}

/// Administering access policies: all four rights (the owner).
pub(crate) fn owner() -> Need {
    Need::AllOf(Rights::ALL)
}

/// Every route, group by group.
pub(crate) fn table() -> Vec<Route> {
    [
        handlers::devices::routes(),
        handlers::lifecycle::routes(),
        handlers::twins::routes(),
        handlers::messages::routes(),
        handlers::query::routes(),
        handlers::statistics::routes(),
        handlers::policies::routes(),
        handlers::certificates::routes(),
        handlers::jobs::routes(),
        handlers::configurations::routes(),
        handlers::alerts::routes(),
        handlers::events::routes(),
        handlers::artifacts::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(&'static str),
    Param(&'static str),
}

fn segments(path: &'static str) -> Vec<Segment> {
    path.trim_matches('/')
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => Segment::Param(name),
                None => Segment::Literal(s),
            },
        )
        .collect()
}

/// The compiled route table.
#[derive(Debug)]
pub(crate) struct Router {
    routes: Vec<(Route, Vec<Segment>)>,
}

/// Path parameters: name and percent-decoded value.
pub(crate) type Params = Vec<(&'static str, String)>;

/// A matched route and its path parameters.
pub(crate) type Matched<'a> = (&'a Route, Params);

impl Router {
    pub(crate) fn new(routes: Vec<Route>) -> Router {
        Router {
            routes: routes
                .into_iter()
                .map(|r| {
                    let s = segments(r.path);
                    (r, s)
                })
                .collect(),
        }
    }

    /// The route for `method` and `path` (literal segments win over parameters), 404 when no
    /// pattern matches the path, 405 (with the allowed methods) when none has the method.
    pub(crate) fn find(&self, method: &Method, path: &str) -> Result<Matched<'_>, ApiError> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut best: Option<(usize, Matched<'_>)> = None;
        let mut allowed: Vec<&str> = Vec::new();
        for (route, segs) in &self.routes {
            let Some(params) = match_segments(segs, &parts)? else {
                continue;
            };
            if route.method != *method {
                if !allowed.contains(&route.method.as_str()) {
                    allowed.push(route.method.as_str());
                }
                continue;
            }
            let literals = segs
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count();
            if best.as_ref().is_none_or(|(l, _)| literals > *l) {
                best = Some((literals, (route, params)));
            }
        }
        match best {
            Some((_, matched)) => Ok(matched),
            None if allowed.is_empty() => Err(ApiError::not_found_route(method, path)),
            None => Err(ApiError::method_not_allowed(
                method,
                path,
                allowed.join(", "),
            )),
        }
    }
}

fn match_segments(segs: &[Segment], parts: &[&str]) -> Result<Option<Params>, ApiError> {
    if segs.len() != parts.len() {
        return Ok(None);
    }
    let mut params = Vec::new();
    for (seg, part) in segs.iter().zip(parts) {
        match seg {
            Segment::Literal(l) => {
                if !l.eq_ignore_ascii_case(part) {
                    return Ok(None);
                }
            }
            Segment::Param(name) => {
                if part.is_empty() {
                    return Ok(None);
                }
                let decoded = percent_encoding::percent_decode_str(part)
                    .decode_utf8()
                    .map_err(|_| ApiError::argument(name, "the path segment is not UTF-8"))?;
                params.push((*name, decoded.into_owned()));
            }
        }
    }
    Ok(Some(params))
}

/// One route of the REST API, as listed by [`routes`](super::routes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// The HTTP method.
    pub method: Method,
    /// The path pattern, with `{name}` parameters.
    pub path: &'static str,
    /// The rights the route needs (its `Display` reads `any of [RegistryRead, RegistryWrite]`).
    pub need: Need,
}

/// Every route the REST server serves, in table order.
pub fn routes() -> Vec<RouteInfo> {
    table()
        .into_iter()
        .map(|r| RouteInfo {
            need: r.need,
            method: r.method,
            path: r.path,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new(table())
    }

    #[test]
    fn literal_segments_win_and_params_are_decoded() {
        let r = router();
        let (route, params) = r.find(&Method::POST, "/devices/query").unwrap();
        assert_eq!(route.path, "/devices/query");
        assert!(params.is_empty());
        let (route, params) = r.find(&Method::GET, "/devices/a%2Fb%20c").unwrap();
        assert_eq!(route.path, "/devices/{id}");
        assert_eq!(params, vec![("id", "a/b c".to_string())]);
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        let r = router();
        let e = r.find(&Method::GET, "/nothing/here").unwrap_err();
        assert_eq!(e.status.as_u16(), 404);
        let e = r.find(&Method::PATCH, "/devices/d1").unwrap_err();
        assert_eq!(e.status.as_u16(), 405);
        let allow = e.allow.unwrap();
        for m in ["GET", "PUT", "DELETE"] {
            assert!(allow.contains(m), "{allow}");
        }
    }

    #[test]
    fn every_route_is_unique() {
        let t = table();
        for (i, a) in t.iter().enumerate() {
            for b in &t[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "duplicate route {a:?}"
                );
            }
        }
    }
}
