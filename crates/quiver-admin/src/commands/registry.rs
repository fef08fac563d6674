//! `apply`, `list` and `describe`: what projects declare.

use std::path::Path;

use anyhow::{Result, bail};
use quiver_admin::render;
use quiver_client::{Action, Client};

use crate::cli::Kind;

/// The chosen project, or the only one there is.
pub async fn project_name(client: &Client, chosen: Option<String>) -> Result<String> {
    if let Some(p) = chosen {
        return Ok(p);
    }
    let projects = client.projects().await?;
    match projects.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no project exists yet: apply definitions first (quiverctl apply -f FILE)"),
        many => bail!("several projects exist ({}): pass --project NAME or set QUIVER_PROJECT", many.join(", ")),
    }
}

pub async fn apply(client: &Client, file: &Path) -> Result<()> {
    let defs = quiver_core::spec::Definitions::from_path(file)?;
    let changes = client.apply(&defs).await?;
    let changed: Vec<_> = changes.iter().filter(|c| c.action != Action::Unchanged).collect();
    for change in &changed {
        println!("{change}");
    }
    if changed.is_empty() {
        println!("no changes: project {} already matches {}", defs.project, file.display());
    } else {
        println!("applied {} to project {}", file.display(), defs.project);
    }
    Ok(())
}

/// Every project, or the chosen one.
pub async fn list(client: &Client, chosen: Option<String>) -> Result<()> {
    let projects = match chosen {
        Some(p) => vec![p],
        None => client.projects().await?,
    };
    if projects.is_empty() {
        println!("no projects yet: apply definitions with quiverctl apply -f FILE");
    }
    for (i, name) in projects.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", render::registry::project_listing(&client.project(name).await?));
    }
    Ok(())
}

pub async fn describe(client: &Client, project: &str, kind: Kind, name: &str) -> Result<()> {
    let project = client.project(project).await?;
    let text = match kind {
        Kind::FeatureSet => render::registry::describe_feature_set(&project, name),
        Kind::Entity => render::registry::describe_entity(&project, name),
        Kind::Vector => render::registry::describe_vector(&project, name),
        Kind::Dataset => {
            let datasets = client.datasets(&project.name).await?;
            let dataset = datasets.iter().find(|d| d.name == name).ok_or_else(|| {
                quiver_core::Error::InvalidArgument(format!("unknown dataset '{name}' in project {}", project.name))
            })?;
            Ok(render::offline::describe_dataset(dataset))
        }
    }?;
    print!("{text}");
    Ok(())
}
