-- Agent runs and their events (SPEC §4, §5).
CREATE TABLE runs (
  id           TEXT PRIMARY KEY,
  user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  thread_id    TEXT REFERENCES threads(id) ON DELETE CASCADE,
  agent        TEXT NOT NULL,
  status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
  input        TEXT NOT NULL,
  result       TEXT,
  error        TEXT,
  created_at   REAL NOT NULL,
  started_at   REAL,
  completed_at REAL
);
CREATE INDEX runs_by_user ON runs(user_id, created_at DESC);
CREATE INDEX runs_by_thread ON runs(thread_id, created_at DESC);
CREATE INDEX runs_active ON runs(status) WHERE status IN ('queued', 'running');

CREATE TABLE events (
  user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  seq        INTEGER NOT NULL,
  run_id     TEXT REFERENCES runs(id) ON DELETE CASCADE,
  thread_id  TEXT REFERENCES threads(id) ON DELETE CASCADE,
  type       TEXT NOT NULL,
  agent_name TEXT,
  created_at REAL NOT NULL,
  body       TEXT NOT NULL,
  PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;
CREATE INDEX events_by_run ON events(run_id, seq);
CREATE INDEX events_by_thread ON events(thread_id, seq);

-- The last seq given to each user: a seq never repeats even after its events are deleted.
CREATE TABLE event_seq (
  user_id  TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  last_seq INTEGER NOT NULL
);
