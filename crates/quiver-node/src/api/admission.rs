//! The gRPC server's outermost layer: every request is admitted on its headers
//! (`auth::Gate::admit_headers`: a member's proof, or a token and its rate) before its body is
//! read, and a refused one is answered from here. A caller who may not use the node costs it
//! its headers and no more: the body stays unread and the stream is reset.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::body::Body;

use crate::auth::Gate;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AdmissionLayer {
    pub gate: Arc<Gate>,
    pub metrics: Metrics,
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission { inner, layer: self.clone() }
    }
}

#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    layer: AdmissionLayer,
}

impl<S, B> tower::Service<http::Request<B>> for Admission<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<http::Response<Body>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.layer.gate.admit_headers(&mut request) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(status) => {
                self.layer.metrics.admission_refused(status.code());
                Either::Right(ready(Ok(status.into_http())))
            }
        }
    }
}
