//! Backups in a location, and one backup's catalog.

use indicatif::HumanBytes;
use quiver_backup::catalog;
use quiver_backup::format::Catalog;
use quiver_core::time::format_timestamp;
use serde::Serialize;

use super::format::table;

/// One backup of a listing.
#[derive(Debug, Serialize)]
pub struct Listed {
    pub id: String,
    pub complete: bool,
    pub finished_at: Option<i64>,
    pub parent: Option<String>,
    /// Bytes stored under its id.
    pub bytes: u64,
    pub rows: Option<u64>,
}

impl From<&catalog::Listed> for Listed {
    fn from(l: &catalog::Listed) -> Listed {
        let c = l.catalog.as_ref();
        Listed {
            id: l.id.clone(),
            complete: c.is_some(),
            finished_at: c.map(|c| c.finished_at),
            parent: c.and_then(|c| c.parent.clone()),
            bytes: l.stored_bytes,
            rows: c.map(Catalog::rows),
        }
    }
}

pub fn list_table(rows: &[Listed]) -> String {
    if rows.is_empty() {
        return "no backups here\n".into();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|l| {
            vec![
                l.id.clone(),
                if l.complete { "complete" } else { "incomplete (no catalog)" }.into(),
                l.finished_at.map(format_timestamp).unwrap_or_default(),
                l.parent.clone().map_or_else(|| "full".into(), |p| format!("incremental on {p}")),
                HumanBytes(l.bytes).to_string(),
                l.rows.map(|r| r.to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    table(&["ID", "STATE", "FINISHED", "KIND", "STORED", "ROWS"], &cells)
}

pub fn describe(c: &Catalog) -> String {
    let mut out = format!("backup {}\n", c.id);
    out +=
        &format!("  started   {}\n  finished  {}\n", format_timestamp(c.started_at), format_timestamp(c.finished_at));
    out += &match &c.parent {
        Some(p) => format!("  builds on {p} (restoring needs it)\n"),
        None => "  full backup\n".into(),
    };
    out += &format!("  source    {} node(s), offline store {}\n", c.nodes, c.offline_store);
    out += &format!(
        "  size      {} in all, {} stored by this backup; {} online rows\n\n",
        HumanBytes(c.bytes()),
        HumanBytes(c.own_bytes()),
        c.rows()
    );
    let groups: Vec<Vec<String>> = std::iter::once(&c.meta)
        .chain(&c.shards)
        .map(|g| {
            vec![
                if g.group == 0 { "meta".into() } else { format!("shard {}", g.group) },
                g.term.to_string(),
                g.index.to_string(),
                g.pairs.to_string(),
                g.rows.to_string(),
                HumanBytes(g.object.bytes).to_string(),
                match g.builds_on.len() {
                    0 => "whole".into(),
                    n => format!("changes on {n}"),
                },
                g.object.path.clone(),
            ]
        })
        .collect();
    out += &table(&["GROUP", "TERM", "CUT INDEX", "PAIRS", "ROWS", "SIZE", "STORED", "OBJECT"], &groups);
    let copied = c.offline.iter().filter(|f| f.copy.is_some()).count();
    let bytes: u64 = c.offline.iter().map(|f| f.bytes).sum();
    out += &format!(
        "\noffline files: {} ({}), {copied} copied into the backup, {} left in {}\n",
        c.offline.len(),
        HumanBytes(bytes),
        c.offline.len() - copied,
        c.offline_store
    );
    out
}
