-- Events as an append-only log (see docs/architecture.md, "Storing events").
--
-- 0003 clustered events by (user_id, seq) (WITHOUT ROWID) and indexed them by run and
-- by thread.  Under load every group commit then rewrote, for each active user, the
-- page holding that user's newest events plus a page of each index, and split pages
-- in the middle of the tree: about 1.6 pages of WAL per event.  Here rows are
-- appended in commit order (rowid), found per user through a small unique index,
-- per run through a second one; the thread filter scans the user's index range.
-- A thread's events go with its runs (runs.thread_id cascades, then events.run_id).
CREATE TABLE events_log (
  id         INTEGER PRIMARY KEY,
  user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  seq        INTEGER NOT NULL,
  run_id     TEXT REFERENCES runs(id) ON DELETE CASCADE,
  thread_id  TEXT,
  type       TEXT NOT NULL,
  agent_name TEXT,
  created_at REAL NOT NULL,
  body       TEXT NOT NULL
);
INSERT INTO events_log(user_id, seq, run_id, thread_id, type, agent_name, created_at, body)
  SELECT user_id, seq, run_id, thread_id, type, agent_name, created_at, body FROM events
  ORDER BY created_at, user_id, seq;
DROP TABLE events;
ALTER TABLE events_log RENAME TO events;
CREATE UNIQUE INDEX events_by_user ON events(user_id, seq);
CREATE INDEX events_by_run ON events(run_id);
