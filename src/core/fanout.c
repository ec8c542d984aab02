/* core/fanout.c — see fanout.h for the contract.
 *
 * The writer thread (through the broker) appends committed batches to the loop
 * queue and wakes the loop on empty → non-empty; the loop drains the queue on
 * uv_async.  Each event goes to the subscriptions of its user (a hash table of
 * users, each with a ring of subscriptions); a subscription that is replaying,
 * held or behind (a gap) gets it from the store instead, in order.
 */
#include "core/fanout.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/events.h"
#include "core/metrics.h"
#include "net/net.h"
#include "store/store.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/timeutil.h"

#define REPLAY_PAGE 200

static store_t *g_store;
static uv_loop_t *g_loop;
static int initialised;
static atomic_uint_fast64_t delivered_total;
/* Events from emit to written on their subscribers' sockets (GET /metrics). */
static metrics_hist_t *hist_delivery;

/* The loop queue: committed items, in order. */
static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static event_item_t *q_head, *q_tail;
static uv_async_t q_async;

static uint64_t hash_str(const char *s) { return hash_fnv1a_str(s, 0); }

/* ---- users and subscriptions ---- */

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

static void deliver(event_rec_t *p) {
  user_subs_t *u = user_lookup(p->hdr.user_id, 0);
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
static void deliver_run_end(event_run_end_t *p) {
  user_subs_t *u = user_lookup(p->hdr.user_id, 0);
  if (u) {
    for (events_sub_t *s = u->head.next, *next; s != &u->head; s = next) {
      next = s->next;
      if (s->dead || !s->end_on_final || strcmp(s->run_id, p->run_id) != 0 || !s->conn) continue;
      if (conn_kind(s->conn) == CONN_KIND_SSE) sse_end(s->conn);
    }
  }
  if (p->fn) p->fn(p->arg);
}

static void on_queue(uv_async_t *h) {
  pthread_mutex_lock(&q_mu);
  event_item_t *it = q_head;
  q_head = q_tail = NULL;
  pthread_mutex_unlock(&q_mu);
  while (it) {
    event_item_t *next = it->next;
    switch (it->kind) {
    case EVENT_ITEM_EVENT: deliver(event_item_rec(it)); break;
    case EVENT_ITEM_WRITE_BEHIND: {
      event_write_behind_t *wb = event_item_wb(it);
      if (wb->done) wb->done(wb->arg, wb->rc);
      break;
    }
    case EVENT_ITEM_RUN_END: deliver_run_end(event_item_run_end(it)); break;
    }
    event_item_free(it);
    it = next;
  }
}

/* The sink: any thread (the writer's, through the broker).  Takes the batch over. */
static void on_publish(void *arg, event_item_t *batch) {
  if (!batch) return;
  event_item_t *last = batch;
  while (last->next) last = last->next;
  pthread_mutex_lock(&q_mu);
  int was_empty = q_head == NULL;
  if (q_tail) q_tail->next = batch;
  else q_head = batch;
  q_tail = last;
  pthread_mutex_unlock(&q_mu);
  /* Wake the loop only on empty → non-empty (STYLE §7): it drains everything. */
  if (was_empty) uv_async_send(&q_async);
}

event_sink_t fanout_sink(void) { return (event_sink_t){.publish = on_publish, .arg = NULL}; }

void fanout_drain(void) { on_queue(&q_async); }


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
static double gauge_delivered(void *arg) { return (double)atomic_load(&delivered_total); }

int fanout_init(uv_loop_t *loop, store_t *store) {
  g_loop = loop;
  g_store = store;
  int rc = uv_async_init(loop, &q_async, on_queue);
  if (rc != 0) return rc;
  uv_unref((uv_handle_t *)&q_async);
  metrics_gauge_fn_register("agentd_event_subscriptions", NULL, "Open event subscriptions (WS and SSE)", gauge_subs,
                            NULL);
  metrics_gauge_fn_register("agentd_events_sent_total", NULL, "Events written to sockets and streams",
                            gauge_delivered, NULL);
  hist_delivery = metrics_hist("agentd_event_delivery_seconds",
                               "Events from emit to written on their subscribers' sockets (events with a live "
                               "subscriber).");
  initialised = 1;
  return 0;
}

void fanout_shutdown(void) {
  if (!initialised) return;
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
}
