//! A connection to one node as the client uses it: a channel whose every call carries the
//! client's token. A leaf: the client and its router both build on it.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub(crate) type Conn = InterceptedService<Channel, Credentials>;

/// The token a client sends, as `authorization: Bearer …`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Credentials(pub(crate) Option<MetadataValue<Ascii>>);

impl Interceptor for Credentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}
