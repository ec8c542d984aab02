/* store/store.h — persistence: the one interface every module uses (DESIGN.md "store/").
 *
 * A store_t is opened once from a URL ("sqlite:PATH"; PostgreSQL later, same calls)
 * and shared by all threads.  Every function is SYNCHRONOUS and BLOCKING: call it from
 * a libuv worker (uv_queue_work), a run thread, or the main thread at startup —
 * never from the event loop.  Thread-safe: each calling thread gets its own database
 * connection on first use (prepared statements cached per connection) — except a thread
 * that declared itself a borrower (store_thread_borrow: the run threads, which are many
 * and mostly waiting on a model), which takes one of a few shared connections for the
 * length of each call and gives it back when the call returns.
 * Ownership is checked here: every function that reads user data takes the caller's
 * user id and only ever sees that user's rows (SPEC §2 conventions).
 * Returns: 0, or a negative AGD_E* (util/err.h): AGD_ENOT_FOUND, AGD_ECONFLICT,
 * AGD_EBAD_REQUEST (argument too long/empty: callers validate first), AGD_EVALIDATION
 * (a value the schema rejects, e.g. permissions that are not JSON), AGD_EUNAVAILABLE
 * (database unreachable, or locked longer than the busy timeout), AGD_EINTERNAL.
 * Strings passed in are borrowed for the call; results are copied into caller memory.
 */
#ifndef AGD_STORE_STORE_H
#define AGD_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/ids.h" /* ID_MAX */

typedef struct store store_t; /* opaque; the backend in store/sqlite_*.c (postgres later) */

/* ---- lifecycle ---------------------------------------------------------------- */

/* Open the store named by url and apply pending migrations (main thread, at start).
 * "sqlite:PATH" or "sqlite://PATH" ("sqlite:///abs" = "/abs"); the parent directory is
 * created when missing.  A database migrated by a newer agentd is refused with
 * "database schema version N is newer than this agentd (knows up to M); upgrade agentd".
 * On failure *out is NULL, a one-line reason is written to err (cap bytes; err may be
 * NULL when cap is 0) and a negative code is returned: AGD_EBAD_REQUEST (bad url),
 * AGD_EUNAVAILABLE (cannot create the directory / open / lock the file), AGD_ECONFLICT
 * (schema newer than this binary), AGD_EINTERNAL (a migration failed). */
int store_open(store_t **out, const char *url, char *err, size_t cap);

/* Close every thread's connection and free the store.  NULL is a no-op.  No thread may
 * be inside a store call, or exiting, while this runs; afterwards threads that used the
 * store must not use it again (their connection is already closed). */
void store_close(store_t *s);

/* Apply pending migrations (store_open already did; this is for `agentd migrate`) and
 * set *version_out to the schema version the database is at.  Same refusal as
 * store_open for a newer database. */
int store_migrate(store_t *s, int *version_out, char *err, size_t cap);

/* Round trip to the database (for /health/ready); *latency_ms (may be NULL) gets the
 * time taken.  AGD_EUNAVAILABLE when the database cannot be reached. */
int store_ping(store_t *s, double *latency_ms);

/* Run fn(s, arg) inside one write transaction on this thread, committed when fn returns
 * 0 and rolled back otherwise; returns fn's result or the database's error.  Store
 * calls fn makes on the same thread join that transaction, each as a savepoint of its
 * own (a failing call is undone alone and reports its error as usual).  This is how
 * a group commit stores many unrelated writes (events, run states, messages) at once. */
int store_tx(store_t *s, int (*fn)(store_t *s, void *arg), void *arg);

/* Declare the calling thread a BORROWER of connections, for every store, until it
 * exits: each store call (with whatever store calls its callbacks or transaction make)
 * takes a connection from a small pool shared by all borrowers (a few per core) and
 * returns it when the call returns, so a borrower holds none while it waits for
 * anything else.  When the pool is all out, a call waits for a connection (bounded:
 * AGD_EUNAVAILABLE after a few seconds).  For threads that are many and use the store
 * seldom (core/runs.c's run threads); the others keep a dedicated connection, which
 * is faster for busy threads (workers, the event writer).  Call it before the
 * thread's first store call. */
void store_thread_borrow(void);

/* "sqlite" (later "postgres"). Static storage. */
const char *store_kind(const store_t *s);

/* ---- users (SPEC §2) --------------------------------------------------------------- */

#define STORE_EMAIL_MAX 320
#define STORE_NAME_MAX 256
#define STORE_PLAN_MAX 32
#define STORE_PERMS_MAX 256
#define STORE_HASH_MAX 160

/* A user row, in caller memory.  Every string is NUL-terminated and fits its array. */
typedef struct store_user {
  char id[ID_MAX];
  char email[STORE_EMAIL_MAX];           /* lowercase (the caller normalises) */
  char name[STORE_NAME_MAX];             /* "" when unset */
  char plan_tier[STORE_PLAN_MAX];        /* "free" by default */
  char permissions_json[STORE_PERMS_MAX]; /* JSON array, '["read","write"]' by default */
  char password_hash[STORE_HASH_MAX];    /* argon2 encoded hash; "" for external users */
  double created_at, updated_at;         /* epoch seconds */
} store_user_t;

/* Insert u.  Empty plan_tier / permissions_json take the defaults, an empty
 * password_hash stores NULL (cannot log in with a password), created_at/updated_at
 * 0 mean now.  AGD_ECONFLICT when the email (or id) exists; AGD_EVALIDATION when
 * permissions_json is not valid JSON; AGD_EBAD_REQUEST for an empty id or email. */
int store_user_create(store_t *s, const store_user_t *u);

/* Look a user up by email (for login; the email is the caller's claim, no owner to
 * check).  AGD_ENOT_FOUND when absent. */
int store_user_by_email(store_t *s, const char *email, store_user_t *out);

/* The caller's own user row.  AGD_ENOT_FOUND when absent. */
int store_user_get(store_t *s, const char *user_id, store_user_t *out);

/* Create-on-first-use for a valid token of an unknown `sub` (SPEC §2): return the
 * user user_id, inserting it when absent with email = email_or_NULL, or the
 * placeholder "<user_id>@external.invalid" when NULL, too long, or already taken by a
 * different user.  Never fails because another thread created it at the same time.
 * out may be NULL.  AGD_EBAD_REQUEST when user_id is empty or ≥ ID_MAX bytes. */
int store_user_ensure(store_t *s, const char *user_id, const char *email_or_NULL,
                      store_user_t *out);

/* Set the caller's display name (≤ STORE_NAME_MAX-1 bytes, else AGD_EBAD_REQUEST) and
 * updated_at; out (may be NULL) gets the updated row.  AGD_ENOT_FOUND when absent. */
int store_user_set_name(store_t *s, const char *user_id, const char *name, store_user_t *out);

/* Number of users. */
int store_user_count(store_t *s, long *n);

/* ---- refresh tokens (SPEC §2: single use, reuse revokes the family) ----------------- */

/* Record an issued refresh token.  AGD_ENOT_FOUND when user_id does not exist,
 * AGD_ECONFLICT when jti exists. */
int store_refresh_add(store_t *s, const char *jti, const char *family_id, const char *user_id,
                      double expires_at);

/* Spend refresh token jti of user_id, atomically (one of two racing calls wins):
 *   0                 it was unused, unrevoked and unexpired at `now`; now marked used;
 *                     family_out gets its family (to issue the next token in it);
 *   AGD_EAUTH_INVALID it was already used or revoked — reuse: family_out is filled so
 *                     the caller can store_refresh_revoke_family(); or it expired
 *                     unused — family_out is "" (not reuse, nothing to revoke);
 *   AGD_ENOT_FOUND    no such jti for this user (unknown, purged, or another user's).
 * family_out (ID_MAX bytes) may be NULL. */
int store_refresh_consume(store_t *s, const char *jti, const char *user_id, double now,
                          char family_out[ID_MAX]);

/* Revoke every token of a family (reuse detected, logout).  0 even if none matched. */
int store_refresh_revoke_family(store_t *s, const char *family_id);

/* Revoke every refresh token of a user.  0 even if none matched. */
int store_refresh_revoke_user(store_t *s, const char *user_id);

/* ---- revoked access tokens (logout: SPEC §2) --------------------------------------- */

/* Longest access-token jti kept (external issuers choose their own jti format). */
#define STORE_JTI_MAX 128

/* Remember that access token jti (< STORE_JTI_MAX bytes, else AGD_EBAD_REQUEST) is
 * revoked until expires_at (idempotent). */
int store_revoke_access(store_t *s, const char *jti, double expires_at);

/* Call cb(jti, expires_at, arg) for every revoked access token still unexpired at now
 * (to fill the in-memory deny list at start).  cb runs on the calling thread; jti is
 * borrowed for the call; cb must not call into the store. */
typedef void (*store_revoked_cb)(const char *jti, double expires_at, void *arg);
int store_revoked_load(store_t *s, double now, store_revoked_cb cb, void *arg);

/* Delete revoked access tokens and refresh tokens that expired before now (they can no
 * longer be presented).  Housekeeping, e.g. hourly on a worker. */
int store_revoked_purge(store_t *s, double now);

/* ---- threads and messages (SPEC §3) ------------------------------------------------- */
/* Every call takes the caller's user id and only ever touches that user's rows: a thread
 * or message of another user is AGD_ENOT_FOUND, exactly like one that does not exist.
 * Strings in results are malloc'd and owned by the result: release a result with its
 * _dispose function (which also accepts a zeroed or already-disposed one). */

/* SPEC: within the (default 1 MiB) body limit no field has a smaller cap. */
#define STORE_TITLE_MAX (1 << 20)   /* bytes of a title */
#define STORE_CONTENT_MAX (1 << 20) /* bytes of message content */
#define STORE_METADATA_MAX (1 << 20) /* bytes of a metadata JSON text */
#define STORE_PAGE_MAX 1000         /* largest page a list call returns */

typedef struct store_thread {
  char id[ID_MAX];        /* "thr_…" */
  char *title;            /* NULL when the thread has no title */
  char *metadata;         /* JSON object text, "{}" by default */
  char status[16];        /* "active" | "archived" */
  double created_at, updated_at; /* epoch seconds; updated_at moves with every new message */
  long message_count;
} store_thread_t;

typedef struct store_thread_list {
  store_thread_t *items;  /* n rows, malloc'd */
  size_t n;
  long total;             /* rows matching without limit/offset */
} store_thread_list_t;

typedef struct store_message {
  long long seq;          /* server-assigned order: strictly increasing in insertion order */
  char id[ID_MAX];        /* "msg_…" */
  char thread_id[ID_MAX];
  char role[16];          /* "user" | "assistant" | "system" | "tool" */
  char *content;
  char run_id[ID_MAX];    /* "" when none */
  char *metadata;         /* JSON object text */
  double created_at;
} store_message_t;

typedef struct store_message_list {
  store_message_t *items; /* n rows, malloc'd, in the order the call documents */
  size_t n;
  long total;             /* rows matching without limit/offset (-1 when not computed) */
  int has_more;           /* more rows exist past this page (in the call's direction) */
} store_message_list_t;

void store_thread_dispose(store_thread_t *t);
void store_thread_list_dispose(store_thread_list_t *l);
void store_message_dispose(store_message_t *m);
void store_message_list_dispose(store_message_list_t *l);

/* Create an active thread for user_id.  title may be NULL (no title); metadata NULL
 * means "{}", else a JSON object text (AGD_EVALIDATION when it is not one).
 * AGD_ENOT_FOUND when the user does not exist; AGD_EBAD_REQUEST for a title or
 * metadata over STORE_TITLE_MAX / STORE_METADATA_MAX bytes.  out gets the row. */
int store_thread_create(store_t *s, const char *user_id, const char *title, const char *metadata,
                        store_thread_t *out);

/* One thread of the caller (active or archived).  AGD_ENOT_FOUND otherwise. */
int store_thread_get(store_t *s, const char *user_id, const char *thread_id, store_thread_t *out);

/* The caller's threads, newest activity (updated_at) first; archived ones only when
 * include_archived.  limit 1..STORE_PAGE_MAX, offset ≥ 0 (else AGD_EBAD_REQUEST). */
int store_thread_list(store_t *s, const char *user_id, int include_archived, int limit, long offset,
                      store_thread_list_t *out);

/* Update the thread: set_title → title (NULL clears it); metadata non-NULL replaces the
 * metadata (a JSON object text).  updated_at moves.  out (may be NULL) gets the row.
 * AGD_ENOT_FOUND for a thread that is not the caller's. */
int store_thread_update(store_t *s, const char *user_id, const char *thread_id, int set_title,
                        const char *title, const char *metadata, store_thread_t *out);

/* Soft delete: status becomes "archived" (idempotent).  AGD_ENOT_FOUND as above. */
int store_thread_archive(store_t *s, const char *user_id, const char *thread_id);

/* Hard delete: the thread row goes and, by ON DELETE CASCADE, everything that references
 * it (messages now; runs and events once their tables exist).  AGD_ENOT_FOUND as above. */
int store_thread_delete(store_t *s, const char *user_id, const char *thread_id);

/* What store_message_add stores. */
typedef struct store_message_new {
  const char *thread_id;  /* the caller's thread, or NULL: create a thread in the same
                             transaction, titled new_thread_title (may be NULL) */
  const char *new_thread_title;
  const char *role;       /* user|assistant|system|tool (else AGD_EVALIDATION) */
  const char *content;    /* ≤ STORE_CONTENT_MAX bytes (else AGD_EBAD_REQUEST) */
  const char *run_id;     /* NULL or "" for none */
  const char *metadata;   /* NULL: "{}"; else a JSON object text */
  const char *id;         /* NULL: a new id; else this one (made by the caller with
                             id_new(…, "msg"), so it can be used before the write lands) */
} store_message_new_t;

/* Append a message.  In one transaction: insert it with the next sequence number, move
 * the thread's updated_at to now and add one to its message_count.  out gets the row
 * (out->thread_id is the new thread's id when one was created).  AGD_ENOT_FOUND when
 * in->thread_id is not the caller's thread. */
int store_message_add(store_t *s, const char *user_id, const store_message_new_t *in,
                      store_message_t *out);
/* The argument checks store_message_add makes before it touches the database (0, or
 * the code it would return), for a caller that writes the message later. */
int store_message_check(const char *user_id, const store_message_new_t *in);

/* One message of the caller.  AGD_ENOT_FOUND otherwise. */
int store_message_get(store_t *s, const char *user_id, const char *message_id, store_message_t *out);

/* Delete one message of the caller; its thread's message_count drops by one.  The thread's
 * updated_at does not move.  AGD_ENOT_FOUND otherwise. */
int store_message_delete(store_t *s, const char *user_id, const char *message_id);

/* Messages of one thread of the caller, oldest first (by sequence); total = all of the
 * thread's messages, has_more = offset + n < total.  limit/offset as store_thread_list.
 * AGD_ENOT_FOUND when the thread is not the caller's. */
int store_message_list(store_t *s, const char *user_id, const char *thread_id, int limit, long offset,
                       store_message_list_t *out);

/* History paging (WebSocket get_thread_history): the `limit` newest messages of the
 * thread older than message before_id (NULL/"": the newest ones), returned oldest first;
 * has_more = older messages remain; total = -1.  AGD_ENOT_FOUND when the thread, or
 * before_id in that thread, is not the caller's. */
int store_message_history(store_t *s, const char *user_id, const char *thread_id,
                          const char *before_id, int limit, store_message_list_t *out);

/* The caller's messages across threads (or of thread_id when non-NULL), newest first;
 * total and has_more as store_message_list.  AGD_ENOT_FOUND when thread_id is given and
 * is not the caller's thread. */
int store_message_list_user(store_t *s, const char *user_id, const char *thread_id, int limit,
                            long offset, store_message_list_t *out);

/* ---- runs and events (SPEC §4, §5) ----------------------------------------------------- */

typedef struct store_run {
  char id[ID_MAX];        /* "run_…" */
  char thread_id[ID_MAX];
  char agent[32];
  char status[16];        /* queued|running|waiting|completed|failed|cancelled ("waiting": running
                             with a pending approval; only read, never set) */
  double created_at, started_at, completed_at; /* 0 when not yet */
  char *input;            /* malloc'd */
  char *result;           /* JSON text or NULL */
  char *error;            /* JSON text or NULL */
  long event_count;
  char *usage;            /* JSON text of the run's model usage (SPEC §11), NULL until its end */
} store_run_t;

typedef struct store_run_list {
  store_run_t *items;
  size_t n;
  long total;
} store_run_list_t;

void store_run_dispose(store_run_t *r);
void store_run_list_dispose(store_run_list_t *l);

/* Insert a run (status queued) of user_id in thread_id (the caller's, else AGD_ENOT_FOUND). */
int store_run_create(store_t *s, const char *user_id, const char *run_id, const char *thread_id, const char *agent,
                     const char *input, double created_at);
/* Set status; started_at/completed_at > 0 are written, 0 keeps the old value; result/error JSON
 * texts (NULL keeps).  AGD_ENOT_FOUND for a run that is not the caller's. */
int store_run_set_status(store_t *s, const char *user_id, const char *run_id, const char *status, double started_at,
                         double completed_at, const char *result_json, const char *error_json);
int store_run_get(store_t *s, const char *user_id, const char *run_id, store_run_t *out);
/* Record the run's model usage (a JSON object text, SPEC §11).  AGD_ENOT_FOUND for a run
 * that is not the caller's. */
int store_run_set_usage(store_t *s, const char *user_id, const char *run_id, const char *usage_json);
/* The caller's runs, newest first: of one thread (thread_id non-NULL) and/or only queued/running
 * (active_only).  limit 1..STORE_PAGE_MAX. */
int store_run_list(store_t *s, const char *user_id, const char *thread_id, int active_only, int limit, long offset,
                   store_run_list_t *out);
/* At start: every run left queued/running becomes failed with an INTERRUPTED error, except a
 * running one with a pending approval (it resumes: store_approvals_pending). *n gets how many. */
int store_runs_fail_inflight(store_t *s, double now, long *n);

/* One event to store (all strings borrowed; run_id/thread_id/agent_name may be NULL). */
typedef struct store_event {
  const char *user_id;
  int64_t seq;
  const char *run_id, *thread_id, *type, *agent_name;
  double created_at;
  const char *json;       /* the wire form (SPEC §5) */
} store_event_t;

typedef struct store_event_row {
  int64_t seq;
  char type[24];
  char *json;             /* malloc'd */
} store_event_row_t;

typedef struct store_event_list {
  store_event_row_t *items;
  size_t n;
  int has_more;
} store_event_list_t;

void store_event_list_free(store_event_list_t *l);
/* Append; the user's seq counter moves to ev->seq in the same transaction (a seq never
 * repeats, even after the events of a deleted thread are gone).  AGD_ECONFLICT on a seq
 * already used. */
int store_event_append(store_t *s, const store_event_t *ev);
/* Append n events in one transaction (group commit); same rules as store_event_append.
 * A row that cannot be stored (its run was deleted meanwhile) is left out alone, and
 * the seq counters still move past it.  AGD_ENOT_FOUND only when no row could be. */
int store_event_append_batch(store_t *s, const store_event_t *evs, size_t n);
/* The user's highest seq ever assigned (0 when none). */
int store_event_last_seq(store_t *s, const char *user_id, int64_t *out);
/* The caller's events with seq > after_seq, oldest first, optionally of one run / thread;
 * at most limit (1..1000); has_more when more exist. */
int store_event_list(store_t *s, const char *user_id, int64_t after_seq, const char *run_id, const char *thread_id,
                     int limit, store_event_list_t *out);

/* ---- approvals of tool calls (SPEC §11: human in the loop) ------------------------------ */
/* A model's tool call that waits for the user's decision.  One row per (run, call id),
 * owned by the run's user: every call takes user_id and sees that user's rows only (a
 * row of another user is AGD_ENOT_FOUND, as one that does not exist).  status goes
 * pending → approved | denied | expired exactly once (store_approval_decide).  While a
 * run has a pending approval its status reads "waiting" (store_run_get / _list). */

#define STORE_CALL_ID_MAX 129   /* bytes of a call id, NUL included */
#define STORE_TOOL_NAME_MAX 257 /* bytes of a tool name, NUL included (tools/tool.h: 1..256) */
#define STORE_REASON_MAX 4096   /* bytes of a decision's reason */

typedef struct store_approval {
  char run_id[ID_MAX];
  char user_id[ID_MAX];
  char call_id[STORE_CALL_ID_MAX];
  char tool_name[STORE_TOOL_NAME_MAX];
  char *parameters;     /* JSON object text (malloc'd in results) */
  char *checkpoint;     /* opaque JSON text, or NULL */
  double created_at, expires_at;
  char status[16];      /* pending|approved|denied|expired */
  char *reason;         /* NULL when none */
  double decided_at;    /* 0 while pending */
} store_approval_t;

typedef struct store_approval_list {
  store_approval_t *items;
  size_t n;
} store_approval_list_t;

void store_approval_dispose(store_approval_t *a);
void store_approval_list_dispose(store_approval_list_t *l);

/* Insert a pending approval (a->status is ignored): a->run_id must be a run of
 * a->user_id (else AGD_ENOT_FOUND); AGD_ECONFLICT when the call already has one;
 * AGD_EBAD_REQUEST for an empty or too long id/name, parameters that are no JSON
 * object text, a checkpoint that is no JSON text. */
int store_approval_create(store_t *s, const store_approval_t *a);
/* One approval of the caller's run.  AGD_ENOT_FOUND otherwise. */
int store_approval_get(store_t *s, const char *user_id, const char *run_id, const char *call_id,
                       store_approval_t *out);
/* The approvals of one run of the caller, oldest first (AGD_ENOT_FOUND when the run
 * is not the caller's; an empty list for a run without any). */
int store_approval_list(store_t *s, const char *user_id, const char *run_id, store_approval_list_t *out);
/* Decide: pending → status ("approved" | "denied" | "expired"), with reason (NULL:
 * none, ≤ STORE_REASON_MAX-1 bytes) and decided_at = now, atomically (of two racing
 * decisions one wins, the other gets AGD_ECONFLICT).  approved/denied need the row
 * unexpired at now (expires_at > now), else AGD_ECONFLICT; "expired" does not.
 * AGD_ENOT_FOUND for no such row of the caller.  out (may be NULL) gets the row as
 * it is afterwards: the decided one, or on AGD_ECONFLICT the earlier decision. */
int store_approval_decide(store_t *s, const char *user_id, const char *run_id, const char *call_id,
                          const char *status, const char *reason, double now, store_approval_t *out);
/* At start: every pending approval whose run is still running (all users), oldest
 * first, with its checkpoint: the runs to resume.  cb's row is borrowed for the call;
 * cb must not call into the store. */
typedef void (*store_approval_cb)(const store_approval_t *a, void *arg);
int store_approvals_pending(store_t *s, store_approval_cb cb, void *arg);

/* ---- workload records (SPEC §8) ---------------------------------------------------------- */
/* A user's LLM call records.  Each user has a sequence (seq: 1, 2, … in insertion
 * order, never reused, not even after a delete) and a generation (bumped by every
 * delete), so a reader that cached the rows up to some seq can fetch only what is new
 * and notice a delete (workloads/ keeps such a cache). */

#define STORE_WL_MODEL_MAX 64    /* bytes of model, NUL included */
#define STORE_WL_PROVIDER_MAX 32
#define STORE_WL_FEATURE_MAX 64
#define STORE_WL_HASH_MAX 80
#define STORE_WL_BATCH_MAX 100000 /* records per store_workload_insert call */

/* One record, in caller memory (workloads.h names it workload_rec_t).  Strings are
 * NUL-terminated within their arrays; feature / prompt_hash "" when absent. */
typedef struct store_workload {
  double timestamp;            /* epoch seconds */
  char model[STORE_WL_MODEL_MAX];
  char provider[STORE_WL_PROVIDER_MAX];
  long long prompt_tokens;     /* >= 0 */
  long long completion_tokens; /* >= 0 */
  double latency_ms;           /* >= 0 */
  double cost_usd;             /* >= 0; computed from the price table when the record had none */
  int is_error;                /* status "error" */
  char feature[STORE_WL_FEATURE_MAX];
  char prompt_hash[STORE_WL_HASH_MAX];
} store_workload_t;

/* Append n (1..STORE_WL_BATCH_MAX) records of user_id in ONE transaction: recs[i] gets
 * seq *first_seq + i.  *first_seq and *gen (the user's generation) may be NULL.
 * AGD_EBAD_REQUEST for n out of range, a string that does not fit its array, a
 * negative or non-finite number. */
int store_workload_insert(store_t *s, const char *user_id, const store_workload_t *recs, size_t n,
                          int64_t *first_seq, int64_t *gen);

/* The user's next seq (1 when the user never stored a record) and generation (0). */
int store_workload_state(store_t *s, const char *user_id, int64_t *next_seq, int64_t *gen);

/* Call cb(rec, seq, arg) for every record of user_id with seq > after_seq, in seq order,
 * inside one read transaction; *next_seq and *gen (may be NULL) get the state of that
 * same snapshot.  cb runs on the calling thread, rec is borrowed for the call, cb must
 * not call into the store; a non-zero return from cb stops the scan and is returned. */
typedef int (*store_workload_cb)(const store_workload_t *rec, int64_t seq, void *arg);
int store_workload_scan(store_t *s, const char *user_id, int64_t after_seq, store_workload_cb cb, void *arg,
                        int64_t *next_seq, int64_t *gen);

/* Delete every record of user_id and bump its generation, in one transaction.
 * *deleted gets how many rows went; *next_seq / *gen the state afterwards (all may
 * be NULL).  0 with *deleted = 0 for a user without records. */
int store_workload_delete(store_t *s, const char *user_id, long *deleted, int64_t *next_seq, int64_t *gen);

#endif
