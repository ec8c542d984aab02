/* core/event_item.c — see event_item.h. */
#include "core/event_item.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *item_new(size_t size, event_item_kind_t kind, const char *user_id) {
  event_item_t *it = calloc(1, size);
  if (!it) abort();
  it->kind = kind;
  snprintf(it->user_id, sizeof(it->user_id), "%s", user_id ? user_id : "");
  return it;
}

event_rec_t *event_rec_new(const char *user_id, char *json) {
  event_rec_t *e = item_new(sizeof(*e), EVENT_ITEM_EVENT, user_id);
  e->json = json;
  e->len = json ? strlen(json) : 0;
  return e;
}

event_write_behind_t *event_write_behind_new(const char *user_id) {
  return item_new(sizeof(event_write_behind_t), EVENT_ITEM_WRITE_BEHIND, user_id);
}

event_run_end_t *event_run_end_new(const char *user_id, const char *run_id) {
  event_run_end_t *r = item_new(sizeof(*r), EVENT_ITEM_RUN_END, user_id);
  snprintf(r->run_id, sizeof(r->run_id), "%s", run_id ? run_id : "");
  return r;
}

void event_item_free(event_item_t *it) {
  if (!it) return;
  if (it->kind == EVENT_ITEM_EVENT) free(event_item_rec(it)->json);
  free(it);
}
