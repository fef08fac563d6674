//! Registry RPCs: apply definitions through the meta group, read them from its applied state.

use std::sync::Arc;

use quiver_proto::v1::registry_service_server::RegistryService;
use quiver_proto::v1::{
    ApplyRequest, ApplyResponse, GetProjectRequest, GetProjectResponse, ListProjectsRequest, ListProjectsResponse,
};
use quiver_proto::{change_to_proto, definitions_from_proto, project_to_proto};
use tonic::{Request, Response, Status};

use super::observed::{admit, observed};
use crate::auth::Call;
use crate::node::Node;
use quiver_core::access::{Need, PII_TAG, Role, personal_features};
use quiver_core::spec::Definitions;
use quiver_store::command::MetaCommand;
use quiver_store::command::Response as RaftResponse;
use quiver_store::error::Error;

pub struct RegistryApi {
    pub node: Arc<Node>,
}

impl RegistryApi {
    /// Removing a `pii` tag (of a feature or a feature set) makes values readable without
    /// the grant: only a holder of the PII grant on the project may. A change of what is
    /// personal goes in the audit entry, before and after.
    async fn check_pii_tags(&self, call: &Call, defs: &Definitions) -> Result<(), Error> {
        let state = self.node.meta.caught_up().await?;
        let before = personal_features(state.registry.projects.get(&defs.project));
        let mut trial = state.registry.clone();
        trial.apply(defs, quiver_core::time::now_micros())?;
        let after = personal_features(trial.projects.get(&defs.project));
        if before == after {
            return Ok(());
        }
        if let Some(unmarked) = before.difference(&after).next()
            && !call.caller.reads_pii(&defs.project)
        {
            return Err(quiver_core::Error::PermissionDenied(format!(
                "these definitions make feature '{unmarked}' of project '{}' no longer personal (its {PII_TAG} tag \
                 removed); token '{}' has no PII grant on the project, which that needs",
                defs.project, call.caller.name
            ))
            .into());
        }
        let list = |set: &std::collections::BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(", ");
        call.note(format!("personal features before: [{}]; after: [{}]", list(&before), list(&after)));
        Ok(())
    }
}

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn apply(&self, request: Request<ApplyRequest>) -> Result<Response<ApplyResponse>, Status> {
        let call = admit(&self.node, "Apply", &request)?;
        observed(&self.node, &call, async {
            let defs = definitions_from_proto(request.into_inner())?;
            let need = Need::Project { project: &defs.project, role: Role::Admin, action: "applying definitions" };
            call.allow(need)?;
            self.check_pii_tags(&call, &defs).await?;
            let response = self.node.proposer.write_meta(MetaCommand::ApplyDefinitions(defs)).await?;
            let RaftResponse::Applied(changes) = response else {
                return Err(Error::Raft(format!("unexpected answer to a registry apply: {response:?}")));
            };
            let changed = changes.iter().any(|c| c.action != quiver_core::registry::Action::Unchanged);
            Ok(ApplyResponse { changes: changes.iter().map(change_to_proto).collect(), changed })
        })
        .await
    }

    async fn list_projects(
        &self,
        request: Request<ListProjectsRequest>,
    ) -> Result<Response<ListProjectsResponse>, Status> {
        let call = admit(&self.node, "ListProjects", &request)?;
        observed(&self.node, &call, async {
            let state = self.node.meta.caught_up().await?;
            // Only the projects the caller may see.
            let visible = state.registry.projects.keys().filter(|p| call.caller.role_on(p).is_some());
            Ok(ListProjectsResponse { projects: visible.cloned().collect() })
        })
        .await
    }

    async fn get_project(&self, request: Request<GetProjectRequest>) -> Result<Response<GetProjectResponse>, Status> {
        let call = admit(&self.node, "GetProject", &request)?;
        observed(&self.node, &call, async {
            let name = request.into_inner().project;
            call.allow(Need::Project { project: &name, role: Role::Viewer, action: "reading definitions" })?;
            let (state, ()) =
                self.node.meta.current(|s| s.registry.project(&name).map(drop).map_err(Into::into)).await?;
            Ok(project_to_proto(state.registry.project(&name)?))
        })
        .await
    }
}
