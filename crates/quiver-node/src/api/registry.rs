//! Registry RPCs: apply definitions through the meta group, read them from its applied state.

use std::sync::Arc;

use quiver_proto::v1::registry_service_server::RegistryService;
use quiver_proto::v1::{
    ApplyRequest, ApplyResponse, GetProjectRequest, GetProjectResponse, ListProjectsRequest, ListProjectsResponse,
};
use quiver_proto::{change_to_proto, definitions_from_proto, project_to_proto};
use tonic::{Request, Response, Status};

use super::observed::observed;
use crate::command::MetaCommand;
use crate::command::Response as RaftResponse;
use crate::error::Error;
use crate::node::Node;

pub struct RegistryApi {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn apply(&self, request: Request<ApplyRequest>) -> Result<Response<ApplyResponse>, Status> {
        observed(&self.node, "Apply", async {
            let defs = definitions_from_proto(request.into_inner())?;
            let response = self.node.proposer.write_meta(MetaCommand::ApplyDefinitions(defs)).await?;
            let RaftResponse::Applied(changes) = response else {
                return Err(Error::Raft(format!("unexpected answer to a registry apply: {response:?}")));
            };
            let changed = changes.iter().any(|c| c.action != quiver_core::registry::Action::Unchanged);
            Ok(ApplyResponse { changes: changes.iter().map(change_to_proto).collect(), changed })
        })
        .await
    }

    async fn list_projects(&self, _: Request<ListProjectsRequest>) -> Result<Response<ListProjectsResponse>, Status> {
        observed(&self.node, "ListProjects", async {
            let state = self.node.meta.caught_up().await?;
            Ok(ListProjectsResponse { projects: state.registry.projects.keys().cloned().collect() })
        })
        .await
    }

    async fn get_project(&self, request: Request<GetProjectRequest>) -> Result<Response<GetProjectResponse>, Status> {
        observed(&self.node, "GetProject", async {
            let name = request.into_inner().project;
            let (state, ()) =
                self.node.meta.current(|s| s.registry.project(&name).map(drop).map_err(Into::into)).await?;
            Ok(project_to_proto(state.registry.project(&name)?))
        })
        .await
    }
}
