//! What a project declares: listings and descriptions.

use quiver_client::Project;
use quiver_core::time::{format_timestamp, format_ttl};

use super::format::table;

pub fn project_listing(p: &Project) -> String {
    let mut out = format!(
        "project {}{}\n\n",
        p.name,
        if p.description.is_empty() { String::new() } else { format!(" — {}", p.description) }
    );
    let entities: Vec<Vec<String>> = p
        .entities
        .values()
        .map(|e| {
            vec![
                e.name.clone(),
                e.join_keys.iter().map(|k| format!("{}:{}", k.name, k.ty)).collect::<Vec<_>>().join(", "),
            ]
        })
        .collect();
    out += &table(&["ENTITY", "JOIN KEYS"], &entities);
    let sets: Vec<Vec<String>> = p
        .feature_sets
        .values()
        .filter_map(|versions| versions.last())
        .map(|fs| {
            vec![
                fs.name.clone(),
                fs.version.to_string(),
                fs.entity.clone(),
                fs.features.len().to_string(),
                format_ttl(fs.ttl_secs),
                fs.owner.clone(),
            ]
        })
        .collect();
    out += "\n";
    out += &table(&["FEATURE SET", "VERSION", "ENTITY", "FEATURES", "TTL", "OWNER"], &sets);
    let vectors: Vec<Vec<String>> = p.vectors.values().map(|v| vec![v.name.clone(), v.features.join(", ")]).collect();
    out += "\n";
    out += &table(&["VECTOR", "FEATURES"], &vectors);
    out
}

pub fn describe_feature_set(p: &Project, name: &str) -> quiver_core::Result<String> {
    let fs = p.feature_set_by_ref(name)?;
    let versions: Vec<String> = p.feature_sets[&fs.name].iter().map(|v| v.version.to_string()).collect();
    let mut out = format!(
        "feature set  {}\nversion      {} (versions: {})\nentity       {}\ntimestamp    {}\nttl          {}\nowner        {}\ndescription  {}\ntags         {}\ncreated      {}\nupdated      {}\n\n",
        fs.name,
        fs.version,
        versions.join(", "),
        fs.entity,
        fs.timestamp_column,
        format_ttl(fs.ttl_secs),
        fs.owner,
        fs.description,
        fs.tags.join(", "),
        format_timestamp(fs.created_at),
        format_timestamp(fs.updated_at),
    );
    let rows: Vec<Vec<String>> = fs
        .features
        .iter()
        .map(|f| vec![f.name.clone(), f.ty.to_string(), f.tags.join(","), f.description.clone()])
        .collect();
    out += &table(&["FEATURE", "TYPE", "TAGS", "DESCRIPTION"], &rows);
    Ok(out)
}

pub fn describe_entity(p: &Project, name: &str) -> quiver_core::Result<String> {
    let e = p.entity(name)?;
    let mut out = format!("entity       {}\ndescription  {}\n\n", e.name, e.description);
    let keys: Vec<Vec<String>> = e.join_keys.iter().map(|k| vec![k.name.clone(), k.ty.to_string()]).collect();
    out += &table(&["JOIN KEY", "TYPE"], &keys);
    let sets: Vec<String> = p
        .feature_sets
        .values()
        .filter_map(|v| v.last())
        .filter(|fs| fs.entity == e.name)
        .map(|fs| fs.versioned_name())
        .collect();
    out += &format!("\nfeature sets: {}\n", sets.join(", "));
    Ok(out)
}

pub fn describe_vector(p: &Project, name: &str) -> quiver_core::Result<String> {
    let v = p.vector(name)?;
    let mut out = format!("feature vector  {}\ndescription     {}\n\n", v.name, v.description);
    let rows: Vec<Vec<String>> = p
        .resolve(&v.features)?
        .into_iter()
        .map(|f| vec![f.reference, f.ty.to_string(), format!("{}@{}", f.set, f.version)])
        .collect();
    out += &table(&["FEATURE", "TYPE", "FROM"], &rows);
    Ok(out)
}
