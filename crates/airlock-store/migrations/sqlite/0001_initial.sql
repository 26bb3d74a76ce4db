-- Tokens: only a SHA-256 of the secret is kept; the secret is shown once at creation.
CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    owner         TEXT,
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);

CREATE TABLE changes (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    revision         INTEGER NOT NULL,
    state            TEXT NOT NULL,
    title            TEXT NOT NULL,
    description      TEXT NOT NULL,
    agent            TEXT NOT NULL,  -- JSON Actor, from the proposing token
    base_commit      TEXT NOT NULL,
    target_branch    TEXT NOT NULL,
    source           TEXT NOT NULL,  -- JSON SourceForm
    diff             BLOB NOT NULL,
    files            TEXT NOT NULL,  -- JSON [ChangedFile]
    lines_added      INTEGER NOT NULL,
    lines_removed    INTEGER NOT NULL,
    verdict          TEXT,           -- JSON Verdict, written once
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_ms INTEGER,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL
);
CREATE INDEX changes_by_state ON changes (state, seq);

-- One row per finished Level 1 step; its presence is what stops a step from running twice.
CREATE TABLE steps (
    change_id TEXT NOT NULL REFERENCES changes (id),
    revision  INTEGER NOT NULL,
    idx       INTEGER NOT NULL,
    record    TEXT NOT NULL,  -- JSON StepRecord
    PRIMARY KEY (change_id, revision, idx)
);

CREATE TABLE events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    change_id TEXT,
    at_ms     INTEGER NOT NULL,
    actor     TEXT NOT NULL,  -- JSON Actor
    kind      TEXT NOT NULL,
    data      TEXT NOT NULL   -- JSON
);
CREATE INDEX events_by_change ON events (change_id, seq);

-- Events and step results are history: nothing may rewrite them.
CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_are_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER steps_are_append_only_update BEFORE UPDATE ON steps
BEGIN SELECT RAISE(ABORT, 'step results are append-only'); END;
CREATE TRIGGER steps_are_append_only_delete BEFORE DELETE ON steps
BEGIN SELECT RAISE(ABORT, 'step results are append-only'); END;
