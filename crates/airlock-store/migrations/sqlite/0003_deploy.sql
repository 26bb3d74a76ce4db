-- Levels 3 and 4: the serial deployment queue, deploy leases with fencing tokens, each
-- change's deployment, and each target's stable version.

-- Order in the target's deployment queue, assigned when the change joins it.
ALTER TABLE changes ADD COLUMN deploy_seq INTEGER;
CREATE INDEX changes_deploy_queue ON changes (deploy_seq) WHERE deploy_seq IS NOT NULL;

-- One row per target. `token` grows by one at every acquisition: the fencing token.
-- `admitted` is the highest token the provider layer has let act: an action under a
-- lower one is refused.
CREATE TABLE deploy_leases (
    target TEXT PRIMARY KEY,
    holder TEXT,
    token INTEGER NOT NULL DEFAULT 0,
    expires_ms INTEGER,
    admitted INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE deployments (
    change_id TEXT PRIMARY KEY REFERENCES changes (id),
    target TEXT NOT NULL,
    -- The fencing token of the lease it last ran under.
    fence INTEGER,
    -- The stable version when the deployment started (what a rollback returns to).
    previous_commit TEXT,
    -- The change's commit on the target branch, once pushed.
    commit_id TEXT,
    -- Index of the last rollout step that completed (-1: none).
    step INTEGER NOT NULL DEFAULT -1,
    revert_commit TEXT,
    rollback_reason TEXT,
    rollback_by TEXT,
    updated_at_ms INTEGER NOT NULL
);

CREATE TABLE targets (
    target TEXT PRIMARY KEY,
    stable_commit TEXT NOT NULL,
    stable_change TEXT,
    updated_at_ms INTEGER NOT NULL
);
