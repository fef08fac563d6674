//! TLS to the nodes, with the `tls` feature (rustls over aws-lc, as the node). Without it the
//! client speaks plain HTTP/2 only, and a CA given to it is refused at connect, saying so.

use tonic::transport::Endpoint;

/// How the client checks the nodes' certificates.
#[cfg(feature = "tls")]
pub(crate) type Tls = tonic::transport::ClientTlsConfig;

/// Never made: a client built without TLS has none.
#[cfg(not(feature = "tls"))]
#[derive(Clone, Debug)]
pub(crate) enum Tls {}

/// The TLS settings trusting `ca` (PEM), when there is one.
pub(crate) fn trusting(ca: Option<Vec<u8>>) -> Result<Option<Tls>, String> {
    #[cfg(feature = "tls")]
    return Ok(ca.map(|ca| Tls::new().ca_certificate(tonic::transport::Certificate::from_pem(ca))));
    #[cfg(not(feature = "tls"))]
    match ca {
        Some(_) => Err("this client was built without its `tls` feature, which https:// nodes need".into()),
        None => Ok(None),
    }
}

/// `endpoint`, connecting with `tls`.
pub(crate) fn secured(endpoint: Endpoint, tls: &Tls) -> Result<Endpoint, tonic::transport::Error> {
    #[cfg(feature = "tls")]
    return endpoint.tls_config(tls.clone());
    #[cfg(not(feature = "tls"))]
    {
        drop(endpoint);
        match *tls {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_ca_is_taken_with_the_tls_feature_and_refused_by_name_without_it() {
        assert!(super::trusting(None).unwrap().is_none());
        let taken = super::trusting(Some(b"-----BEGIN CERTIFICATE-----".to_vec()));
        if cfg!(feature = "tls") {
            assert!(taken.unwrap().is_some());
        } else {
            assert!(taken.unwrap_err().contains("`tls` feature"));
        }
    }
}
