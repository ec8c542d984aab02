-- 0001_init: users and authentication; threads and messages (SPEC §2, §3).
-- Applied once by store/sqlite.c inside its own transaction; never edit a
-- released migration: add NNNN_next.sql instead.  Times are epoch seconds (REAL).

-- SPEC §2: registered users (password_hash set) and external users (created on
-- first use of a valid token from another issuer: password_hash NULL).
-- Emails are normalised to lowercase by the caller; NOCASE is a second guard.
CREATE TABLE users (
  id            TEXT PRIMARY KEY NOT NULL,
  email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
  name          TEXT NOT NULL DEFAULT '',
  password_hash TEXT,
  plan_tier     TEXT NOT NULL DEFAULT 'free',
  permissions   TEXT NOT NULL DEFAULT '["read","write"]' CHECK (json_valid(permissions)),
  created_at    REAL NOT NULL,
  updated_at    REAL NOT NULL
);

-- Refresh tokens are single-use; a family is the chain of tokens issued from
-- one login.  Reusing a used token revokes the whole family (SPEC §2).
CREATE TABLE refresh_tokens (
  jti        TEXT PRIMARY KEY NOT NULL,
  family_id  TEXT NOT NULL,
  user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  expires_at REAL NOT NULL,
  used_at    REAL,
  revoked    INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens(expires_at);

-- Access tokens revoked before their expiry (logout).  Loaded into memory at
-- start; rows past expires_at are useless and purged.
CREATE TABLE revoked_tokens (
  jti        TEXT PRIMARY KEY NOT NULL,
  expires_at REAL NOT NULL
);
CREATE INDEX revoked_tokens_expires ON revoked_tokens(expires_at);

-- SPEC §3 threads: listed per user, newest activity first.
CREATE TABLE threads (
  id            TEXT PRIMARY KEY NOT NULL,
  user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  title         TEXT,
  metadata      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
  status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
  created_at    REAL NOT NULL,
  updated_at    REAL NOT NULL,
  message_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX threads_user_updated ON threads(user_id, updated_at DESC);

-- SPEC §3 messages: `seq` (the rowid) is the server-assigned order; AUTOINCREMENT
-- so a value is never reused, even after the newest message is deleted.
CREATE TABLE messages (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  id         TEXT NOT NULL UNIQUE,
  thread_id  TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
  user_id    TEXT NOT NULL,
  role       TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
  content    TEXT NOT NULL,
  run_id     TEXT,
  metadata   TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
  created_at REAL NOT NULL
);
CREATE INDEX messages_thread_seq ON messages(thread_id, seq);
CREATE INDEX messages_user_seq ON messages(user_id, seq);
