//! JSON answers of the HTTP API, and its errors as clients see them: the HTTP status of the error's gRPC code (as
//! Google's APIs map them; a request over the size cap is 413), and a JSON body naming the
//! stable code, the gRPC status and the message, which names what is wrong.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use quiver_core::{Error as CoreError, ErrorKind};

/// A JSON answer.
pub fn body(status: StatusCode, body: &serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string()).into_response()
}

/// The answer to a request that failed with `error`.
pub fn error(error: CoreError) -> Response {
    let (status, name) = match error.kind() {
        _ if matches!(error, CoreError::TooLarge(_)) => (StatusCode::PAYLOAD_TOO_LARGE, "RESOURCE_EXHAUSTED"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        ErrorKind::InvalidArgument => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
        ErrorKind::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
        ErrorKind::FailedPrecondition => (StatusCode::BAD_REQUEST, "FAILED_PRECONDITION"),
        ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
        ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
    };
    let retry_after = match &error {
        CoreError::RateLimited { retry_after_ms, .. } | CoreError::Busy { retry_after_ms, .. } => {
            Some(retry_after_ms.div_ceil(1000).max(1))
        }
        _ => None,
    };
    let answer = serde_json::json!({"error": {"code": error.code(), "status": name, "message": error.to_string()}});
    let mut response = self::body(status, &answer);
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_status_and_a_body_that_names_the_problem() {
        let cases = [
            (CoreError::UnknownProject("p".into()), StatusCode::NOT_FOUND),
            (CoreError::InvalidArgument("x".into()), StatusCode::BAD_REQUEST),
            (CoreError::TooLarge("big".into()), StatusCode::PAYLOAD_TOO_LARGE),
            (CoreError::RateLimited { reason: "r".into(), retry_after_ms: 1500 }, StatusCode::TOO_MANY_REQUESTS),
            (CoreError::Unavailable("u".into()), StatusCode::SERVICE_UNAVAILABLE),
            (CoreError::Unauthenticated("no".into()), StatusCode::UNAUTHORIZED),
            (CoreError::PermissionDenied("pii".into()), StatusCode::FORBIDDEN),
            (CoreError::Internal("i".into()), StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (e, status) in cases {
            let code = e.code();
            let response = error(e);
            assert_eq!(response.status(), status, "{code}");
        }
        let limited = error(CoreError::RateLimited { reason: "r".into(), retry_after_ms: 1500 });
        assert_eq!(limited.headers()[header::RETRY_AFTER], "2");
    }
}
