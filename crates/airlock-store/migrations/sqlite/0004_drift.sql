-- The steady state of each rollout that reached 100 %, per target: production's figures
-- after the change and the stable version's before it. Drift across changes is measured
-- on these rows.
CREATE TABLE steady_states (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    change_id TEXT NOT NULL,
    completed_ms INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    p99_ms REAL,
    before_requests INTEGER NOT NULL,
    before_errors INTEGER NOT NULL,
    before_p99_ms REAL
);
CREATE INDEX steady_states_by_target ON steady_states (target, seq);
