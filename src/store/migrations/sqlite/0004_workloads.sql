-- 0004_workloads: the caller's LLM call records (SPEC §8).
-- One owner row per user who ever stored records: a compact integer key for
-- the record rows, the next sequence number to give (never reused, so a
-- reader's cache can fetch "rows after seq N"), and a generation bumped by
-- every DELETE /api/workloads (a cache holding an older generation reloads).
-- No foreign key to users: a token of an external issuer may upload before
-- its user row exists, and records are private to user_id either way.
CREATE TABLE workload_owners (
  uid      INTEGER PRIMARY KEY,
  user_id  TEXT NOT NULL UNIQUE,
  next_seq INTEGER NOT NULL DEFAULT 1,
  gen      INTEGER NOT NULL DEFAULT 0
);

-- Clustered by (uid, seq): a batch insert appends at the end of its user's
-- range, a user's scan or delete is one range; no secondary index to keep.
-- Strings are stored as given ('' for an absent feature / prompt_hash);
-- cost_usd is the record's or the one computed from the price table.
CREATE TABLE workloads (
  uid               INTEGER NOT NULL,
  seq               INTEGER NOT NULL,
  ts                REAL NOT NULL,
  model             TEXT NOT NULL,
  provider          TEXT NOT NULL,
  prompt_tokens     INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  latency_ms        REAL NOT NULL,
  cost_usd          REAL NOT NULL,
  is_error          INTEGER NOT NULL,
  feature           TEXT NOT NULL,
  prompt_hash       TEXT NOT NULL,
  PRIMARY KEY (uid, seq)
) WITHOUT ROWID;
