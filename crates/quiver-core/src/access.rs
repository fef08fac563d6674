//! Who may do what: tokens, the role each grants on a project, and what a request needs.
//!
//! A token grants one role on one project, or on every project for a cluster admin:
//!
//! | role | may |
//! |---|---|
//! | viewer | read online values, training sets, statistics, drift, definitions and files |
//! | writer | the viewer's reads, and push, ingest and materialize |
//! | admin | the writer's, and apply definitions, save datasets, manage the project's tokens |
//! | cluster admin | everything on every project, and membership, sharding, backups and any token |
//!
//! Features tagged [`PII_TAG`] (or in a feature set so tagged) are readable only with a
//! token that also holds the PII grant on their project: a read of one without it fails
//! naming the feature, never with a silent null. With authentication off every caller is
//! [`Principal::open`] and may do anything.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::registry::{FeatureSet, Project, ResolvedFeature};

/// The tag that marks a feature (or every feature of a feature set) as personal data.
pub const PII_TAG: &str = "pii";

/// The name a member certificate carries among its DNS names (`quiverctl cert create-node`),
/// and a client's certificate never does: what makes a certificate a member's. Under
/// `.invalid`, which never resolves, so it names no host.
pub const MEMBER_CERT_NAME: &str = "member.quiver.invalid";

/// A role on a project; each includes what the ones before it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Role {
    Viewer,
    Writer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Role> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "writer" => Ok(Role::Writer),
            "admin" => Ok(Role::Admin),
            other => Err(Error::InvalidArgument(format!("unknown role '{other}': viewer, writer or admin"))),
        }
    }
}

/// What a token's role applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Every project, and the cluster itself: a cluster admin.
    Cluster,
    Project(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Cluster => f.write_str("the cluster"),
            Scope::Project(p) => write!(f, "project '{p}'"),
        }
    }
}

/// A token as the cluster records it: everything but its secret (only a hash of it is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Unique for the cluster's life, revoked or not, so the audit log never confuses two.
    pub name: String,
    pub scope: Scope,
    /// `Admin` for a cluster admin.
    pub role: Role,
    /// May read features tagged `pii` in its scope.
    pub pii: bool,
    /// Microseconds since the epoch.
    pub created_at: i64,
    /// The name of the token that created it.
    pub created_by: String,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl TokenInfo {
    /// The caller this token makes at `now`, or why it is no longer valid.
    pub fn principal(&self, now: i64) -> Result<Principal> {
        if let Some(at) = self.revoked_at {
            let when = crate::time::format_timestamp(at);
            return Err(Error::Unauthenticated(format!("token '{}' was revoked at {when}", self.name)));
        }
        if let Some(at) = self.expires_at.filter(|at| *at <= now) {
            let when = crate::time::format_timestamp(at);
            return Err(Error::Unauthenticated(format!("token '{}' expired at {when}", self.name)));
        }
        Ok(Principal { name: self.name.clone(), grant: Some((self.scope.clone(), self.role, self.pii)) })
    }
}

/// What a request needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// Any valid token: the shard map.
    Caller,
    /// This role on the project; `action` says what for, in the error.
    Project { project: &'a str, role: Role, action: &'a str },
    /// A cluster admin: membership, sharding, backups.
    Cluster { action: &'a str },
}

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name; `anonymous` with authentication off.
    pub name: String,
    /// The token's scope, role and PII grant; `None` when authentication is off.
    grant: Option<(Scope, Role, bool)>,
}

impl Principal {
    /// The caller of a node with authentication off: may do anything.
    pub fn open() -> Principal {
        Principal { name: "anonymous".into(), grant: None }
    }

    /// A token's caller, as [`TokenInfo::principal`] makes it; for tests and tools.
    pub fn with_grant(name: &str, scope: Scope, role: Role, pii: bool) -> Principal {
        Principal { name: name.into(), grant: Some((scope, role, pii)) }
    }

    /// Did a token make this caller (not authentication off)?
    pub fn is_authenticated(&self) -> bool {
        self.grant.is_some()
    }

    pub fn is_cluster_admin(&self) -> bool {
        matches!(&self.grant, None | Some((Scope::Cluster, _, _)))
    }

    /// The role this caller holds on `project`, if any.
    pub fn role_on(&self, project: &str) -> Option<Role> {
        match &self.grant {
            None | Some((Scope::Cluster, _, _)) => Some(Role::Admin),
            Some((Scope::Project(p), role, _)) if p == project => Some(*role),
            Some(_) => None,
        }
    }

    /// `PermissionDenied`, naming the token, what it holds and what was needed, unless the
    /// caller may do what `need` says.
    pub fn check(&self, need: Need) -> Result<()> {
        let held = match &self.grant {
            None => return Ok(()),
            Some((scope, role, _)) => match scope {
                Scope::Cluster => return Ok(()),
                Scope::Project(_) => format!("token '{}' is {} of {scope}", self.name, article(*role)),
            },
        };
        match need {
            Need::Caller => Ok(()),
            Need::Project { project, role, action } => match self.role_on(project) {
                Some(held_role) if held_role >= role => Ok(()),
                _ => Err(Error::PermissionDenied(format!(
                    "{held}: {action} needs {} of project '{project}'",
                    article(role)
                ))),
            },
            Need::Cluster { action } => {
                Err(Error::PermissionDenied(format!("{held}: {action} needs a cluster admin token")))
            }
        }
    }

    /// May this caller read the personal features of `project`?
    pub fn reads_pii(&self, project: &str) -> bool {
        match &self.grant {
            None | Some((Scope::Cluster, _, true)) => true,
            Some((Scope::Project(p), _, pii)) => *pii && p == project,
            Some((Scope::Cluster, _, false)) => false,
        }
    }

    /// May this caller give the PII grant on `scope`: only a holder of that grant gives it.
    pub fn may_give_pii(&self, scope: &Scope) -> bool {
        match scope {
            Scope::Project(project) => self.reads_pii(project),
            Scope::Cluster => matches!(self.grant, None | Some((Scope::Cluster, _, true))),
        }
    }

    /// `PermissionDenied` naming the first of `features` that is personal data, unless this
    /// caller holds the PII grant on `project`.
    pub fn check_pii(&self, project: &Project, features: &[ResolvedFeature]) -> Result<()> {
        if self.reads_pii(&project.name) {
            return Ok(());
        }
        match personal(project, features)?.first() {
            Some(first) => Err(self.pii_denied(&project.name, first)),
            None => Ok(()),
        }
    }

    /// `PermissionDenied` naming the first feature of `set` that is personal data, unless this
    /// caller holds the PII grant on `project`: for what shows every feature (statistics).
    pub fn check_pii_set(&self, project: &str, set: &FeatureSet) -> Result<()> {
        if self.reads_pii(project) {
            return Ok(());
        }
        match personal_in(set).first() {
            Some(first) => Err(self.pii_denied(project, first)),
            None => Ok(()),
        }
    }

    fn pii_denied(&self, project: &str, feature: &str) -> Error {
        Error::PermissionDenied(format!(
            "feature '{feature}' of project '{project}' is personal data (tagged {PII_TAG}); token '{}' has no PII \
             grant on the project (token create --pii)",
            self.name
        ))
    }
}

/// A token name the cluster never issued.
pub fn unknown_token(name: &str) -> Error {
    Error::InvalidArgument(format!("no token named '{name}' (quiverctl token list shows them)"))
}

/// The references of those of `features` that are personal data.
pub fn personal(project: &Project, features: &[ResolvedFeature]) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for f in features {
        let set = project.feature_set(&f.set, Some(f.version))?;
        if set.features.get(f.index).is_some_and(|spec| is_pii(set, &spec.name)) {
            found.push(f.reference.clone());
        }
    }
    Ok(found)
}

/// The personal features of the latest version of each of `project`'s feature sets, as
/// `set:feature`: what a registry apply may not narrow without the PII grant.
pub fn personal_features(project: Option<&Project>) -> std::collections::BTreeSet<String> {
    let latest = project.into_iter().flat_map(|p| p.feature_sets.values().filter_map(|versions| versions.last()));
    latest.flat_map(personal_in).collect()
}

/// The features of `set` that are personal data, as `set:feature`.
pub fn personal_in(set: &FeatureSet) -> Vec<String> {
    set.features.iter().filter(|f| is_pii(set, &f.name)).map(|f| format!("{}:{}", set.name, f.name)).collect()
}

/// Is `feature` of `set` personal data: tagged `pii` itself, or in a set so tagged?
pub fn is_pii(set: &FeatureSet, feature: &str) -> bool {
    let tagged = |tags: &[String]| tags.iter().any(|t| t.eq_ignore_ascii_case(PII_TAG));
    tagged(&set.tags) || set.features.iter().any(|f| f.name == feature && tagged(&f.tags))
}

fn article(role: Role) -> String {
    match role {
        Role::Admin => "an admin".into(),
        other => format!("a {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::FeatureSpec;

    fn set(set_tags: &[&str], features: &[(&str, &[&str])]) -> FeatureSet {
        FeatureSet {
            name: "patients".into(),
            version: 1,
            entity: "patient".into(),
            timestamp_column: "ts".into(),
            ttl_secs: 0,
            owner: String::new(),
            description: String::new(),
            tags: set_tags.iter().map(|t| t.to_string()).collect(),
            features: features
                .iter()
                .map(|(name, tags)| FeatureSpec {
                    name: name.to_string(),
                    ty: crate::ValueType::Int64,
                    description: String::new(),
                    tags: tags.iter().map(|t| t.to_string()).collect(),
                })
                .collect(),
            monitoring: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn each_role_includes_the_ones_below_it_on_its_own_project_only() {
        let needs = [Role::Viewer, Role::Writer, Role::Admin];
        for held in needs {
            let caller = Principal::with_grant("t", Scope::Project("fraud".into()), held, false);
            for needed in needs {
                let need = Need::Project { project: "fraud", role: needed, action: "this" };
                assert_eq!(caller.check(need).is_ok(), held >= needed, "{held} for {needed}");
                let elsewhere = Need::Project { project: "rides", role: Role::Viewer, action: "reading" };
                let err = caller.check(elsewhere).unwrap_err();
                assert!(err.to_string().contains("project 'rides'"), "{err}");
            }
            assert_eq!(caller.check(Need::Caller), Ok(()));
            assert!(matches!(caller.check(Need::Cluster { action: "a backup" }), Err(Error::PermissionDenied(_))));
        }
        let admin = Principal::with_grant("root", Scope::Cluster, Role::Admin, false);
        assert_eq!(admin.check(Need::Cluster { action: "a backup" }), Ok(()));
        assert_eq!(Principal::open().check(Need::Cluster { action: "a backup" }), Ok(()));
    }

    #[test]
    fn the_denial_names_the_token_its_role_and_the_need() {
        let caller = Principal::with_grant("ci", Scope::Project("fraud".into()), Role::Viewer, false);
        let err = caller.check(Need::Project { project: "fraud", role: Role::Writer, action: "writing rows" });
        let text = err.unwrap_err().to_string();
        assert!(text.contains("token 'ci' is a viewer of project 'fraud'"), "{text}");
        assert!(text.contains("writing rows needs a writer"), "{text}");
    }

    #[test]
    fn a_pii_feature_needs_the_grant_on_its_project() {
        let tagged = set(&[], &[("age", &["PII"]), ("visits", &[])]);
        let plain = Principal::with_grant("a", Scope::Project("h".into()), Role::Admin, false);
        let granted = Principal::with_grant("b", Scope::Project("h".into()), Role::Viewer, true);
        let other = Principal::with_grant("c", Scope::Project("x".into()), Role::Viewer, true);
        let err = plain.check_pii_set("h", &tagged).unwrap_err().to_string();
        assert!(err.contains("'patients:age'") && err.contains("token 'a'"), "{err}");
        assert_eq!(granted.check_pii_set("h", &tagged), Ok(()));
        assert!(other.check_pii_set("h", &tagged).is_err());
        let untagged = set(&[], &[("visits", &[])]);
        assert_eq!(plain.check_pii_set("h", &untagged), Ok(()));
        let whole = set(&["pii"], &[("visits", &[])]);
        assert!(is_pii(&whole, "visits") && is_pii(&tagged, "age") && !is_pii(&tagged, "visits"));
        assert!(plain.check_pii_set("h", &whole).is_err());
        assert_eq!(Principal::open().check_pii_set("h", &whole), Ok(()));
    }

    #[test]
    fn revoked_and_expired_tokens_make_no_caller() {
        let info = TokenInfo {
            name: "t".into(),
            scope: Scope::Cluster,
            role: Role::Admin,
            pii: false,
            created_at: 0,
            created_by: "admin".into(),
            expires_at: Some(100),
            revoked_at: None,
        };
        assert!(info.principal(99).is_ok());
        assert!(info.principal(100).unwrap_err().to_string().contains("expired"));
        let revoked = TokenInfo { revoked_at: Some(50), ..info };
        assert!(revoked.principal(0).unwrap_err().to_string().contains("revoked"));
    }
}
