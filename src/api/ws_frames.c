/* api/ws_frames.c — see ws_frames.h.
 *
 * An open-addressing table of WS_FRAMES_MAX * 2 slots keyed by FNV-1a of the
 * type: at most half full, so a probe ends at an empty slot within a few steps.
 * The keys are the server's own names (registered at start), never a client's,
 * so the unseeded hash cannot be steered from outside; a client's type is only
 * looked up, and its length is bounded by the compare.
 */
#include "api/ws_frames.h"

#include <string.h>

#include "util/hash.h"

#define SLOTS (WS_FRAMES_MAX * 2)

typedef struct frame_slot {
  char type[WS_FRAME_TYPE_MAX + 1];
  ws_frame_fn fn;
  const void *arg;
} frame_slot_t;

static frame_slot_t slots[SLOTS];
static int n_used;

/* The slot holding type, or the empty slot where it would go. */
static frame_slot_t *slot_for(const char *type) {
  size_t i = (size_t)(hash_mix64(hash_fnv1a_str(type, 0)) % SLOTS);
  while (slots[i].fn && strcmp(slots[i].type, type) != 0) i = (i + 1) % SLOTS;
  return &slots[i];
}

int ws_frames_add(const char *type, ws_frame_fn fn, const void *arg) {
  size_t n = type ? strlen(type) : 0;
  if (n == 0 || n > WS_FRAME_TYPE_MAX || !fn || n_used >= WS_FRAMES_MAX) return -1;
  frame_slot_t *s = slot_for(type);
  if (s->fn) return -1; /* two modules claiming one type is a bug, never a silent override */
  memcpy(s->type, type, n + 1);
  s->fn = fn;
  s->arg = arg;
  n_used++;
  return 0;
}

int ws_frames_add_all(const char *const *types, ws_frame_fn fn, const void *arg) {
  for (; *types; types++)
    if (ws_frames_add(*types, fn, arg) != 0) return -1;
  return 0;
}

int ws_frames_dispatch(conn_t *c, const char *type, json_t *frame, json_t *id) {
  if (!type || strlen(type) > WS_FRAME_TYPE_MAX) return 0;
  frame_slot_t *s = slot_for(type);
  if (!s->fn) return 0;
  s->fn(c, frame, id, s->arg);
  return 1;
}

json_t *ws_frame_payload(json_t *frame) {
  json_t *p = json_object_get(frame, "payload");
  return json_is_object(p) ? p : frame;
}

void ws_frames_clear(void) {
  memset(slots, 0, sizeof(slots));
  n_used = 0;
}
