-- 0007_approvals: tool calls of a model that wait for the user's decision (SPEC §11,
-- human in the loop).  One row per (run, call id).  A run is "waiting" while it is
-- running and has a pending row here: the runs table keeps 'running' (its CHECK
-- cannot change without rebuilding a table that events cascade from), and the store
-- reports the status 'waiting' from this table, so the pending row and the waiting
-- status are one write.  checkpoint is the agent's state to resume from after a
-- restart (opaque JSON text); expires_at is fixed when the row is made, so a restart
-- does not extend it.
CREATE TABLE approvals (
  run_id     TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  call_id    TEXT NOT NULL,
  user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  tool_name  TEXT NOT NULL,
  parameters TEXT NOT NULL,
  checkpoint TEXT,
  created_at REAL NOT NULL,
  expires_at REAL NOT NULL,
  status     TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
  reason     TEXT,
  decided_at REAL,
  PRIMARY KEY (run_id, call_id)
) WITHOUT ROWID;
-- The pending ones (few): what a start resumes, and the runs' 'waiting' status.
CREATE INDEX approvals_pending ON approvals(run_id) WHERE status = 'pending';
