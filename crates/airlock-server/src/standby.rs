//! The standby: a workspace already clean at the target branch's tip, with the sandbox of
//! the first check command already built around it.
//!
//! Building a bubblewrap sandbox (namespaces, mounts) costs several milliseconds, as much
//! as everything else airlock does between a proposal and its verdict when the checks are
//! quick. Most changes are proposed against the tip, so one standby is kept ready: the
//! next change on that base takes it, applies its files to the workspace (the sandbox
//! binds the directory, so it sees them) and starts the prepared command with the
//! change's id. A change on another base releases the standby and prepares its own
//! workspace as before. The keeper builds a new standby, at a low CPU priority, once the
//! change that took the last one has its verdict, and rebuilds it when the tip moves.
//!
//! The standby holds one workspace of the pool, so it is kept only when the pool has
//! more workspaces than there are workers: then every worker finds one without taking
//! the standby, and one stuck waiting for the standby's slot (which only a worker frees,
//! by taking the standby) cannot happen. A worker that finds the standby on another base
//! releases it, and the keeper never takes a workspace someone waits for.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use airlock_core::pipeline::PlannedStep;
use airlock_git::{CommitId, Workspace};
use airlock_sandbox::{CommandSpec, Prepared};
use airlock_store::Store;

use crate::Shared;
use crate::worker::{CHANGE_ID_VARIABLE, in_background, release_in_background, sandbox_config};

/// How long the keeper waits, after a change took the standby, before building the next.
const REBUILD_DELAY: Duration = Duration::from_millis(50);
/// How often the keeper looks whether the target branch moved.
const TIP_CHECK_INTERVAL: Duration = Duration::from_secs(2);

pub(crate) struct Standby {
    base: CommitId,
    workspace: Workspace,
    first_check: Option<PreparedCheck>,
}

/// A check command prepared in a workspace, waiting for the change's id.
pub(crate) struct PreparedCheck {
    /// Its index in the plan.
    pub(crate) index: usize,
    pub(crate) prepared: Prepared,
}

impl PreparedCheck {
    /// Whether this prepared command is `spec`'s at plan `index` in `tree`.
    pub(crate) fn is_for(&self, index: usize, spec: &CommandSpec, tree: &std::path::Path) -> bool {
        self.index == index
            && self.prepared.spec() == spec
            && tree
                .canonicalize()
                .is_ok_and(|tree| tree == self.prepared.workspace())
    }
}

/// Takes the standby for a change on `base`: its workspace and prepared first check when
/// the standby is on `base`, else `None`, after releasing the standby (in the background)
/// so its workspace returns to the pool.
pub(crate) fn take<S>(
    shared: &Shared<S>,
    base: &CommitId,
) -> Option<(Workspace, Option<PreparedCheck>)> {
    let standby = shared
        .standby
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()?;
    if standby.base == *base {
        return Some((standby.workspace, standby.first_check));
    }
    // Kill the waiting sandbox before the workspace it binds is reset.
    drop(standby.first_check);
    release_in_background(standby.workspace);
    None
}

/// Keeps a standby ready until shutdown, then drops it (which kills its sandbox).
pub(crate) async fn keep<S: Store>(shared: Arc<Shared<S>>) {
    while !shared.shutting_down.load(Ordering::SeqCst) {
        let wanted = shared.standby_wanted.notified();
        let refreshing = shared.clone();
        let (done, refreshed) = tokio::sync::oneshot::channel();
        in_background("standby", move || {
            let _ = done.send(refresh(&refreshing));
        });
        match refreshed.await {
            Ok(Err(error)) => tracing::debug!(%error, "no standby workspace for now"),
            Err(_) => tracing::warn!("the standby task stopped without an answer"),
            Ok(Ok(())) => {}
        }
        if tokio::time::timeout(TIP_CHECK_INTERVAL, wanted)
            .await
            .is_ok()
        {
            // Woken because a change took the standby and has its verdict: let the
            // answers to whoever waits for that verdict go out first.
            tokio::time::sleep(REBUILD_DELAY).await;
        }
    }
    let standby = shared
        .standby
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(standby) = standby {
        drop(standby.first_check);
        let _ = tokio::task::spawn_blocking(move || standby.workspace.release()).await;
    }
}

/// Makes sure the standby is at the target branch's tip, building it when a workspace is
/// free. Never waits for a workspace: workers come first.
fn refresh<S>(shared: &Shared<S>) -> Result<(), String> {
    let server = &shared.config.server;
    if server.workspaces <= server.workers {
        return Ok(());
    }
    let tip = shared
        .repo
        .resolve_commit(&shared.config.target_branch)
        .map_err(|e| e.to_string())?;
    let stale = {
        let mut standby = shared
            .standby
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if standby.as_ref().is_some_and(|standby| standby.base == tip) {
            return Ok(());
        }
        standby.take()
    };
    if let Some(stale) = stale {
        drop(stale.first_check);
        release_in_background(stale.workspace);
    }
    let Some(workspace) = shared
        .workspaces
        .try_acquire(&tip)
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let first_check = shared
        .plan
        .iter()
        .enumerate()
        .find_map(|(index, step)| match step {
            PlannedStep::Check(check) => Some((index, check)),
            PlannedStep::Scan => None,
        })
        .map(|(index, check)| {
            let sandbox = sandbox_config(shared, workspace.tree().to_path_buf(), None, false);
            let spec = crate::worker::check_spec(shared, check);
            airlock_sandbox::prepare(&sandbox, &spec, &[CHANGE_ID_VARIABLE])
                .map(|prepared| PreparedCheck { index, prepared })
        })
        .transpose();
    let first_check = match first_check {
        Ok(first_check) => first_check,
        Err(error) => {
            // The check itself reports the problem (bubblewrap missing, ...) when it runs.
            release_in_background(workspace);
            return Err(error.to_string());
        }
    };
    *shared
        .standby
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Standby {
        base: tip,
        workspace,
        first_check,
    });
    Ok(())
}
