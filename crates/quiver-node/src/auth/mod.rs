//! Who is calling, and may they. With `[auth] enabled` every request carries a bearer
//! token (`authorization: Bearer qvt_…`), looked up by its hash among the tokens the meta
//! group records, so a revoked token stops working on a node as soon as the node applies
//! the revocation (a heartbeat later). What each role may do is `quiver_core::access`.
//! Every request, authenticated or not, passes the caller's `[limits]`.
//! The RPCs between nodes take no token but a member's certificate (`member`).

pub mod audit;
pub mod limits;
pub mod member;
pub mod token;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use quiver_core::Error as CoreError;
use quiver_core::access::{Need, Principal};
use quiver_core::audit::AuditEntry;
use tonic::{Request, Status};

use crate::config::Config;
use crate::error::Result;
use crate::meta_reader::MetaReader;
use audit::AuditLog;
use limits::Limits;

pub struct Gate {
    enabled: bool,
    /// TLS is on: the RPCs between nodes need a certificate signed by the cluster's CA.
    member_certs: bool,
    meta: MetaReader,
    limits: Limits,
}

/// One admitted request: what it calls, who calls it and from where, and what it asked
/// to do (noted by `allow`, for the audit log).
#[derive(Debug)]
pub struct Call {
    pub method: &'static str,
    pub caller: Principal,
    /// The caller's address, as the connection gave it.
    from: Option<SocketAddr>,
    /// The project and the operation of the last `allow`.
    subject: Mutex<(Option<String>, String)>,
}

/// The token of an `authorization` header's value: after `Bearer `, else all of it.
pub fn bearer(header: &str) -> &str {
    header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).unwrap_or(header).trim()
}

impl Call {
    pub fn new(method: &'static str, caller: Principal, from: Option<SocketAddr>) -> Call {
        Call { method, caller, from, subject: Mutex::default() }
    }

    /// A request without a valid token, as the audit log names its caller.
    pub fn unauthenticated(method: &'static str, from: Option<SocketAddr>) -> Call {
        let mut nobody = Principal::open();
        nobody.name = "unauthenticated".into();
        Call::new(method, nobody, from)
    }

    /// `PermissionDenied` unless the caller may do what `need` says.
    pub fn allow(&self, need: Need) -> Result<()> {
        let subject = match need {
            Need::Caller => (None, String::new()),
            Need::Project { project, action, .. } => (Some(project.to_string()), action.to_string()),
            Need::Cluster { action } => (None, action.to_string()),
        };
        *self.subject.lock().unwrap_or_else(|e| e.into_inner()) = subject;
        Ok(self.caller.check(need)?)
    }

    /// Puts a read of the personal features `features` finds on record in `log` (node
    /// `node`) before their values leave the node. With authentication off every caller is
    /// anonymous: no record, and `features` is not even asked.
    pub async fn record_personal_read(
        &self,
        log: &AuditLog,
        node: u64,
        features: impl FnOnce() -> quiver_core::Result<Vec<String>>,
    ) -> Result<()> {
        if !self.caller.is_authenticated() {
            return Ok(());
        }
        let features = features()?;
        if features.is_empty() {
            return Ok(());
        }
        let detail = format!("read personal features {}", features.join(", "));
        log.record(self.entry(node, Some(detail), "ok".into())).await
    }

    /// An audit entry for this call at node `node`: `detail`, or what it asked to do.
    pub fn entry(&self, node: u64, detail: Option<String>, outcome: String) -> AuditEntry {
        let (project, asked) = self.subject.lock().unwrap_or_else(|e| e.into_inner()).clone();
        AuditEntry {
            at: crate::raft::now_micros(),
            actor: self.caller.name.clone(),
            from: self.from.map_or_else(|| "unknown".into(), |a| a.to_string()),
            node,
            action: self.method.to_string(),
            project,
            detail: detail.unwrap_or(asked),
            outcome,
        }
    }
}

impl Gate {
    pub fn new(config: &Config, meta: MetaReader) -> Gate {
        Gate {
            enabled: config.auth.enabled,
            member_certs: config.tls.enabled(),
            meta,
            limits: Limits::new(config.limits.clone()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The caller of a request that carries `secret` (a token, or nothing).
    pub fn caller(&self, secret: Option<&str>) -> Result<Principal> {
        if !self.enabled {
            return Ok(Principal::open());
        }
        let Some(secret) = secret.filter(|s| !s.is_empty()) else {
            let how = "no token: pass one as `authorization: Bearer <token>` (quiverctl --token or QUIVER_TOKEN)";
            return Err(CoreError::Unauthenticated(how.into()).into());
        };
        let state = self.meta.latest();
        let info = state.tokens.get(&token::hash(secret)).ok_or_else(|| {
            CoreError::Unauthenticated("the token is not one this cluster issued (mistyped, or from elsewhere)".into())
        })?;
        Ok(info.principal(crate::raft::now_micros())?)
    }

    /// Authenticates a request and takes it from its caller's limits.
    pub fn admit<T: prost::Message>(&self, method: &'static str, request: &Request<T>) -> Result<Call> {
        let header = request.metadata().get("authorization").map(|v| v.to_str().unwrap_or_default());
        let caller = self.caller(header.map(bearer))?;
        self.limits.admit(&caller.name, || request.get_ref().encoded_len(), Instant::now())?;
        Ok(Call::new(method, caller, request.remote_addr()))
    }

    /// Refuses an RPC between nodes from anything but a member (`member`).
    pub fn member<T>(&self, method: &str, request: &Request<T>) -> std::result::Result<(), Status> {
        member::check(self.member_certs, method, request)
    }
}
