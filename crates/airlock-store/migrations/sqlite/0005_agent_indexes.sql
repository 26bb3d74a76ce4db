-- Every proposal checks its agent's limits (changes in flight, proposals in the last hour)
-- and every policy decision reads the agent's track record. Without these indexes each of
-- those is a scan of the whole table that parses every row's JSON, so intake slowed down
-- as the history grew. The expressions are the queries' own, so SQLite uses the indexes.
CREATE INDEX changes_by_agent ON changes (json_extract(agent, '$.name'), state);
CREATE INDEX proposals_by_agent ON events (json_extract(actor, '$.name'), at_ms)
    WHERE kind IN ('change.proposed', 'change.revised');
