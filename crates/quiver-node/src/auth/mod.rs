//! Who is calling, and may they. With `[auth] enabled` every request carries a bearer
//! token (`authorization: Bearer qvt_…`), looked up by its hash among the tokens the meta
//! group records, so a revoked token stops working on a node as soon as the node applies
//! the revocation (a heartbeat later). What each role may do is `quiver_core::access`.
//! Every request, authenticated or not, passes the caller's `[limits]`. All of it is decided
//! on the request's headers, before its body is read (`Gate::admit_headers`). The RPCs between
//! nodes take no token but a member's proof (`trust::member`).

pub mod audit;
pub mod limits;
pub mod refusals;
pub mod write_tally;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quiver_core::Error as CoreError;
use quiver_core::access::{Need, Principal, Scope};
use quiver_core::audit::AuditEntry;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Request, Status};

use crate::meta_reader::MetaReader;
use crate::trust::secret::ClusterSecret;
use crate::trust::{member, token};
use audit::AuditLog;
use limits::Limits;
use quiver_store::config::Config;
use quiver_store::error::Result;
use refusals::{Refusals, Refused};

/// How stale this node's view of the tokens may be: a revoked token is refused everywhere
/// within this bound (a node catches up every second, `server::keep_caught_up`).
pub const TOKEN_VIEW_BOUND: Duration = Duration::from_secs(10);

pub struct Gate {
    enabled: bool,
    /// How RPCs between nodes prove they come from a member.
    members: member::Proof,
    /// The cluster a member's RPC must come from.
    cluster: member::ClusterMark,
    meta: MetaReader,
    limits: Limits,
    /// Requests refused for want of a valid token, per source and minute.
    refusals: Refusals,
}

/// The caller admission found on a request's headers, for its handler (`Gate::admit`).
#[derive(Clone)]
struct Admitted(Principal);

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

    /// The same caller, from the same address, calling `method`.
    pub fn as_method(&self, method: &'static str) -> Call {
        Call::new(method, self.caller.clone(), self.from)
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

    /// Adds `detail` to what the audit entry says this call asked.
    pub fn note(&self, detail: String) {
        let mut subject = self.subject.lock().unwrap_or_else(|e| e.into_inner());
        subject.1 = format!("{}; {detail}", subject.1);
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

    /// Counts a write of `rows` rows to `set` for the audit log (`write_tally`); with
    /// authentication off every caller is anonymous, and nothing is counted.
    pub fn count_write(&self, log: &AuditLog, set: &str, rows: u64) {
        if !self.caller.is_authenticated() {
            return;
        }
        let project = self.subject.lock().unwrap_or_else(|e| e.into_inner()).0.clone().unwrap_or_default();
        let from = self.from.map_or_else(|| "unknown".into(), |a| a.to_string());
        log.writes.count(&self.caller.name, &project, set, rows, from, quiver_core::time::now_micros());
    }

    /// An audit entry for this call at node `node`: `detail`, or what it asked to do.
    pub fn entry(&self, node: u64, detail: Option<String>, outcome: String) -> AuditEntry {
        let (project, asked) = self.subject.lock().unwrap_or_else(|e| e.into_inner()).clone();
        AuditEntry {
            at: quiver_core::time::now_micros(),
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

/// The RPCs of `grpc.health.v1`, answered to any caller: readiness, as `/health` tells it.
pub const HEALTH_RPCS: &str = "/grpc.health.v1.Health/";

impl Gate {
    pub fn new(config: &Config, meta: MetaReader, secret: Option<ClusterSecret>, cluster: member::ClusterMark) -> Gate {
        let members = match secret {
            Some(secret) => member::Proof::Secret(secret),
            None => member::Proof::Certificate,
        };
        Gate {
            enabled: config.auth.enabled,
            members,
            cluster,
            meta,
            limits: Limits::new(config.limits.clone()),
            refusals: Refusals::default(),
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
        // A revocation counts everywhere within the bound: a node that cannot tell whether
        // it missed one (cut off from the metadata leader) trusts no token meanwhile.
        if !self.meta.caught_up_within(TOKEN_VIEW_BOUND) {
            return Err(CoreError::Unavailable(format!(
                "this node has not caught up with the metadata leader in the last {}s, so it cannot tell whether \
                 a token was revoked; ask another node",
                TOKEN_VIEW_BOUND.as_secs()
            ))
            .into());
        }
        let state = self.meta.latest();
        let info = state.tokens.get(&token::hash(secret)).ok_or_else(|| {
            CoreError::Unauthenticated("the token is not one this cluster issued (mistyped, or from elsewhere)".into())
        })?;
        Ok(info.principal(quiver_core::time::now_micros())?)
    }

    /// `caller`, counting a refusal against its source (`refusals`): a source past its
    /// allowance this minute is told to back off rather than why it was refused.
    pub fn authenticate(&self, secret: Option<&str>, from: Option<SocketAddr>, what: &str) -> Result<Principal> {
        self.caller(secret).map_err(|e| {
            let now = quiver_core::time::now_micros();
            let issued = secret.and_then(|s| self.meta.latest().tokens.get(&token::hash(s)).cloned());
            let refused = Refused {
                what: what.to_string(),
                why: format!("[{}] {e}", e.code()),
                project: issued.as_ref().and_then(|t| match &t.scope {
                    Scope::Project(p) => Some(p.clone()),
                    Scope::Cluster => None,
                }),
                token: issued.map(|t| t.name),
            };
            if !self.refusals.count(from.map(|a| a.ip()), refused, now) {
                return e;
            }
            let wait = 60_000 - (now / 1000).rem_euclid(60_000);
            CoreError::RateLimited {
                reason: format!("more than {} requests without a valid token this minute", refusals::ALLOWANCE),
                retry_after_ms: wait as u64,
            }
            .into()
        })
    }

    /// The audit entries of refusals in minutes that have ended (node `node`).
    pub fn refusals_to_record(&self, node: u64) -> Vec<AuditEntry> {
        self.refusals.drain(node, quiver_core::time::now_micros())
    }

    /// Admission of a gRPC request on its headers, before its body is read: an RPC between
    /// nodes needs a member's proof; any other, with authentication on, a valid token, and
    /// its caller must be within its rate. The caller is left in the request's extensions.
    pub fn admit_headers<B>(&self, request: &mut http::Request<B>) -> std::result::Result<(), Status> {
        let path = request.uri().path();
        let method = path.rsplit('/').next().unwrap_or_default();
        // Health checks answer what `/health` answers, to probes that hold no token.
        if path.starts_with(HEALTH_RPCS) {
            return Ok(());
        }
        if member::is_member_route(path) {
            self.members.check(method, request)?;
            self.cluster.admit(method, request.headers())?;
            return self.not_forgotten(method, request.headers());
        }
        let header = request.headers().get("authorization").map(|v| v.to_str().unwrap_or_default());
        let from = remote_addr(request);
        let caller = self.authenticate(header.map(bearer), from, method)?;
        self.limits.rate(&caller.name, Instant::now()).map_err(quiver_store::error::Error::from)?;
        request.extensions_mut().insert(Admitted(caller));
        Ok(())
    }

    /// Refuses a member's RPC from a node the cluster forgot (`node remove`), saying so
    /// (`member::REMOVED`): that node then stops. An id at or above `next_node_id` is one
    /// this node's view has not seen given yet (a joiner), not a forgotten one.
    fn not_forgotten(&self, method: &str, headers: &http::HeaderMap) -> std::result::Result<(), Status> {
        let Some(id) = headers.get(member::NODE_HEADER).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) else {
            return Ok(());
        };
        let state = self.meta.latest();
        if id < state.next_node_id && !state.nodes.contains_key(&id) {
            return Err(Status::permission_denied(format!("{method}: node {id} {}", member::REMOVED)));
        }
        Ok(())
    }

    /// What admission checks of a gRPC request's caller, for an HTTP request: one request
    /// from `caller`'s rate, and its body (`bytes`, when it says) within the size cap.
    pub fn limit(&self, caller: &str, bytes: Option<u64>) -> Result<()> {
        self.limits.rate(caller, Instant::now())?;
        if let Some(bytes) = bytes {
            self.limits.size(caller, || usize::try_from(bytes).unwrap_or(usize::MAX))?;
        }
        Ok(())
    }

    /// The call a handler serves: its caller as admission found it (`admit_headers`), within
    /// the caller's size limit. A request admission never saw is refused.
    pub fn admit<T: prost::Message>(&self, method: &'static str, request: &Request<T>) -> Result<Call> {
        let Some(Admitted(caller)) = request.extensions().get::<Admitted>().cloned() else {
            return Err(CoreError::Unauthenticated(format!("{method} reached its handler unadmitted")).into());
        };
        self.limits.size(&caller.name, || request.get_ref().encoded_len())?;
        Ok(Call::new(method, caller, request.remote_addr()))
    }
}

/// The address a request came from, as the connection gave it (plain or TLS).
fn remote_addr<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    let tcp = extensions.get::<TcpConnectInfo>();
    let tls = || extensions.get::<TlsConnectInfo<TcpConnectInfo>>().map(TlsConnectInfo::get_ref);
    tcp.or_else(tls).and_then(TcpConnectInfo::remote_addr)
}
