/* tools/registry.c — the tool registry and argument validation (tool.h, SPEC §7).
 *
 * `current` is an immutable list of reference-counted entries.  Readers take a
 * reference on it under the read lock and use it without any lock; writers
 * (serialised by the write lock) build a new list and swap it in.  A list
 * holds one reference on each of its tools, a finder one more, so a tool
 * outlives both its unregistration and every list that showed it.  Freeing
 * (and user_data_free) happens after the lock is dropped.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/schema.h"
#include "tools/tool.h"
#include "util/err.h"
#include "util/log.h"
#include "util/xalloc.h"

#define TOOL_NAME_MAX 256

typedef struct tool_entry {
  tool_t t; /* first: a tool_t* we hand out is the entry */
  atomic_long refs;
  int owns_user_data; /* set once registration succeeded */
  schema_t *schema;
  char *name, *description, *source, *schema_text;
} tool_entry_t;

struct tool_list {
  atomic_long refs;
  size_t n;
  tool_entry_t *items[];
};

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static tool_list_t *current; /* NULL: empty */

/* ---- entries ---- */

static tool_entry_t *entry_of(const tool_t *t) { return (tool_entry_t *)t; }

static void entry_free(tool_entry_t *e) {
  if (!e) return;
  if (e->owns_user_data && e->t.user_data_free) e->t.user_data_free(e->t.user_data);
  schema_free(e->schema);
  free(e->name);
  free(e->description);
  free(e->source);
  free(e->schema_text);
  free(e);
}

const tool_t *tool_ref(const tool_t *t) {
  if (t) atomic_fetch_add_explicit(&entry_of(t)->refs, 1, memory_order_relaxed);
  return t;
}

void tool_unref(const tool_t *t) {
  if (!t) return;
  tool_entry_t *e = entry_of(t);
  if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) entry_free(e);
}

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

/* A new entry (one reference, not yet owning user_data) or NULL with the
 * reason logged and *rc set. */
static tool_entry_t *entry_new(const tool_t *d, const char *source, int *rc) {
  *rc = AGD_EVALIDATION;
  size_t nlen = d && d->name ? strlen(d->name) : 0;
  if (nlen == 0 || nlen > TOOL_NAME_MAX || !d->call) {
    log_warn("tool '%.80s' refused: %s", d && d->name ? d->name : "", d && d->call ? "bad name" : "no call");
    return NULL;
  }
  json_t *doc;
  json_error_t jerr;
  if (d->input_schema_json) doc = json_loads(d->input_schema_json, 0, &jerr);
  else if (d->input_schema) doc = json_deep_copy(d->input_schema);
  else doc = json_pack("{s:s}", "type", "object");
  if (!doc) {
    log_warn("tool '%s' refused: input schema is not JSON (%s)", d->name,
             d->input_schema_json ? jerr.text : "copy failed");
    return NULL;
  }
  schema_t *schema = NULL;
  char err[300];
  if (!json_is_object(doc)) {
    json_decref(doc);
    log_warn("tool '%s' refused: input schema is not an object", d->name);
    return NULL;
  }
  int crc = schema_compile(doc, &schema, err, sizeof(err));
  if (crc != 0) {
    json_decref(doc);
    log_warn("tool '%s' refused: input schema %s", d->name, err);
    return NULL;
  }
  tool_entry_t *e = xcalloc(1, sizeof(*e));
  e->name = dup_or_null(d->name);
  e->description = dup_or_null(d->description ? d->description : "");
  e->source = dup_or_null(source ? source : d->source ? d->source : "builtin");
  e->schema_text = json_dumps(doc, JSON_COMPACT);
  json_decref(doc); /* the schema holds its own reference */
  e->schema = schema;
  e->t = (tool_t){
      .name = e->name,
      .description = e->description,
      .input_schema_json = e->schema_text,
      .input_schema = schema_doc(schema),
      .source = e->source,
      .destructive = d->destructive,
      .call = d->call,
      .user_data = d->user_data,
      .user_data_free = d->user_data_free,
  };
  atomic_init(&e->refs, 1);
  *rc = 0;
  return e;
}

/* ---- lists ---- */

static tool_list_t *list_new(size_t cap) {
  tool_list_t *l = xmalloc(sizeof(*l) + cap * sizeof(l->items[0]));
  atomic_init(&l->refs, 1);
  l->n = 0;
  return l;
}

/* Append e to l, taking a reference for the list. */
static void list_push(tool_list_t *l, tool_entry_t *e) {
  tool_ref(&e->t);
  l->items[l->n++] = e;
}

tool_list_t *tool_list_acquire(void) {
  pthread_rwlock_rdlock(&lock);
  tool_list_t *l = current;
  if (l) atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
  pthread_rwlock_unlock(&lock);
  return l;
}

void tool_list_release(tool_list_t *l) {
  if (!l || atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1) return;
  for (size_t i = 0; i < l->n; i++) tool_unref(&l->items[i]->t);
  free(l);
}

size_t tool_list_size(const tool_list_t *l) { return l ? l->n : 0; }

const tool_t *tool_list_get(const tool_list_t *l, size_t i) { return l && i < l->n ? &l->items[i]->t : NULL; }

static tool_entry_t *list_find(const tool_list_t *l, const char *name) {
  for (size_t i = 0; l && i < l->n; i++)
    if (strcmp(l->items[i]->name, name) == 0) return l->items[i];
  return NULL;
}

/* Swap in `next` (NULL when empty); the caller holds the write lock.  Returns
 * the old list, to release after unlocking. */
static tool_list_t *swap_locked(tool_list_t *next) {
  tool_list_t *old = current;
  if (next && next->n == 0) {
    tool_list_release(next); /* empty: holds nothing */
    next = NULL;
  }
  current = next;
  return old;
}

/* ---- registration ---- */

static int register_entries(const char *replace_source, tool_entry_t **add, size_t n) {
  pthread_rwlock_wrlock(&lock);
  const tool_list_t *cur = current;
  for (size_t i = 0; i < n; i++) {
    tool_entry_t *clash = list_find(cur, add[i]->name);
    int dup_in_batch = 0;
    for (size_t j = 0; j < i; j++) dup_in_batch |= strcmp(add[j]->name, add[i]->name) == 0;
    if (dup_in_batch || (clash && !(replace_source && strcmp(clash->source, replace_source) == 0))) {
      pthread_rwlock_unlock(&lock);
      log_warn("tool '%s' refused: the name is taken", add[i]->name);
      return AGD_ECONFLICT;
    }
  }
  tool_list_t *next = list_new(tool_list_size(cur) + n);
  for (size_t i = 0; cur && i < cur->n; i++)
    if (!replace_source || strcmp(cur->items[i]->source, replace_source) != 0) list_push(next, cur->items[i]);
  for (size_t i = 0; i < n; i++) {
    add[i]->owns_user_data = 1;
    list_push(next, add[i]);
  }
  tool_list_t *old = swap_locked(next);
  pthread_rwlock_unlock(&lock);
  tool_list_release(old);
  return 0;
}

int tool_register(const tool_t *desc) {
  int rc;
  tool_entry_t *e = entry_new(desc, NULL, &rc);
  if (!e) return rc;
  rc = register_entries(NULL, &e, 1);
  if (rc != 0) {
    entry_free(e); /* never owned user_data: the caller keeps it */
    return rc;
  }
  tool_unref(&e->t); /* the list holds it now */
  return 0;
}

int tool_replace_source(const char *source, const tool_t *const *descs, size_t n) {
  if (!source || !*source) return AGD_EVALIDATION;
  tool_entry_t **add = xcalloc(n, sizeof(*add));
  int rc = 0;
  size_t made = 0;
  for (; made < n; made++)
    if (!(add[made] = entry_new(descs[made], source, &rc))) break;
  if (rc == 0) rc = register_entries(source, add, n);
  for (size_t i = 0; i < made; i++) {
    if (rc == 0) tool_unref(&add[i]->t);
    else entry_free(add[i]);
  }
  free(add);
  return rc;
}

/* Drop the tools for which `drop` says so; returns how many. */
static size_t unregister_where(int (*drop)(const tool_entry_t *, const char *), const char *arg) {
  pthread_rwlock_wrlock(&lock);
  const tool_list_t *cur = current;
  size_t dropped = 0;
  for (size_t i = 0; cur && i < cur->n; i++) dropped += drop(cur->items[i], arg) != 0;
  tool_list_t *old = NULL;
  if (dropped) {
    tool_list_t *next = list_new(cur->n - dropped);
    for (size_t i = 0; i < cur->n; i++)
      if (!drop(cur->items[i], arg)) list_push(next, cur->items[i]);
    old = swap_locked(next);
  }
  pthread_rwlock_unlock(&lock);
  tool_list_release(old);
  return dropped;
}

static int by_name(const tool_entry_t *e, const char *name) { return strcmp(e->name, name) == 0; }
static int by_source(const tool_entry_t *e, const char *source) { return strcmp(e->source, source) == 0; }
static int any(const tool_entry_t *e, const char *unused) { return 1; }

int tool_unregister(const char *name) {
  if (!name) return AGD_ENOT_FOUND;
  return unregister_where(by_name, name) ? 0 : AGD_ENOT_FOUND;
}

size_t tool_unregister_source(const char *source) { return source ? unregister_where(by_source, source) : 0; }

void tool_registry_reset(void) { unregister_where(any, NULL); }

/* ---- lookups ---- */

const tool_t *tool_find(const char *name) {
  if (!name) return NULL;
  tool_list_t *l = tool_list_acquire();
  tool_entry_t *e = list_find(l, name);
  const tool_t *t = e ? tool_ref(&e->t) : NULL;
  tool_list_release(l);
  return t;
}

json_t *tool_schema(const tool_t *t) { return t ? schema_doc(entry_of(t)->schema) : NULL; }

int tool_call_cancelled(const tool_call_ctx_t *ctx) {
  return ctx && ctx->cancelled && ctx->cancelled(ctx->cancel_arg);
}

/* ---- validation and calls ---- */

int tool_validate(const tool_t *t, const json_t *args, char *path, size_t pathcap, char *msg, size_t msgcap) {
  if (path && pathcap) path[0] = '\0';
  if (msg && msgcap) msg[0] = '\0';
  if (!json_is_object(args)) {
    if (path && pathcap) snprintf(path, pathcap, "arguments");
    if (msg && msgcap) snprintf(msg, msgcap, "must be an object");
    return AGD_EVALIDATION;
  }
  return schema_validate(entry_of(t)->schema, args, "arguments", path, pathcap, msg, msgcap);
}

int tool_call(const tool_t *t, const tool_call_ctx_t *ctx, const json_t *args, json_t **result) {
  *result = NULL;
  char path[512], msg[320];
  int rc = tool_validate(t, args, path, sizeof(path), msg, sizeof(msg));
  if (rc != 0) {
    /* "arguments.x.y" → "x.y must ..." (what agents and models have always seen). */
    const char *p = strncmp(path, "arguments.", 10) == 0 ? path + 10 : path;
    *result = json_pack("{s:s++}", "error", p, " ", msg);
    return rc;
  }
  if (tool_call_cancelled(ctx)) {
    *result = json_pack("{s:s}", "error", "cancelled");
    return AGD_ECANCELLED;
  }
  rc = t->call(t, ctx, args, result);
  if (rc == 0 && !*result) *result = json_object();
  return rc;
}
