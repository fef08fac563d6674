//! Quiver's errors as Python exceptions: one class per kind of failure, under `QuiverError`,
//! each carrying the stable code (`.code`) and the message that names the row or field.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use quiver_client::{Error, ErrorKind};

create_exception!(quiver, QuiverError, PyException, "A Quiver call failed; `code` is its stable code.");
create_exception!(
    quiver,
    NotFoundError,
    QuiverError,
    "A named project, entity, feature set, feature or vector does not exist."
);
create_exception!(
    quiver,
    InvalidArgumentError,
    QuiverError,
    "The request is wrong as sent: a definition, row, key or argument."
);
create_exception!(
    quiver,
    PermissionDeniedError,
    QuiverError,
    "The token is valid but lacks the right (a role, a project, the PII grant)."
);
create_exception!(quiver, UnauthenticatedError, QuiverError, "No valid token.");
create_exception!(
    quiver,
    UnavailableError,
    QuiverError,
    "The cluster cannot answer now (unreachable, busy, no leader): retry."
);

/// The exception of `error`, with its code set.
pub fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    let code = error.code();
    let kind = error.server_error().map(quiver_core::Error::kind);
    let err = match (&error, kind) {
        (_, Some(ErrorKind::NotFound)) => NotFoundError::new_err(message),
        (_, Some(ErrorKind::InvalidArgument)) => InvalidArgumentError::new_err(message),
        (_, Some(ErrorKind::PermissionDenied)) => PermissionDeniedError::new_err(message),
        (_, Some(ErrorKind::Unauthenticated)) => UnauthenticatedError::new_err(message),
        (_, Some(ErrorKind::Unavailable)) | (Error::Transport { .. } | Error::Timeout(_), _) => {
            UnavailableError::new_err(message)
        }
        (Error::Arrow(_), _) => InvalidArgumentError::new_err(message),
        _ => QuiverError::new_err(message),
    };
    Python::attach(|py| {
        // Setting an attribute on a fresh exception object cannot fail but on memory exhaustion.
        let _ = err.value(py).setattr("code", code);
    });
    err
}

/// An argument refused before any request: `InvalidArgumentError` with `message`.
pub fn invalid(message: impl Into<String>) -> PyErr {
    to_py(Error::Server(quiver_core::Error::InvalidArgument(message.into())))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("QuiverError", py.get_type::<QuiverError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("InvalidArgumentError", py.get_type::<InvalidArgumentError>())?;
    m.add("PermissionDeniedError", py.get_type::<PermissionDeniedError>())?;
    m.add("UnauthenticatedError", py.get_type::<UnauthenticatedError>())?;
    m.add("UnavailableError", py.get_type::<UnavailableError>())?;
    Ok(())
}
