-- Level 2: review under a policy, break-glass, the kill switch.

-- Groups a human belongs to (`@payments`), as JSON: what CODEOWNERS teams mean here.
ALTER TABLE tokens ADD COLUMN groups TEXT NOT NULL DEFAULT '[]';

-- Break-glass: JSON {reason, by, at_ms} once an operator or admin marks the change urgent.
ALTER TABLE changes ADD COLUMN urgency TEXT;
-- The policy's obligations for the current revision (JSON) and the hash of the policy.
ALTER TABLE changes ADD COLUMN obligations TEXT;
ALTER TABLE changes ADD COLUMN policy_sha256 TEXT;

-- Earlier revisions of a change, kept when the agent sends a new one.
CREATE TABLE revisions (
    change_id     TEXT NOT NULL REFERENCES changes (id),
    revision      INTEGER NOT NULL,
    base_commit   TEXT NOT NULL,
    source        TEXT NOT NULL,
    diff          BLOB NOT NULL,
    files         TEXT NOT NULL,
    lines_added   INTEGER NOT NULL,
    lines_removed INTEGER NOT NULL,
    replaced_at_ms INTEGER NOT NULL,
    PRIMARY KEY (change_id, revision)
);

-- One review request per revision sent to review, with its deadlines.
CREATE TABLE reviews (
    change_id       TEXT NOT NULL REFERENCES changes (id),
    revision        INTEGER NOT NULL,
    requested_at_ms INTEGER NOT NULL,
    remind_at_ms    INTEGER NOT NULL,
    escalate_at_ms  INTEGER NOT NULL,
    expire_at_ms    INTEGER,
    reminded_at_ms  INTEGER,
    escalated_at_ms INTEGER,
    PRIMARY KEY (change_id, revision)
);

-- What reviewers said. A human approves a revision at most once.
CREATE TABLE review_actions (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    change_id     TEXT NOT NULL REFERENCES changes (id),
    revision      INTEGER NOT NULL,
    verdict       TEXT NOT NULL,
    reviewer_name TEXT NOT NULL,
    reviewer      TEXT NOT NULL,  -- JSON Reviewer: name, token id, role, groups
    comment       TEXT NOT NULL,
    at_ms         INTEGER NOT NULL
);
CREATE UNIQUE INDEX one_approval_per_human ON review_actions (change_id, revision, reviewer_name)
    WHERE verdict = 'approve';
CREATE TRIGGER review_actions_are_append_only_update BEFORE UPDATE ON review_actions
BEGIN SELECT RAISE(ABORT, 'review actions are append-only'); END;
CREATE TRIGGER review_actions_are_append_only_delete BEFORE DELETE ON review_actions
BEGIN SELECT RAISE(ABORT, 'review actions are append-only'); END;

-- The mandatory review after a break-glass deployment.
CREATE TABLE post_reviews (
    change_id        TEXT PRIMARY KEY REFERENCES changes (id),
    reason           TEXT NOT NULL,
    opened_by        TEXT NOT NULL,  -- JSON Actor
    opened_at_ms     INTEGER NOT NULL,
    due_at_ms        INTEGER NOT NULL,
    overdue_at_ms    INTEGER,        -- when the overdue alert went out
    completed_by     TEXT,           -- JSON Actor
    completed_at_ms  INTEGER,
    comment          TEXT
);

-- Switches that apply to the whole installation. `pause`: JSON {reason, by, at_ms}.
CREATE TABLE controls (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Rate limits count an agent's proposals by time.
CREATE INDEX events_by_kind ON events (kind, at_ms);
