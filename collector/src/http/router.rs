//! A router composed of peers: each [`Routes`] claims the paths that are its
//! own and answers them; a request no peer claims is a 404 JSON answer.
//! `serve.rs` mounts ingest, the dashboard and the status endpoints side by
//! side, and none of them knows the others.

use super::connection::ConnectionSlot;
use super::response::{Body, error};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// An answer some time later.
pub type Answer = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// A request without its body, and the connection it came on (`None` when
/// answered in-process): what routes that never read a body work with.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: hyper::Method,
    pub uri: hyper::Uri,
    pub headers: hyper::HeaderMap,
    pub connection: Option<ConnectionSlot>,
}

impl RequestHead {
    /// The head of `request`, which came on `connection`.
    pub fn of(request: Request<Incoming>, connection: &ConnectionSlot) -> RequestHead {
        let (parts, _body) = request.into_parts();
        RequestHead {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            connection: Some(connection.clone()),
        }
    }
}

/// A peer of the router.
pub trait Routes: Send + Sync + 'static {
    /// Whether `path` is one of these routes (whatever the method: a wrong
    /// one gets this peer's 405).
    fn claims(&self, path: &str) -> bool;

    /// The answer to a request whose path this peer claims.
    fn serve(self: Arc<Self>, request: Request<Incoming>, connection: &ConnectionSlot) -> Answer;

    /// The server stopped accepting connections and drains the open ones:
    /// refuse new work from now on.
    fn draining(&self) {}
}

/// The peers, asked in the order they were mounted.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<Arc<dyn Routes>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes.len())
            .finish()
    }
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Adds a peer, asked after those mounted before it.
    pub fn mount(mut self, routes: Arc<dyn Routes>) -> Router {
        self.routes.push(routes);
        self
    }

    /// The answer to one request. Never fails: every error is a response.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        connection: &ConnectionSlot,
    ) -> Response<Body> {
        let path = request.uri().path();
        if let Some(routes) = self.routes.iter().find(|r| r.claims(path)) {
            return Arc::clone(routes).serve(request, connection).await;
        }
        let reason = format!("no route for {} {}", request.method(), request.uri().path());
        error(StatusCode::NOT_FOUND, "not_found", &reason)
    }

    /// Tells every peer the server is draining.
    pub fn draining(&self) {
        for routes in &self.routes {
            routes.draining();
        }
    }
}
