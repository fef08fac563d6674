//! Errors cross gRPC typed: the core error travels as JSON in the status details, its stable
//! code in the message and in the `quiver-code` metadata, so any client can match on it.

use quiver_core::Error;
use quiver_core::error::ErrorKind;
use tonic::{Code, Status};

pub fn status_from_error(err: &Error) -> Status {
    let code = match err.kind() {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Internal => Code::Internal,
    };
    let details = serde_json::to_vec(err).unwrap_or_default();
    let mut status = Status::with_details(code, format!("[{}] {err}", err.code()), details.into());
    if let Ok(value) = err.code().parse() {
        status.metadata_mut().insert("quiver-code", value);
    }
    status
}

/// The typed error a Quiver server sent, or `None` for a status from elsewhere
/// (transport, proxy, a non-Quiver server).
pub fn error_from_status(status: &Status) -> Option<Error> {
    serde_json::from_slice(status.details()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_round_trip_through_status() {
        let err = Error::row(3, "conv_rate", "expected float64, got string");
        let status = status_from_error(&err);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("[Q1201] row 3"));
        assert_eq!(error_from_status(&status), Some(err));
        assert_eq!(error_from_status(&Status::unavailable("down")), None);
    }

    #[test]
    fn every_error_variant_round_trips_with_its_code() {
        for err in Error::examples() {
            let status = status_from_error(&err);
            assert_eq!(error_from_status(&status).as_ref(), Some(&err));
            assert_eq!(status.metadata().get("quiver-code").and_then(|v| v.to_str().ok()), Some(err.code()));
            assert_eq!(status.message(), format!("[{}] {err}", err.code()));
        }
    }
}
