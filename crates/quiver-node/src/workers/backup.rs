//! Scheduled backups (`[backup] to, every, keep, full_every`), made by the metadata leader.
//!
//! The schedule reads the last scheduled backups from the meta state (`RecordBackup`), not
//! from memory, so a new metadata leader keeps it: a backup is due once the newest one to
//! the same location finished `every` ago. After each, backups beyond `keep` are deleted
//! (never one a kept backup builds on).

use quiver_core::shard_map::META_GROUP;

use super::Context;
use crate::backup::catalog;
use crate::backup::create::BackupRequest;
use crate::backup::seal::BackupKey;
use quiver_core::time::now_micros;
use quiver_store::error::Result;

pub async fn round(context: Context) -> Result<()> {
    let Some(every) = context.backup.every()? else { return Ok(()) };
    if !context.groups.leads(META_GROUP) {
        return Ok(());
    }
    let to = context.backup.to.clone();
    let state = context.meta.caught_up().await?;
    let scheduled: Vec<_> = state.backups.iter().filter(|b| b.scheduled && b.location == to).collect();
    let due = scheduled.last().is_none_or(|b| now_micros().saturating_sub(b.finished_at) >= every.as_micros() as i64);
    if !due {
        return Ok(());
    }
    // Incremental backups since the last full one.
    let since_full = scheduled.iter().rev().take_while(|b| b.incremental).count() as u32;
    let incremental = !scheduled.is_empty() && since_full + 1 < context.backup.full_every;
    let key = context.backup.encrypt_key.as_deref().map(BackupKey::read).transpose()?;
    let request = BackupRequest { to: to.clone(), incremental, copy_offline: None, scheduled: true, key };
    // Nobody follows a scheduled backup's progress.
    let made = context.backups.create(request, &|_| {}).await?;
    tracing::info!(backup = made.id, to, "scheduled backup made");
    if context.backup.keep > 0 {
        let location = catalog::open(&to, &context.backups.s3)?;
        let listed = catalog::list(&location).await?;
        for id in catalog::plan_retention(&listed, context.backup.keep) {
            catalog::delete(&location, &id).await?;
            tracing::info!(backup = id, to, "old backup deleted (backup.keep)");
        }
    }
    Ok(())
}
