/* tests/unit/test_ws_frames.c — api/ws_frames: the WebSocket frame table.
 *
 * Registration (aliases, duplicates refused, bounds), dispatch reaching the
 * registered handler with its arg, unknown types left to the caller, and the
 * payload rule of SPEC §6.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "api/ws_frames.h"

static int calls;
static const void *last_arg;
static json_t *last_id;

static void handler(conn_t *c, json_t *frame, json_t *id, const void *arg) {
  (void)c;
  (void)frame;
  calls++;
  last_arg = arg;
  last_id = id;
}

static void other(conn_t *c, json_t *frame, json_t *id, const void *arg) {
  (void)c, (void)frame, (void)id, (void)arg;
}

static void reset(void) {
  ws_frames_clear();
  calls = 0;
  last_arg = NULL;
  last_id = NULL;
}

TestSuite(ws_frames, .init = reset, .fini = ws_frames_clear);

Test(ws_frames, aliases_reach_one_handler_with_their_arg) {
  static const char *const names[] = {"user_message", "message", "chat", NULL};
  static const int tag = 7;
  cr_assert_eq(ws_frames_add_all(names, handler, &tag), 0);
  json_t *frame = json_pack("{s:s,s:i}", "type", "chat", "id", 3);
  json_t *id = json_object_get(frame, "id");
  cr_expect_eq(ws_frames_dispatch(NULL, "chat", frame, id), 1);
  cr_expect_eq(ws_frames_dispatch(NULL, "user_message", frame, NULL), 1);
  cr_expect_eq(calls, 2);
  cr_expect_eq(last_arg, &tag);
  cr_expect_null(last_id);
  json_decref(frame);
}

Test(ws_frames, unknown_types_are_left_to_the_caller) {
  cr_assert_eq(ws_frames_add("ping", handler, NULL), 0);
  cr_expect_eq(ws_frames_dispatch(NULL, "pin", NULL, NULL), 0);
  cr_expect_eq(ws_frames_dispatch(NULL, "ping ", NULL, NULL), 0);
  cr_expect_eq(ws_frames_dispatch(NULL, "PING", NULL, NULL), 0);
  cr_expect_eq(ws_frames_dispatch(NULL, "", NULL, NULL), 0);
  char longname[200];
  memset(longname, 'p', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = 0;
  cr_expect_eq(ws_frames_dispatch(NULL, longname, NULL, NULL), 0);
  cr_expect_eq(calls, 0);
}

Test(ws_frames, a_type_is_claimed_once) {
  cr_assert_eq(ws_frames_add("resume", handler, NULL), 0);
  cr_expect_eq(ws_frames_add("resume", other, NULL), -1, "a second module may not take a type");
  cr_expect_eq(ws_frames_dispatch(NULL, "resume", NULL, NULL), 1);
  cr_expect_eq(calls, 1, "the first registration stands");
}

Test(ws_frames, bounds) {
  cr_expect_eq(ws_frames_add("", handler, NULL), -1);
  cr_expect_eq(ws_frames_add(NULL, handler, NULL), -1);
  cr_expect_eq(ws_frames_add("x", NULL, NULL), -1);
  char name[WS_FRAME_TYPE_MAX + 2];
  memset(name, 'a', WS_FRAME_TYPE_MAX + 1);
  name[WS_FRAME_TYPE_MAX + 1] = 0;
  cr_expect_eq(ws_frames_add(name, handler, NULL), -1, "over WS_FRAME_TYPE_MAX");
  name[WS_FRAME_TYPE_MAX] = 0;
  cr_expect_eq(ws_frames_add(name, handler, NULL), 0, "exactly WS_FRAME_TYPE_MAX");
  /* Fill the table: every name found again, and one more refused. */
  char n[16];
  for (int i = 1; i < WS_FRAMES_MAX; i++) {
    snprintf(n, sizeof n, "t%d", i);
    cr_assert_eq(ws_frames_add(n, handler, NULL), 0, "%s", n);
  }
  cr_expect_eq(ws_frames_add("one_more", handler, NULL), -1, "table full");
  for (int i = 1; i < WS_FRAMES_MAX; i++) {
    snprintf(n, sizeof n, "t%d", i);
    cr_expect_eq(ws_frames_dispatch(NULL, n, NULL, NULL), 1, "%s", n);
  }
}

Test(ws_frames, payload_or_the_frame_itself) {
  json_t *with = json_pack("{s:s,s:{s:s}}", "type", "x", "payload", "content", "hi");
  json_t *without = json_pack("{s:s,s:s}", "type", "x", "content", "hi");
  json_t *not_obj = json_pack("{s:s,s:s}", "type", "x", "payload", "str");
  cr_expect_eq(ws_frame_payload(with), json_object_get(with, "payload"));
  cr_expect_eq(ws_frame_payload(without), without);
  cr_expect_eq(ws_frame_payload(not_obj), not_obj);
  json_decref(with);
  json_decref(without);
  json_decref(not_obj);
}
