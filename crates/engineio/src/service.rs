//! Tower integration: the engine as a `Service`, or as a `Layer` in front of other routes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use tower_layer::Layer;
use tower_service::Service;

use crate::engine::{BoxError, Engine, EngineHandler};

/// The fallback behind an engine used alone: answers 404 to every path outside the engine's.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotFound;

impl<B> Service<Request<B>> for NotFound {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        let mut response = Response::new(Full::new(Bytes::from_static(b"Not Found")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        std::future::ready(Ok(response))
    }
}

/// Serves Engine.IO requests under the engine's path and passes every other request to
/// `inner`.
pub struct EngineService<H: EngineHandler, S = NotFound> {
    engine: Engine<H>,
    inner: S,
}

impl<H: EngineHandler, S: Clone> Clone for EngineService<H, S> {
    fn clone(&self) -> Self {
        EngineService {
            engine: self.engine.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<H: EngineHandler> EngineService<H> {
    /// The engine alone; other paths get 404.
    pub fn new(engine: Engine<H>) -> Self {
        EngineService {
            engine,
            inner: NotFound,
        }
    }
}

impl<H: EngineHandler, S> EngineService<H, S> {
    /// The engine in front of `inner`.
    pub fn with_inner(engine: Engine<H>, inner: S) -> Self {
        EngineService { engine, inner }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<H, S, B, ResBody> Service<Request<B>> for EngineService<H, S>
where
    H: EngineHandler,
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Either<Full<Bytes>, ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if self.engine.matches(request.uri().path()) {
            let engine = self.engine.clone();
            Box::pin(async move { Ok(engine.handle(request).await.map(Either::Left)) })
        } else {
            let future = self.inner.call(request);
            Box::pin(async move { Ok(future.await?.map(Either::Right)) })
        }
    }
}

/// A `Layer` that puts an engine in front of a service.
pub struct EngineLayer<H: EngineHandler> {
    engine: Engine<H>,
}

impl<H: EngineHandler> Clone for EngineLayer<H> {
    fn clone(&self) -> Self {
        EngineLayer {
            engine: self.engine.clone(),
        }
    }
}

impl<H: EngineHandler> EngineLayer<H> {
    /// A layer serving `engine`.
    pub fn new(engine: Engine<H>) -> Self {
        EngineLayer { engine }
    }
}

impl<H: EngineHandler, S> Layer<S> for EngineLayer<H> {
    type Service = EngineService<H, S>;

    fn layer(&self, inner: S) -> Self::Service {
        EngineService::with_inner(self.engine.clone(), inner)
    }
}
