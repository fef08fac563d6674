//! The backups in a location: listing, checking and deleting them.

use std::collections::{BTreeMap, BTreeSet};

use quiver_offline::store::{OfflineStore, S3Settings};

use super::delta::State;
use super::format::{self, CATALOG, Catalog, GroupCut, Object, ObjectReader, Place, read_catalog};
use crate::error::{Error, Result};

/// Opens a backup location: a directory or `s3://bucket/prefix`.
pub fn open(location: &str, s3: &S3Settings) -> Result<OfflineStore> {
    if location.trim().is_empty() {
        return Err(
            quiver_core::Error::InvalidArgument("a backup location is needed (a directory or s3://…)".into()).into()
        );
    }
    OfflineStore::open(location, s3).map_err(|e| Error::Backup(format!("cannot open {location}: {e}")))
}

/// A backup found in a location: complete when its catalog is there.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    pub catalog: Option<Catalog>,
    /// Bytes of the objects under its id (its own, whether complete or not).
    pub stored_bytes: u64,
}

/// Every backup in the location, oldest first (ids sort by time).
pub async fn list(location: &OfflineStore) -> Result<Vec<Listed>> {
    let objects =
        location.list("").await.map_err(|e| Error::Backup(format!("cannot list {}: {e}", location.location())))?;
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    let mut complete = BTreeSet::new();
    for (path, size) in objects {
        let Some((id, rest)) = path.split_once('/').filter(|(id, _)| format::is_backup_id(id)) else { continue };
        *sizes.entry(id.to_string()).or_default() += size;
        if rest == CATALOG {
            complete.insert(id.to_string());
        }
    }
    let mut listed = Vec::with_capacity(sizes.len());
    for (id, stored_bytes) in sizes {
        let catalog = match complete.contains(&id) {
            true => read_catalog(location, &id).await?,
            false => None,
        };
        listed.push(Listed { id, catalog, stored_bytes });
    }
    Ok(listed)
}

/// The catalog of backup `id`; an error says why there is none.
pub async fn find(location: &OfflineStore, id: &str) -> Result<Catalog> {
    match read_catalog(location, id).await? {
        Some(catalog) => Ok(catalog),
        None => {
            let any = list(location).await?.into_iter().any(|l| l.id == id);
            Err(Error::Backup(match any {
                true => format!(
                    "backup {id} in {} is not complete (it has no catalog): it cannot be used",
                    location.location()
                ),
                false => format!("no backup {id} in {}", location.location()),
            }))
        }
    }
}

/// Reads every object of `catalog` and checks it: present, of the size and checksum the
/// catalog says, and (`.cut` objects) whole. Files left in the source's offline store are
/// checked there when `offline` opens it. Answers what is wrong, nothing when all is well.
pub async fn verify(
    location: Place<'_>,
    catalog: &Catalog,
    offline: Option<&OfflineStore>,
    mut checked: impl FnMut(&Object),
) -> Vec<String> {
    let mut problems = Vec::new();
    for cut in std::iter::once(&catalog.meta).chain(&catalog.shards) {
        if let Err(e) = check_cut(location, cut).await {
            problems.push(e.to_string());
        }
        cut.objects().into_iter().for_each(&mut checked);
    }
    for file in &catalog.offline {
        let (store, object) = match (&file.copy, offline) {
            (Some(copy), _) => (location, copy.clone()),
            (None, Some(store)) => {
                let object = Object { path: file.path.clone(), bytes: file.bytes, checksum: file.checksum.clone() };
                (Place::plain(store), object)
            }
            (None, None) => continue,
        };
        let result = async { ObjectReader::open_listed(store, &object).await?.check(&object).await }.await;
        if let Err(e) = result {
            problems.push(e.to_string());
        }
        checked(&object);
    }
    problems
}

/// A group's cut: every frame of its objects readable and in order, as many pairs as the
/// catalog says, then each object's size and checksum.
async fn check_cut(location: Place<'_>, cut: &GroupCut) -> Result<()> {
    let (_, mut state) = State::open(location, &cut.objects(), cut.group).await?;
    let mut pairs = 0u64;
    while state.next().await?.is_some() {
        pairs += 1;
    }
    state.finish().await?;
    match pairs == cut.pairs {
        true => Ok(()),
        false => Err(Error::Backup(format!("{} holds {pairs} pairs, the catalog says {}", cut.object.path, cut.pairs))),
    }
}

/// Backups that `keep` depend on (themselves included).
fn needed_by<'a>(all: &'a [Listed], keep: impl Iterator<Item = &'a Catalog>) -> BTreeSet<String> {
    let by_id: BTreeMap<&str, &Catalog> =
        all.iter().filter_map(|l| Some((l.id.as_str(), l.catalog.as_ref()?))).collect();
    let mut needed = BTreeSet::new();
    for catalog in keep {
        let mut next = Some(catalog);
        while let Some(c) = next {
            if !needed.insert(c.id.clone()) {
                break;
            }
            next = c.parent.as_deref().and_then(|p| by_id.get(p).copied());
        }
    }
    needed
}

/// Which backups a deletion removes: `id` alone (refused while a backup that is kept builds
/// on it), or with `keep`, all but the newest `keep` complete ones and what they build on.
/// Incomplete backups other than the newest one (which may still be under way) go too.
pub fn plan_delete(all: &[Listed], id: Option<&str>, keep: Option<usize>) -> Result<Vec<String>> {
    match (id, keep) {
        (Some(id), None) => {
            if !all.iter().any(|l| l.id == id) {
                return Err(Error::Backup(format!("no backup {id} here")));
            }
            let others = all.iter().filter(|l| l.id != id).filter_map(|l| l.catalog.as_ref());
            let dependents: Vec<&str> =
                others.filter(|c| needed_by(all, std::iter::once(*c)).contains(id)).map(|c| c.id.as_str()).collect();
            if !dependents.is_empty() {
                return Err(Error::Backup(format!(
                    "backup {id} is needed by {} (incremental backups built on it): delete those first",
                    dependents.join(", ")
                )));
            }
            Ok(vec![id.to_string()])
        }
        (None, Some(keep)) => {
            let complete: Vec<&Catalog> = all.iter().filter_map(|l| l.catalog.as_ref()).collect();
            let kept = complete.iter().rev().take(keep).copied();
            let needed = needed_by(all, kept);
            let newest = all.last().map(|l| l.id.as_str());
            let gone = all.iter().filter(|l| !needed.contains(&l.id));
            Ok(gone.filter(|l| l.catalog.is_some() || Some(l.id.as_str()) != newest).map(|l| l.id.clone()).collect())
        }
        _ => Err(quiver_core::Error::InvalidArgument("name one backup to delete, or --keep N".into()).into()),
    }
}

/// Which backups the schedule's retention (`[backup] keep`) removes: only the schedule's
/// own complete backups, all but the newest `keep` of them, and never one that a kept or a
/// manual backup builds on. Manual backups and backups under way in the same location are
/// never touched.
pub fn plan_retention(all: &[Listed], keep: usize) -> Vec<String> {
    let complete: Vec<&Catalog> = all.iter().filter_map(|l| l.catalog.as_ref()).collect();
    let scheduled: Vec<&Catalog> = complete.iter().filter(|c| c.scheduled).copied().collect();
    let kept = scheduled.iter().rev().take(keep).copied();
    let manual = complete.iter().filter(|c| !c.scheduled).copied();
    let needed = needed_by(all, kept.chain(manual));
    scheduled.iter().filter(|c| !needed.contains(&c.id)).map(|c| c.id.clone()).collect()
}

/// Deletes backup `id`: its catalog first, so it stops being complete before its objects go.
pub async fn delete(location: &OfflineStore, id: &str) -> Result<()> {
    let catalog = super::format::catalog_path(id);
    let gone = |e: quiver_offline::Error| Error::Backup(format!("deleting {id} in {}: {e}", location.location()));
    location.delete(&catalog).await.map_err(gone)?;
    for (path, _) in location.list(id).await.map_err(gone)? {
        location.delete(&path).await.map_err(gone)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(id: &str, parent: Option<&str>, complete: bool) -> Listed {
        made(id, parent, complete, false)
    }

    fn made(id: &str, parent: Option<&str>, complete: bool, scheduled: bool) -> Listed {
        let object = Object { path: format!("{id}/meta.cut"), bytes: 1, checksum: String::new() };
        let meta = GroupCut { group: 0, term: 1, index: 1, pairs: 1, rows: 0, builds_on: Vec::new(), object };
        let catalog = Catalog {
            format: 1,
            id: id.into(),
            started_at: 0,
            finished_at: 0,
            parent: parent.map(Into::into),
            nodes: 1,
            meta,
            shards: Vec::new(),
            offline_store: String::new(),
            offline: Vec::new(),
            cluster: None,
            digest: None,
            encryption: None,
            scheduled,
        };
        Listed { id: id.into(), catalog: complete.then_some(catalog), stored_bytes: 1 }
    }

    #[test]
    fn deletion_keeps_what_kept_backups_build_on() {
        let all = vec![
            listed("a", None, true),
            listed("b", Some("a"), true),
            listed("c", None, false),
            listed("d", None, true),
            listed("e", Some("d"), true),
            listed("f", None, false),
        ];
        assert_eq!(plan_delete(&all, None, Some(1)).unwrap(), vec!["a", "b", "c"], "f may be under way");
        assert_eq!(plan_delete(&all, None, Some(3)).unwrap(), vec!["c"]);
        assert!(plan_delete(&all, Some("d"), None).unwrap_err().to_string().contains("needed by e"));
        assert_eq!(plan_delete(&all, Some("e"), None).unwrap(), vec!["e"]);
        assert!(plan_delete(&all, Some("zz"), None).is_err());
        assert!(plan_delete(&all, None, None).is_err());
    }

    #[test]
    fn the_schedules_retention_deletes_only_its_own_complete_backups() {
        let all = vec![
            made("s1", None, true, true),
            made("m1", None, true, false),
            made("s2", None, true, true),
            made("m2", Some("s2"), true, false),
            made("s3", None, true, true),
            made("s4", Some("s3"), true, true),
            made("x", None, false, false),
            made("s5", None, true, true),
        ];
        assert_eq!(plan_retention(&all, 2), vec!["s1"], "s2 is built on by a manual backup; s4, s5 kept");
        assert_eq!(plan_retention(&all, 1), vec!["s1", "s3", "s4"]);
        assert!(plan_retention(&all, 10).is_empty());
        assert!(!plan_retention(&all, 0).iter().any(|id| id.starts_with('m') || id == "x"), "manual, under way");
    }
}
