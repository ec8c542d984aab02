/* core/events.c — see events.h for the contract.
 *
 * Emit side (run threads, workers): 64 lock stripes keyed by user; under the
 * user's stripe the event gets the user's next seq (cached per user, loaded
 * from the store once) and joins the writer queue, so each user's events are
 * queued in seq order.  One writer thread stores the queue in batches (group
 * commit: one transaction for everything that piled up while the previous one
 * committed, write-behinds of runs included) and only then hands the batch to
 * the loop, so an event a client sees is always stored and a replay can find
 * it.  Loop side: the queue is drained on uv_async; each event goes to the
 * subscriptions of its user; a write-behind's done callback runs there too.
 */
#include "core/events.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "net/net.h"
#include "store/store.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/timeutil.h"

#define STRIPES 64
#define REPLAY_PAGE 200

/* ---- emit side ---- */

typedef struct seq_entry {
  struct seq_entry *next;
  int64_t last_seq;
  char user_id[];
} seq_entry_t;

typedef struct stripe {
  pthread_mutex_t mu;
  seq_entry_t *buckets[256];
} stripe_t;

static stripe_t stripes[STRIPES];
static store_t *g_store;
static uv_loop_t *g_loop;
static atomic_uint_fast64_t emitted_total, delivered_total;
/* Where an event's time goes between emit and its sockets (GET /metrics). */
static metrics_hist_t *hist_store, *hist_delivery;

static uint64_t hash_str(const char *s) { return hash_fnv1a_str(s, 0); }

static const char *const event_names[EV__COUNT] = {
    [EV_AGENT_STARTED] = "agent_started",     [EV_AGENT_THINKING] = "agent_thinking",
    [EV_TOOL_EXECUTING] = "tool_executing",   [EV_TOOL_COMPLETED] = "tool_completed",
    [EV_PARTIAL_RESULT] = "partial_result",   [EV_AGENT_COMPLETED] = "agent_completed",
    [EV_AGENT_RESPONSE] = "agent_response",   [EV_AGENT_ERROR] = "agent_error",
    [EV_AGENT_STOPPED] = "agent_stopped",
};

const char *event_type_name(event_type_t t) {
  if ((int)t < 0 || t >= EV__COUNT) return NULL;
  return event_names[t];
}

/* The loop queue. */
typedef struct pending {
  struct pending *next;
  void (*fn)(void *arg); /* a run-end marker instead of an event (json NULL) */
  void *fn_arg;
  int write_behind; /* json NULL: store_fn(store, store_arg) on the writer */
  int (*store_fn)(store_t *st, void *arg); /* again in each attempt of the commit */
  void (*store_done)(void *arg, int rc);   /* then on the loop, if set */
  void (*store_release)(void *arg);        /* after the last attempt, on the writer */
  void *store_arg;
  int store_rc;
  int64_t seq;
  char *json;
  size_t len;
  char type[24];
  char user_id[ID_MAX];
  char run_id[ID_MAX];
  char thread_id[ID_MAX];
  char agent_name[32];
  double created_at;
  uint64_t emitted_ns; /* monotonic, for the latency histograms */
} pending_t;

static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pending_t *q_head, *q_tail;
static uv_async_t q_async;
static int initialised;

/* The writer queue (group commit). */
static pthread_mutex_t w_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t w_cv = PTHREAD_COND_INITIALIZER;
static pending_t *w_head, *w_tail;
static atomic_int w_stop; /* set under w_mu; read without it by a retrying commit */
static pthread_t w_thread;
static int w_running;

static void writer_push(pending_t *p) {
  pthread_mutex_lock(&w_mu);
  if (w_tail) w_tail->next = p;
  else w_head = p;
  w_tail = p;
  pthread_cond_signal(&w_cv);
  pthread_mutex_unlock(&w_mu);
}

#define WRITER_BATCH 1024

/* ---- runs that lost a batch of their events ---- */

/* A batch given up after EVENTS_RETRY_S was never delivered; its runs must not go
 * on as if it had been (a client would see a hole it can never fill), so their
 * later emits fail and they end failed.  A run leaves the set at its end
 * (events_post_run_end).  Bounded: beyond LOST_MAX the oldest is forgotten. */
#define LOST_MAX 1024
static pthread_mutex_t lost_mu = PTHREAD_MUTEX_INITIALIZER;
static char lost_runs[LOST_MAX][ID_MAX];
static size_t lost_n;
static atomic_int lost_any; /* lost_n != 0: emits only take lost_mu then */

static size_t lost_find_locked(const char *run_id) {
  for (size_t i = 0; i < lost_n; i++)
    if (strcmp(lost_runs[i], run_id) == 0) return i;
  return lost_n;
}

static void lost_mark(const char *run_id) {
  if (!run_id[0]) return;
  pthread_mutex_lock(&lost_mu);
  if (lost_find_locked(run_id) == lost_n) {
    if (lost_n == LOST_MAX) {
      memmove(lost_runs[0], lost_runs[1], (LOST_MAX - 1) * sizeof lost_runs[0]);
      lost_n--;
    }
    snprintf(lost_runs[lost_n++], ID_MAX, "%s", run_id);
  }
  atomic_store(&lost_any, 1);
  pthread_mutex_unlock(&lost_mu);
}

static int lost_has(const char *run_id) {
  if (!atomic_load(&lost_any) || !run_id || !run_id[0]) return 0;
  pthread_mutex_lock(&lost_mu);
  int has = lost_find_locked(run_id) < lost_n;
  pthread_mutex_unlock(&lost_mu);
  return has;
}

static void lost_forget(const char *run_id) {
  if (!atomic_load(&lost_any)) return;
  pthread_mutex_lock(&lost_mu);
  size_t i = lost_find_locked(run_id);
  if (i < lost_n) {
    memmove(lost_runs[i], lost_runs[i + 1], (lost_n - i - 1) * sizeof lost_runs[0]);
    lost_n--;
  }
  atomic_store(&lost_any, lost_n > 0);
  pthread_mutex_unlock(&lost_mu);
}

/* ---- the writer: group commit ---- */

static int store_events(store_t *st, store_event_t *evs, size_t n) {
  if (n == 0) return 0;
  int rc = store_event_append_batch(st, evs, n);
  if (rc != 0) log_error("events: cannot store %zu event(s): %s", n, agd_err_code(rc));
  return rc;
}

/* Inside the batch's transaction: its events, and between them the write-behinds
 * in the order they were queued.  An event that cannot be stored fails the whole
 * transaction (it is retried): nothing of the batch may go out unless it is stored. */
static int writer_store_batch(store_t *st, void *arg) {
  store_event_t evs[WRITER_BATCH];
  size_t n = 0;
  int rc = 0;
  for (pending_t *p = arg; p && rc == 0; p = p->next) {
    if (p->write_behind) {
      rc = store_events(st, evs, n);
      n = 0;
      if (rc == 0) p->store_rc = p->store_fn(st, p->store_arg);
      continue;
    }
    if (!p->json) continue; /* a run-end marker */
    evs[n++] = (store_event_t){.user_id = p->user_id,
                               .seq = p->seq,
                               .run_id = p->run_id,
                               .thread_id = p->thread_id,
                               .type = p->type,
                               .agent_name = p->agent_name,
                               .created_at = p->created_at,
                               .json = p->json};
  }
  if (rc == 0) rc = store_events(st, evs, n);
  return rc;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* The batch's transaction, retried with backoff while it fails (a locked or full
 * database usually comes back): every later event waits behind it, which keeps
 * each user's order.  At shutdown only a couple of attempts.  0 or the last error. */
static int writer_commit_retrying(pending_t *batch) {
  uint64_t t0 = time_mono_ns();
  unsigned delay_ms = 50;
  for (int attempt = 1;; attempt++) {
    int rc = store_tx(g_store, writer_store_batch, batch);
    if (rc == 0) {
      if (attempt > 1) log_info("events: group commit stored after %d attempts", attempt);
      return 0;
    }
    metrics_add("agentd_events_commit_failures_total", NULL, 1);
    double waited = (double)(time_mono_ns() - t0) / 1e9 + delay_ms / 1000.0;
    if (waited > EVENTS_RETRY_S || (atomic_load(&w_stop) && attempt >= 2)) return rc;
    log_warn("events: group commit failed (%s): retrying in %u ms", agd_err_code(rc), delay_ms);
    sleep_ms(delay_ms);
    delay_ms = delay_ms * 2 > 2000 ? 2000 : delay_ms * 2;
  }
}

/* Store one batch in a transaction, then hand what the loop needs to it, in order.
 * A batch that could not be stored is not delivered (its runs are marked lost). */
static void writer_commit(pending_t *batch) {
  int rc = writer_commit_retrying(batch);
  if (rc != 0) log_error("events: giving up a group commit after %.0f s: %s", EVENTS_RETRY_S, agd_err_code(rc));
  uint64_t committed_ns = time_mono_ns();
  pending_t *head = NULL, **tail = &head, *last = NULL;
  long long lost = 0;
  for (pending_t *p = batch, *next; p; p = next) {
    next = p->next;
    if (p->json && rc != 0) {
      lost_mark(p->run_id);
      lost++;
      free(p->json);
      free(p);
      continue;
    }
    if (p->json) metrics_hist_observe(hist_store, (double)(committed_ns - p->emitted_ns) / 1e9);
    if (p->write_behind) {
      if (rc != 0) p->store_rc = rc; /* rolled back with the batch, or never ran */
      if (p->store_release) p->store_release(p->store_arg);
      if (!p->store_done) {
        free(p);
        continue;
      }
    }
    *tail = p;
    tail = &p->next;
    last = p;
  }
  *tail = NULL;
  if (lost) metrics_add("agentd_events_store_failures_total", NULL, lost);
  if (!head) return;
  pthread_mutex_lock(&q_mu);
  int was_empty = q_head == NULL;
  if (q_tail) q_tail->next = head;
  else q_head = head;
  q_tail = last;
  pthread_mutex_unlock(&q_mu);
  /* Wake the loop only on empty → non-empty (STYLE §7): it drains everything. */
  if (was_empty) uv_async_send(&q_async);
}

/* A small batch whose write-behinds (a run start, an answer message: a dozen pages
 * of rows and indexes) would make every event in it wait for their pages is
 * committed in two transactions: first the events of users with no write-behind
 * before them in this batch, then everything else in queue order.  Each user's
 * items keep their order (that is all delivery and replay rely on); other users'
 * events just stop waiting for rows that are not theirs.  Big batches (under load)
 * stay one transaction: there the pages per commit matter more than the wait. */
#define SPLIT_MAX 64

static void writer_flush(pending_t *batch) {
  size_t n = 0, wb = 0;
  for (pending_t *p = batch; p; p = p->next, n++) wb += p->write_behind;
  if (wb == 0 || n > SPLIT_MAX || wb == n) {
    writer_commit(batch);
    return;
  }
  const char *held[SPLIT_MAX]; /* users with a write-behind so far in this batch */
  size_t nheld = 0;
  pending_t *first = NULL, **ft = &first, *rest = NULL, **rt = &rest;
  for (pending_t *p = batch, *next; p; p = next) {
    next = p->next;
    p->next = NULL;
    int is_held = 0;
    for (size_t i = 0; i < nheld && !is_held; i++) is_held = strcmp(held[i], p->user_id) == 0;
    if (p->write_behind && !is_held) held[nheld++] = p->user_id;
    if (p->write_behind || is_held) {
      *rt = p;
      rt = &p->next;
    } else {
      *ft = p;
      ft = &p->next;
    }
  }
  if (first) writer_commit(first);
  writer_commit(rest);
}

/* Up to WRITER_BATCH items off the writer queue (NULL when empty).  w_mu held. */
static pending_t *writer_take_locked(void) {
  if (!w_head) return NULL;
  pending_t *batch = w_head, *p = w_head;
  size_t n = 1;
  while (p->next && n < WRITER_BATCH) {
    p = p->next;
    n++;
  }
  w_head = p->next;
  if (!w_head) w_tail = NULL;
  p->next = NULL;
  return batch;
}

/* Group commit without a timer: the writer takes whatever is queued the moment it
 * is free.  While one batch commits, the next piles up, so under load batches grow
 * by themselves (hundreds of items) and at low load an event waits for no window. */
static void *writer_main(void *arg) {
  pthread_setname_np(pthread_self(), "agentd-events");
  pthread_mutex_lock(&w_mu);
  for (;;) {
    while (!w_head && !w_stop) pthread_cond_wait(&w_cv, &w_mu);
    if (!w_head && w_stop) break;
    pending_t *batch = writer_take_locked();
    pthread_mutex_unlock(&w_mu);
    writer_flush(batch);
    pthread_mutex_lock(&w_mu);
  }
  pthread_mutex_unlock(&w_mu);
  return NULL;
}


char *events_encode(int64_t seq, const char *type, const char *run_id, const char *thread_id, const char *agent_name,
                    double timestamp, const json_t *data) {
  json_t *o = json_object();
  json_object_set_new(o, "type", json_string(type));
  json_object_set_new(o, "seq", json_integer(seq));
  json_object_set_new(o, "run_id", run_id && run_id[0] ? json_string(run_id) : json_null());
  json_object_set_new(o, "thread_id", thread_id && thread_id[0] ? json_string(thread_id) : json_null());
  json_object_set_new(o, "agent_name", agent_name && agent_name[0] ? json_string(agent_name) : json_null());
  json_object_set_new(o, "timestamp", json_real(timestamp));
  json_object_set_new(o, "data", data ? json_incref((json_t *)data) : json_object());
  char *s = jsonx_dumps(o);
  json_decref(o);
  return s;
}

/* The user's last seq (-1: not loaded yet).  Stripe lock held. */
static int64_t *seq_slot(stripe_t *st, const char *user_id) {
  uint64_t h = hash_str(user_id) >> 8;
  seq_entry_t **b = &st->buckets[h & 255];
  for (seq_entry_t *e = *b; e; e = e->next)
    if (strcmp(e->user_id, user_id) == 0) return &e->last_seq;
  size_t n = strlen(user_id) + 1;
  seq_entry_t *e = calloc(1, sizeof(*e) + n);
  if (!e) abort();
  memcpy(e->user_id, user_id, n);
  e->last_seq = -1;
  e->next = *b;
  *b = e;
  return &e->last_seq;
}

int64_t events_emit(const char *user_id, const char *run_id, const char *thread_id, const char *agent_name,
                    event_type_t type, json_t *data) {
  const char *tname = event_type_name(type);
  if (!initialised || !user_id || !user_id[0] || !tname) {
    json_decref(data);
    return AGD_EINTERNAL;
  }
  if (lost_has(run_id)) { /* a batch of this run's events was given up */
    json_decref(data);
    return AGD_EUNAVAILABLE;
  }
  stripe_t *st = &stripes[hash_str(user_id) % STRIPES];
  double now = time_now();
  pthread_mutex_lock(&st->mu);
  int64_t *slot = seq_slot(st, user_id);
  if (*slot < 0) {
    /* First event of this user in this process: continue from the stored
     * counter (nothing of this user is queued yet).  On failure the seq stays
     * unknown and is read again next time: never guess one that may repeat. */
    int rc = store_event_last_seq(g_store, user_id, slot);
    if (rc != 0) {
      *slot = -1;
      pthread_mutex_unlock(&st->mu);
      json_decref(data);
      return rc;
    }
  }
  int64_t seq = *slot + 1;
  *slot = seq;
  char *json = events_encode(seq, tname, run_id, thread_id, agent_name, now, data);
  pending_t *p = calloc(1, sizeof(*p));
  if (!p) abort();
  p->seq = seq;
  p->json = json;
  p->len = strlen(json);
  p->created_at = now;
  p->emitted_ns = time_mono_ns();
  snprintf(p->type, sizeof(p->type), "%s", tname);
  snprintf(p->user_id, sizeof(p->user_id), "%s", user_id);
  snprintf(p->run_id, sizeof(p->run_id), "%s", run_id ? run_id : "");
  snprintf(p->thread_id, sizeof(p->thread_id), "%s", thread_id ? thread_id : "");
  snprintf(p->agent_name, sizeof(p->agent_name), "%s", agent_name ? agent_name : "");
  writer_push(p);
  pthread_mutex_unlock(&st->mu);
  atomic_fetch_add(&emitted_total, 1);
  json_decref(data);
  return seq;
}

/* ---- loop side: users and subscriptions ---- */

typedef enum { SUB_LIVE = 0, SUB_REPLAYING } sub_state_t;

typedef struct user_subs user_subs_t;

struct events_sub {
  events_sub_t *prev, *next; /* in user_subs */
  user_subs_t *user;
  conn_t *conn;
  uint64_t conn_id;
  char run_id[ID_MAX];
  char thread_id[ID_MAX];
  int64_t last_seen;  /* every event ≤ this was sent or filtered out; -1: live only, not started */
  int64_t first_live; /* first seq this subscription got live (0: none yet) */
  int64_t skip_from, skip_to; /* a replay skips these: already sent live before the resume */
  sub_state_t state;
  int replay_inflight;
  int dead;            /* unsubscribed while a replay page was in flight */
  int end_on_final;
  int held;            /* events_hold: live events wait for the replay decision */
  int64_t held_from;   /* first seq held back (0: none yet) */
};

struct user_subs {
  user_subs_t *next; /* hash chain */
  events_sub_t head; /* sentinel */
  int n;
  int64_t last_seq_loop; /* highest seq of this user seen on the loop */
  char user_id[];
};

#define USER_BUCKETS 4096
static user_subs_t *users[USER_BUCKETS];

static user_subs_t *user_lookup(const char *user_id, int create) {
  user_subs_t **b = &users[hash_str(user_id) % USER_BUCKETS];
  for (user_subs_t *u = *b; u; u = u->next)
    if (strcmp(u->user_id, user_id) == 0) return u;
  if (!create) return NULL;
  size_t n = strlen(user_id) + 1;
  user_subs_t *u = calloc(1, sizeof(*u) + n);
  if (!u) abort();
  memcpy(u->user_id, user_id, n);
  u->head.prev = u->head.next = &u->head;
  u->next = *b;
  *b = u;
  return u;
}

static void user_maybe_free(user_subs_t *u) {
  if (u->n > 0) return;
  user_subs_t **b = &users[hash_str(u->user_id) % USER_BUCKETS];
  for (; *b; b = &(*b)->next)
    if (*b == u) {
      *b = u->next;
      free(u);
      return;
    }
}

static int sub_matches(const events_sub_t *s, const char *run_id, const char *thread_id) {
  if (s->run_id[0] && strcmp(s->run_id, run_id ? run_id : "") != 0) return 0;
  if (s->thread_id[0] && strcmp(s->thread_id, thread_id ? thread_id : "") != 0) return 0;
  return 1;
}

/* An event encoded for the wire once, whatever the number of subscribers:
 * the WebSocket frame and the SSE block are built on first use. */
typedef struct wire {
  int64_t seq;
  const char *type, *json;
  size_t len;
  buf_t ws, sse;
} wire_t;

static void wire_init(wire_t *w, int64_t seq, const char *type, const char *json, size_t len) {
  w->seq = seq;
  w->type = type;
  w->json = json;
  w->len = len;
  buf_init(&w->ws, 0);
  buf_init(&w->sse, 0);
}

static void wire_dispose(wire_t *w) {
  buf_dispose(&w->ws);
  buf_dispose(&w->sse);
}

static int wire_send(events_sub_t *s, wire_t *w) {
  if (!s->conn || conn_is_closing(s->conn)) return AGD_EUNAVAILABLE;
  int rc;
  if (conn_kind(s->conn) == CONN_KIND_WS) {
    if (!w->ws.len) ws_frame_text(&w->ws, w->json, w->len);
    rc = ws_send_frame(s->conn, w->ws.base, w->ws.len, w->json, w->len);
  } else {
    if (!w->sse.len) {
      char id[24];
      snprintf(id, sizeof(id), "%" PRId64, w->seq);
      sse_format(&w->sse, id, w->type, w->json, w->len);
    }
    rc = sse_send_raw(s->conn, w->sse.base, w->sse.len);
  }
  if (rc == 0) atomic_fetch_add(&delivered_total, 1);
  return rc;
}

/* Write one encoded event to the subscriber's connection.  Returns 0, or
 * AGD_EUNAVAILABLE when the connection is gone or was closed for overload. */
static int sub_send(events_sub_t *s, int64_t seq, const char *type, const char *json, size_t len) {
  wire_t w;
  wire_init(&w, seq, type, json, len);
  int rc = wire_send(s, &w);
  wire_dispose(&w);
  return rc;
}

static void sub_start_replay(events_sub_t *s);

static void deliver(pending_t *p) {
  user_subs_t *u = user_lookup(p->user_id, 0);
  if (!u) return;
  if (p->seq > u->last_seq_loop) u->last_seq_loop = p->seq;
  wire_t w;
  wire_init(&w, p->seq, p->type, p->json, p->len);
  int sent = 0;
  for (events_sub_t *s = u->head.next, *next; s != &u->head; s = next) {
    next = s->next;
    if (s->state != SUB_LIVE || s->dead) continue;
    if (s->held) { /* sent later, from the store, in order after any replay */
      if (!s->held_from && (s->last_seen < 0 || p->seq > s->last_seen)) s->held_from = p->seq;
      continue;
    }
    if (s->last_seen >= 0 && p->seq <= s->last_seen) continue; /* already sent by a replay */
    if (s->last_seen >= 0 && p->seq > s->last_seen + 1) {
      /* A gap: events stored while a replay page was in flight.  Fetch them. */
      sub_start_replay(s);
      continue;
    }
    s->last_seen = p->seq;
    if (!s->first_live) s->first_live = p->seq;
    if (!sub_matches(s, p->run_id, p->thread_id)) continue;
    sent += wire_send(s, &w) == 0;
  }
  wire_dispose(&w);
  if (sent) metrics_hist_observe(hist_delivery, (double)(time_mono_ns() - p->emitted_ns) / 1e9);
}

/* A run ended: streams bound to it end once its events are out. */
static void deliver_run_end(pending_t *p) {
  user_subs_t *u = user_lookup(p->user_id, 0);
  if (u) {
    for (events_sub_t *s = u->head.next, *next; s != &u->head; s = next) {
      next = s->next;
      if (s->dead || !s->end_on_final || strcmp(s->run_id, p->run_id) != 0 || !s->conn) continue;
      if (conn_kind(s->conn) == CONN_KIND_SSE) sse_end(s->conn);
    }
  }
  if (p->fn) p->fn(p->fn_arg);
}

static void store_behind(const char *user_id, int (*fn)(store_t *st, void *arg), void (*done)(void *arg, int rc),
                         void (*release)(void *arg), void *arg) {
  if (!initialised) { /* after events_shutdown: no writer, so here and now */
    int rc = fn(g_store, arg);
    if (release) release(arg);
    if (done) done(arg, rc);
    return;
  }
  pending_t *p = calloc(1, sizeof(*p));
  if (!p) abort();
  p->write_behind = 1;
  p->store_fn = fn;
  p->store_done = done;
  p->store_release = release;
  p->store_arg = arg;
  snprintf(p->user_id, sizeof(p->user_id), "%s", user_id);
  /* Under the user's stripe: ordered with that user's events. */
  stripe_t *st = &stripes[hash_str(user_id) % STRIPES];
  pthread_mutex_lock(&st->mu);
  writer_push(p);
  pthread_mutex_unlock(&st->mu);
}

void events_store_later(const char *user_id, int (*fn)(store_t *st, void *arg), void (*release)(void *arg),
                        void *arg) {
  store_behind(user_id, fn, NULL, release, arg);
}

void events_store_then(const char *user_id, int (*fn)(store_t *st, void *arg), void (*done)(void *arg, int rc),
                       void *arg) {
  store_behind(user_id, fn, done, NULL, arg);
}

void events_post_run_end(const char *user_id, const char *run_id, void (*fn)(void *arg), void *arg) {
  lost_forget(run_id); /* the run emits nothing more */
  pending_t *p = calloc(1, sizeof(*p));
  if (!p) abort();
  p->fn = fn;
  p->fn_arg = arg;
  snprintf(p->user_id, sizeof(p->user_id), "%s", user_id);
  snprintf(p->run_id, sizeof(p->run_id), "%s", run_id);
  /* Under the user's stripe and through the writer: ordered after that user's
   * events already emitted, and delivered after they are stored. */
  stripe_t *st = &stripes[hash_str(user_id) % STRIPES];
  pthread_mutex_lock(&st->mu);
  writer_push(p);
  pthread_mutex_unlock(&st->mu);
}

static void on_queue(uv_async_t *h) {
  pthread_mutex_lock(&q_mu);
  pending_t *p = q_head;
  q_head = q_tail = NULL;
  pthread_mutex_unlock(&q_mu);
  while (p) {
    pending_t *next = p->next;
    if (p->json) deliver(p);
    else if (p->write_behind) p->store_done(p->store_arg, p->store_rc);
    else deliver_run_end(p);
    free(p->json);
    free(p);
    p = next;
  }
}

/* ---- replay ---- */

typedef struct replay_job {
  uv_work_t work;
  events_sub_t *sub;
  char user_id[ID_MAX];
  char run_id[ID_MAX];
  char thread_id[ID_MAX];
  int64_t after;
  int64_t snapshot_max;
  store_event_list_t list;
  int rc;
} replay_job_t;

static void replay_work(uv_work_t *w) {
  replay_job_t *j = w->data;
  /* Read the user's newest committed seq first: every event ≤ it is stored. */
  j->rc = store_event_last_seq(g_store, j->user_id, &j->snapshot_max);
  if (j->rc == 0)
    j->rc = store_event_list(g_store, j->user_id, j->after, j->run_id[0] ? j->run_id : NULL,
                             j->thread_id[0] ? j->thread_id : NULL, REPLAY_PAGE, &j->list);
}

static void sub_free(events_sub_t *s) {
  user_subs_t *u = s->user;
  s->prev->next = s->next;
  s->next->prev = s->prev;
  u->n--;
  free(s);
  user_maybe_free(u);
}

static void replay_done(uv_work_t *w, int status) {
  replay_job_t *j = w->data;
  events_sub_t *s = j->sub;
  s->replay_inflight = 0;
  if (!initialised) {
    free(s); /* events_shutdown detached it from its (freed) user */
  } else if (s->dead) {
    sub_free(s);
  } else if (j->rc != 0 || status != 0) {
    log_warn("events: replay for %s failed: %s", j->user_id, agd_err_code(j->rc));
    if (s->conn && conn_kind(s->conn) == CONN_KIND_WS) ws_close(s->conn, 1011, "event replay failed");
    else if (s->conn) sse_end(s->conn);
  } else {
    int64_t last = s->last_seen < 0 ? 0 : s->last_seen;
    int ok = 1;
    for (size_t i = 0; i < j->list.n && ok; i++) {
      store_event_row_t *e = &j->list.items[i];
      if (e->seq <= last) continue;
      if (e->seq >= s->skip_from && e->seq <= s->skip_to) { /* already sent live */
        last = e->seq;
        continue;
      }
      ok = sub_send(s, e->seq, e->type, e->json, strlen(e->json)) == 0;
      last = e->seq;
    }
    if (ok) {
      if (j->list.n == REPLAY_PAGE) {
        s->last_seen = last;
        sub_start_replay(s); /* pull the next page once this one is queued */
      } else {
        /* Complete: everything ≤ snapshot_max is covered (stored or filtered). */
        if (j->snapshot_max > last) last = j->snapshot_max;
        s->last_seen = last;
        if (s->user->last_seq_loop > s->last_seen) sub_start_replay(s);
        else s->state = SUB_LIVE;
      }
    }
  }
  store_event_list_free(&j->list);
  free(j);
}

static void sub_start_replay(events_sub_t *s) {
  s->state = SUB_REPLAYING;
  if (s->replay_inflight) return;
  replay_job_t *j = calloc(1, sizeof(*j));
  if (!j) abort();
  j->sub = s;
  snprintf(j->user_id, sizeof(j->user_id), "%s", s->user->user_id);
  snprintf(j->run_id, sizeof(j->run_id), "%s", s->run_id);
  snprintf(j->thread_id, sizeof(j->thread_id), "%s", s->thread_id);
  j->after = s->last_seen < 0 ? 0 : s->last_seen;
  j->work.data = j;
  s->replay_inflight = 1;
  if (uv_queue_work(g_loop, &j->work, replay_work, replay_done) != 0) {
    s->replay_inflight = 0;
    free(j);
  }
}

events_sub_t *events_subscribe(conn_t *c, const char *user_id, const char *run_id, const char *thread_id,
                               int64_t after_seq, int end_on_final) {
  if (!initialised || !user_id || !user_id[0]) return NULL;
  user_subs_t *u = user_lookup(user_id, 1);
  events_sub_t *s = calloc(1, sizeof(*s));
  if (!s) abort();
  s->user = u;
  s->conn = c;
  s->conn_id = conn_id(c);
  snprintf(s->run_id, sizeof(s->run_id), "%s", run_id ? run_id : "");
  snprintf(s->thread_id, sizeof(s->thread_id), "%s", thread_id ? thread_id : "");
  s->end_on_final = end_on_final;
  s->last_seen = -1;
  s->prev = u->head.prev;
  s->next = &u->head;
  u->head.prev->next = s;
  u->head.prev = s;
  u->n++;
  if (after_seq >= 0) {
    s->last_seen = after_seq;
    sub_start_replay(s);
  } else if (u->last_seq_loop > 0) {
    s->last_seen = u->last_seq_loop; /* live from now */
  }
  return s;
}

void events_hold(events_sub_t *s) {
  if (s && !s->dead && s->state == SUB_LIVE) s->held = 1;
}

void events_release(events_sub_t *s) {
  if (!s || s->dead || !s->held) return;
  s->held = 0;
  if (s->held_from) { /* what was held is stored: fetch it, then go on live */
    s->last_seen = s->held_from - 1;
    s->held_from = 0;
    sub_start_replay(s);
  }
}

void events_resume(events_sub_t *s, int64_t after_seq) {
  if (!s || s->dead) return;
  if (s->held) { /* nothing was sent live yet: a plain replay from after_seq */
    s->held = 0;
    s->held_from = 0;
    s->first_live = 0;
  }
  /* Events this socket already got live are not sent again by the replay. */
  if (s->first_live > 0 && s->last_seen >= s->first_live) {
    s->skip_from = s->first_live;
    s->skip_to = s->last_seen;
  }
  s->last_seen = after_seq < 0 ? 0 : after_seq;
  sub_start_replay(s);
}

void events_unsubscribe(events_sub_t *s) {
  if (!s || s->dead) return;
  s->conn = NULL;
  if (s->replay_inflight) s->dead = 1; /* freed when the page comes back */
  else sub_free(s);
}

void events_conn_closed(conn_t *c) {
  user_subs_t *u = user_lookup(conn_user_id(c), 0);
  if (!u) return;
  for (events_sub_t *s = u->head.next, *next; s != &u->head; s = next) {
    next = s->next;
    if (s->conn == c && !s->dead) {
      int last = u->n == 1 && !s->replay_inflight;
      events_unsubscribe(s);
      if (last) return; /* u was freed */
    }
  }
}

/* ---- lifecycle ---- */

static double gauge_subs(void *arg) {
  long n = 0;
  for (size_t i = 0; i < USER_BUCKETS; i++)
    for (user_subs_t *u = users[i]; u; u = u->next) n += u->n;
  return (double)n;
}
static double gauge_emitted(void *arg) { return (double)atomic_load(&emitted_total); }
static double gauge_delivered(void *arg) { return (double)atomic_load(&delivered_total); }

int events_init(uv_loop_t *loop, store_t *store) {
  g_loop = loop;
  g_store = store;
  for (int i = 0; i < STRIPES; i++) pthread_mutex_init(&stripes[i].mu, NULL);
  uv_async_init(loop, &q_async, on_queue);
  uv_unref((uv_handle_t *)&q_async);
  metrics_gauge_fn_register("agentd_event_subscriptions", NULL, "Open event subscriptions (WS and SSE)", gauge_subs,
                            NULL);
  metrics_gauge_fn_register("agentd_events_emitted_total", NULL, "Events emitted", gauge_emitted, NULL);
  metrics_gauge_fn_register("agentd_events_sent_total", NULL, "Events written to sockets and streams",
                            gauge_delivered, NULL);
  hist_store = metrics_hist("agentd_event_store_seconds",
                            "Events from emit to the commit of the transaction that stores them.");
  hist_delivery = metrics_hist("agentd_event_delivery_seconds",
                               "Events from emit to written on their subscribers' sockets (events with a live "
                               "subscriber).");
  w_stop = 0;
  if (pthread_create(&w_thread, NULL, writer_main, NULL) != 0) return AGD_EINTERNAL;
  w_running = 1;
  initialised = 1;
  return 0;
}

void events_shutdown(void) {
  if (!initialised) return;
  /* Store what is still queued, then deliver it. */
  if (w_running) {
    pthread_mutex_lock(&w_mu);
    w_stop = 1;
    pthread_cond_signal(&w_cv);
    pthread_mutex_unlock(&w_mu);
    pthread_join(w_thread, NULL);
    w_running = 0;
  }
  /* Anything queued after the writer's last look is stored here (main.c's order
   * leaves nothing, but a late write-behind must not be lost or leak). */
  for (;;) {
    pthread_mutex_lock(&w_mu);
    pending_t *batch = writer_take_locked();
    pthread_mutex_unlock(&w_mu);
    if (!batch) break;
    writer_flush(batch);
  }
  on_queue(&q_async);
  initialised = 0;
  uv_close((uv_handle_t *)&q_async, NULL);
  for (size_t i = 0; i < USER_BUCKETS; i++) {
    user_subs_t *u = users[i];
    while (u) {
      user_subs_t *next = u->next;
      for (events_sub_t *s = u->head.next, *sn; s != &u->head; s = sn) {
        sn = s->next;
        if (s->replay_inflight) {
          s->dead = 1; /* the page's callback frees it... after u is gone: detach */
          s->prev = s->next = s;
          continue;
        }
        free(s);
      }
      free(u);
      u = next;
    }
    users[i] = NULL;
  }
  for (int i = 0; i < STRIPES; i++) {
    for (int b = 0; b < 256; b++) {
      seq_entry_t *e = stripes[i].buckets[b];
      while (e) {
        seq_entry_t *n = e->next;
        free(e);
        e = n;
      }
      stripes[i].buckets[b] = NULL;
    }
    pthread_mutex_destroy(&stripes[i].mu);
  }
}
