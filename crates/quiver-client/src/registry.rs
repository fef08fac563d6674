//! The registry: applying definitions and reading what projects declare.

use quiver_core::registry::{Change, Project};
use quiver_core::spec::Definitions;
use quiver_proto::v1;

use crate::client::Client;
use crate::error::{Error, Result};

impl Client {
    /// Applies definitions: idempotent and all-or-nothing; additive (objects missing from
    /// `defs` are kept). Says what happened to each object: an incompatible change to a
    /// feature set creates its next version, the older ones staying readable.
    ///
    /// ```no_run
    /// use quiver_client::{Action, Client, Definitions};
    ///
    /// # async fn example(client: Client, defs: Definitions) -> quiver_client::Result<()> {
    /// let changes = client.apply(&defs).await?;
    /// for change in changes.iter().filter(|c| c.action != Action::Unchanged) {
    ///     println!("{change}"); // e.g. "feature set driver_stats: created"
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Definitions are usually read from YAML (`quiverctl apply -f FILE` does that); they can
    /// also be built in code, see [`Definitions`].
    pub async fn apply(&self, defs: &Definitions) -> Result<Vec<Change>> {
        let request = quiver_proto::definitions_to_proto(defs);
        let reply = self
            .redirected(|c| {
                let request = request.clone();
                async move { Ok(c.registry.clone().apply(request).await.map_err(Error::from)?.into_inner()) }
            })
            .await?;
        Ok(reply.changes.into_iter().map(quiver_proto::change_from_proto).collect::<quiver_core::Result<_>>()?)
    }

    /// The names of every project.
    pub async fn projects(&self) -> Result<Vec<String>> {
        let reply = self.registry.clone().list_projects(v1::ListProjectsRequest {}).await;
        Ok(reply.map_err(Error::from)?.into_inner().projects)
    }

    /// Everything a project declares, every feature-set version included.
    pub async fn project(&self, name: &str) -> Result<Project> {
        let reply = self.registry.clone().get_project(v1::GetProjectRequest { project: name.into() }).await;
        Ok(quiver_proto::project_from_proto(reply.map_err(Error::from)?.into_inner())?)
    }
}
