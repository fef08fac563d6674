//! Plaintext to a node that speaks TLS fails inside HTTP/2 (a connection closed, a frame of
//! invalid size), which says nothing of the cause. After such a failure the endpoint is
//! asked once more, by hand: a TLS server answers the HTTP/2 preface with a TLS alert record
//! (content type 21, version 3.x), and the user is told to use https:// and the CA.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A TLS alert record's first bytes: content type 21, major version 3.
const TLS_ALERT: [u8; 2] = [0x15, 0x03];

/// Does the node at `endpoint` (`http://host:port` or `host:port`) answer in TLS?
pub fn speaks_tls(endpoint: &str) -> bool {
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let Some(addr) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else { return false };
    let wait = Duration::from_secs(2);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, wait) else { return false };
    let mut answer = [0u8; 2];
    stream.set_read_timeout(Some(wait)).is_ok()
        && stream.write_all(PREFACE).is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && answer == TLS_ALERT
}

/// The error to show for `error` when it came of plaintext to a TLS port.
pub fn explain(endpoint: &str, error: &anyhow::Error) -> Option<String> {
    let rpc_failed = error.chain().any(|c| matches!(c.downcast_ref(), Some(quiver_client::Error::Rpc(_))));
    (rpc_failed && !endpoint.starts_with("https://") && speaks_tls(endpoint)).then(|| {
        format!(
            "{endpoint} speaks TLS, and this request was plaintext: connect with https:// and the cluster's CA \
             (--endpoint https://… --ca ca.pem, or QUIVER_ENDPOINT and QUIVER_CA) [C0001]"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_alert_is_told_from_a_plaintext_answer_and_from_silence() {
        let serve = |reply: &'static [u8]| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            std::thread::spawn(move || {
                let (mut conn, _) = listener.accept().unwrap();
                let mut preface = [0u8; PREFACE.len()];
                conn.read_exact(&mut preface).unwrap();
                conn.write_all(reply).unwrap();
            });
            addr
        };
        assert!(speaks_tls(&format!("http://{}", serve(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]))));
        // An HTTP/2 server answers with a SETTINGS frame.
        assert!(!speaks_tls(&serve(&[0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00])));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        assert!(!speaks_tls(&closed), "nobody listening");
    }
}
