/* tests/unit/test_llm_openai.c — llm/openai.c through llm_chat against an
 * in-process HTTP server (a thread with a listening socket): the request body
 * of SPEC §11 for a whole conversation (history with tool calls and results,
 * JSON content, tool_choice, max_tokens, temperature), the reversible tool
 * name mapping both ways, coalescing over a real transfer, keep-alive reuse
 * of one connection across calls and threads (the shared connection cache),
 * a cancel that closes the connection, and the provider's one I/O thread:
 * many calls from many threads each getting exactly its own stream, a cancel
 * of one call among many, a slow callback, and llm_close with calls in
 * flight.  The wire scenarios (retries,
 * timeouts, broken streams) are in tests/e2e/test_llm_openai.py. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "llm/llm.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/timeutil.h"

/* ---- the server ---- */

typedef struct server {
  int lfd, port;
  pthread_t th;
  const char *answer;   /* the SSE body sent for each request (chunked, in one piece); NULL: the request's
                           user message says what to stream (dynamic_answer) */
  int hold;             /* after the answer's events, keep the stream open (no terminator) */
  int drop_first;       /* the first request gets a 200 and a comment, then the connection closes */
  pthread_mutex_t mu;
  char *bodies[16];     /* the request bodies, in order */
  int n_bodies;
  int connections;      /* connections accepted */
  atomic_int client_closed; /* a held stream saw the client close */
  atomic_int held_closed;   /* dynamic "h:" streams the client closed */
  atomic_int ends_written;  /* dynamic "p:" streams whose end was written */
  atomic_int stop;
} server_t;

static server_t srv;

/* Read one request (head and Content-Length body) from fd; NULL at EOF. */
static char *read_request(int fd, buf_t *in) {
  for (;;) {
    char *end = in->len ? memmem(in->base, in->len, "\r\n\r\n", 4) : NULL;
    if (end) {
      size_t head = (size_t)(end - in->base) + 4;
      const char *cl = memmem(in->base, head, "Content-Length: ", 16);
      size_t n = cl ? strtoul(cl + 16, NULL, 10) : 0;
      if (in->len >= head + n) {
        char *body = strndup(in->base + head, n);
        buf_consume(in, head + n);
        return body;
      }
    }
    char tmp[16384];
    ssize_t r = read(fd, tmp, sizeof(tmp));
    if (r <= 0) return NULL;
    buf_append(in, tmp, (size_t)r);
  }
}

/* One SSE event with a text piece, as one HTTP chunk.  0 or -1 (the client went). */
static int write_piece(int fd, const char *text) {
  char ev[512], chunk[600];
  int en = snprintf(ev, sizeof(ev), "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%s\"}}]}\n\n", text);
  int cn = snprintf(chunk, sizeof(chunk), "%x\r\n%s\r\n", en, ev);
  return write(fd, chunk, (size_t)cn) == cn ? 0 : -1;
}

/* The dynamic answer: the request's first message says what to stream, so
 * every call gets a stream of its own.
 *   "s:ID:N:MS"  N pieces "ID.k;" (k = 0…N-1), MS ms apart, then stop and [DONE]
 *   "h:ID"       one piece "ID.held;", then the stream stays open until the
 *                client closes it (held_closed counts those).
 *   "p:ID"       pieces "ID.a;" and "ID.b;" at once, then 3 s of silence
 *                (ends_written is bumped just before the end is written),
 *                then the end
 * 0 when the connection may serve another request. */
static int dynamic_answer(int fd, const char *body) {
  json_t *b = json_loads(body, 0, NULL);
  const char *tag = json_string_value(json_object_get(json_array_get(json_object_get(b, "messages"), 0), "content"));
  char id[64] = "";
  int pieces = 0, ms = 0, held = 0, pause = 0;
  if (tag && sscanf(tag, "s:%63[^:]:%d:%d", id, &pieces, &ms) == 3) held = 0;
  else if (tag && sscanf(tag, "h:%63s", id) == 1) held = 1;
  else if (tag && sscanf(tag, "p:%63s", id) == 1) pause = 1;
  json_decref(b);
  const char *head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
  if (write(fd, head, strlen(head)) < 0) return -1;
  char text[96];
  if (held) {
    snprintf(text, sizeof(text), "%s.held;", id);
    if (write_piece(fd, text) != 0) return -1;
    char c;
    while (read(fd, &c, 1) > 0) {
    }
    atomic_fetch_add(&srv.held_closed, 1);
    return -1;
  }
  if (pause) {
    snprintf(text, sizeof(text), "%s.a;", id);
    if (write_piece(fd, text) != 0) return -1;
    snprintf(text, sizeof(text), "%s.b;", id);
    if (write_piece(fd, text) != 0) return -1;
    sleep(3);
    atomic_fetch_add(&srv.ends_written, 1);
  }
  for (int k = 0; k < pieces; k++) {
    snprintf(text, sizeof(text), "%s.%d;", id, k);
    if (write_piece(fd, text) != 0) return -1;
    if (ms > 0) usleep((useconds_t)ms * 1000);
  }
  const char *end = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
  char chunk[256];
  int cn = snprintf(chunk, sizeof(chunk), "%zx\r\n%s\r\n0\r\n\r\n", strlen(end), end);
  return write(fd, chunk, (size_t)cn) == cn ? 0 : -1;
}

static void *serve_conn(void *arg) {
  int fd = (int)(intptr_t)arg;
  buf_t in;
  buf_init(&in, 0);
  char *body;
  while ((body = read_request(fd, &in))) {
    if (!srv.answer) {
      int rc = dynamic_answer(fd, body);
      free(body);
      if (rc != 0) break;
      continue;
    }
    pthread_mutex_lock(&srv.mu);
    int first = srv.n_bodies == 0;
    if (srv.n_bodies < 16) srv.bodies[srv.n_bodies++] = body;
    else free(body);
    pthread_mutex_unlock(&srv.mu);
    if (first && srv.drop_first) { /* the answer began (so the body was all sent), then breaks off */
      const char *cut = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "8\r\n: ping\n\n\r\n";
      if (write(fd, cut, strlen(cut)) < 0) break;
      break;
    }
    char head[256];
    size_t n = strlen(srv.answer);
    int hn = snprintf(head, sizeof(head),
                      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "%zx\r\n",
                      n);
    if (write(fd, head, (size_t)hn) < 0 || write(fd, srv.answer, n) < 0) break;
    if (srv.hold) {
      if (write(fd, "\r\n", 2) < 0) break;
      char c;
      while (read(fd, &c, 1) > 0) {
      }
      atomic_store(&srv.client_closed, 1);
      break;
    }
    if (write(fd, "\r\n0\r\n\r\n", 7) < 0) break;
  }
  buf_dispose(&in);
  close(fd);
  return NULL;
}

static void *accept_loop(void *arg) {
  (void)arg;
  while (!atomic_load(&srv.stop)) {
    int fd = accept(srv.lfd, NULL, NULL);
    if (fd < 0) continue;
    if (atomic_load(&srv.stop)) {
      close(fd);
      break;
    }
    pthread_mutex_lock(&srv.mu);
    srv.connections++;
    pthread_mutex_unlock(&srv.mu);
    pthread_t t;
    pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd);
    pthread_detach(t);
  }
  return NULL;
}

static void server_start(const char *answer, int hold) {
  memset(&srv, 0, sizeof(srv));
  pthread_mutex_init(&srv.mu, NULL);
  srv.answer = answer;
  srv.hold = hold;
  srv.lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(srv.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
  socklen_t al = sizeof(a);
  getsockname(srv.lfd, (struct sockaddr *)&a, &al);
  srv.port = ntohs(a.sin_port);
  cr_assert_eq(listen(srv.lfd, 256), 0);
  pthread_create(&srv.th, NULL, accept_loop, NULL);
}

static void server_stop(void) {
  atomic_store(&srv.stop, 1);
  /* wake accept() */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                          .sin_port = htons((uint16_t)srv.port)};
  connect(fd, (struct sockaddr *)&a, sizeof(a));
  close(fd);
  pthread_join(srv.th, NULL);
  close(srv.lfd);
  for (int i = 0; i < srv.n_bodies; i++) free(srv.bodies[i]);
}

static llm_t *open_provider(double timeout) {
  char url[64], err[256];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1", srv.port);
  llm_options_t o = {.base_url = url, .model = "m", .api_key = "sk-unit", .timeout_s = timeout};
  llm_t *l = llm_open("openai", &o, err, sizeof(err));
  cr_assert_not_null(l, "%s", err);
  return l;
}

static json_t *body_of(int i) {
  pthread_mutex_lock(&srv.mu);
  json_t *j = i < srv.n_bodies ? json_loads(srv.bodies[i], 0, NULL) : NULL;
  pthread_mutex_unlock(&srv.mu);
  return j;
}

#define SSE_TEXT                                                                                                  \
  "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n"             \
  "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"},\"finish_reason\":\"stop\"}]}\n\n"      \
  "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n"                          \
  "data: [DONE]\n\n"

/* ---- the request ---- */

#define SSE_CALL                                                                                                  \
  "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_9\",\"function\":{"    \
  "\"name\":\"srv_tool\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n"                     \
  "data: [DONE]\n\n"

Test(llm_openai, request_body_and_name_mapping) {
  server_start(SSE_CALL, 0);
  llm_t *l = open_provider(30);
  json_t *schema = json_pack("{s:s}", "type", "object");
  json_t *facts = json_pack("{s:i}", "n", 3);
  /* srv.tool (a dotted MCP name) and srv_tool (already legal): the legal one keeps its name */
  const llm_tool_t tools[] = {{.name = "srv.tool", .description = "dotted", .parameters = schema},
                              {.name = "srv_tool", .parameters = schema}};
  const llm_tool_call_t earlier = {.id = "call_1", .name = "srv.tool", .arguments_raw = "{\"a\":1}"};
  const llm_message_t msgs[] = {
      {.role = LLM_ROLE_SYSTEM, .content = "sys"},
      {.role = LLM_ROLE_USER, .content_json = facts},
      {.role = LLM_ROLE_ASSISTANT, .tool_calls = &earlier, .n_tool_calls = 1},
      {.role = LLM_ROLE_TOOL, .tool_call_id = "call_1", .content = "{\"ok\":true}"},
  };
  const llm_request_t req = {.messages = msgs,
                             .n_messages = 4,
                             .tools = tools,
                             .n_tools = 2,
                             .tool_choice = LLM_TOOL_CHOICE_FUNCTION,
                             .tool_choice_name = "srv.tool",
                             .max_output_tokens = 50,
                             .temperature = 0.5};
  llm_response_t r;
  cr_assert_eq(llm_chat(l, &req, NULL, NULL, &r), 0, "%s", r.error_message);
  /* the model called srv_tool: that is the legal tool's own name, not the dotted one's */
  cr_assert_eq(r.n_tool_calls, 1);
  cr_expect_str_eq(r.tool_calls[0].name, "srv_tool");
  llm_response_dispose(&r);

  json_t *b = body_of(0);
  cr_assert_not_null(b);
  cr_expect_str_eq(json_string_value(json_object_get(b, "model")), "m");
  cr_expect(json_is_true(json_object_get(b, "stream")));
  cr_expect(json_is_true(json_object_get(json_object_get(b, "stream_options"), "include_usage")));
  cr_expect_eq(json_integer_value(json_object_get(b, "max_tokens")), 50);
  cr_expect(json_real_value(json_object_get(b, "temperature")) == 0.5);
  json_t *t = json_object_get(b, "tools");
  const char *w0 = json_string_value(json_object_get(json_object_get(json_array_get(t, 0), "function"), "name"));
  const char *w1 = json_string_value(json_object_get(json_object_get(json_array_get(t, 1), "function"), "name"));
  cr_assert_not_null(w0);
  char wire0[65];
  snprintf(wire0, sizeof(wire0), "%s", w0);
  cr_expect_str_eq(w1, "srv_tool");
  cr_expect_str_neq(w0, "srv_tool");
  cr_expect(strncmp(w0, "srv_tool_", 9) == 0 && strlen(w0) <= 64, "%s", w0);
  cr_expect_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(b, "tool_choice"), "function"),
                                                     "name")),
                   w0);
  json_t *m = json_object_get(b, "messages");
  cr_expect_str_eq(json_string_value(json_object_get(json_array_get(m, 1), "content")), "{\"n\":3}");
  json_t *a = json_array_get(m, 2);
  cr_expect(json_is_null(json_object_get(a, "content")));
  json_t *call = json_array_get(json_object_get(a, "tool_calls"), 0);
  cr_expect_str_eq(json_string_value(json_object_get(call, "id")), "call_1");
  cr_expect_str_eq(json_string_value(json_object_get(call, "type")), "function");
  cr_expect_str_eq(json_string_value(json_object_get(json_object_get(call, "function"), "name")), w0);
  cr_expect_str_eq(json_string_value(json_object_get(json_object_get(call, "function"), "arguments")), "{\"a\":1}");
  json_t *tm = json_array_get(m, 3);
  cr_expect_str_eq(json_string_value(json_object_get(tm, "role")), "tool");
  cr_expect_str_eq(json_string_value(json_object_get(tm, "tool_call_id")), "call_1");
  json_decref(b);

  /* the model calls the wire name of the dotted tool: it comes back as srv.tool */
  static char sse2[512];
  snprintf(sse2, sizeof(sse2),
           "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{"
           "\"name\":\"%s\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
           wire0);
  srv.answer = sse2;
  cr_assert_eq(llm_chat(l, &req, NULL, NULL, &r), 0, "%s", r.error_message);
  cr_assert_eq(r.n_tool_calls, 1);
  cr_expect_str_eq(r.tool_calls[0].name, "srv.tool");
  llm_response_dispose(&r);

  json_decref(schema);
  json_decref(facts);
  llm_close(l);
  server_stop();
}

/* ---- streaming, usage, keep-alive ---- */

typedef struct deltas {
  int n;
  char text[256];
} deltas_t;

static int on_text(void *ud, const char *p, size_t n) {
  deltas_t *d = ud;
  d->n++;
  strncat(d->text, p, n < 100 ? n : 100);
  return 0;
}

typedef struct worker {
  llm_t *l;
  int rc;
  llm_response_t r;
} worker_t;

static void *call_once(void *arg) {
  worker_t *w = arg;
  const llm_message_t msg = {.role = LLM_ROLE_USER, .content = "hi"};
  const llm_request_t req = {.messages = &msg, .n_messages = 1, .temperature = -1};
  w->rc = llm_chat(w->l, &req, NULL, NULL, &w->r);
  return NULL;
}

Test(llm_openai, text_usage_and_one_connection_for_calls_in_turn) {
  server_start(SSE_TEXT, 0);
  llm_t *l = open_provider(30);
  const llm_message_t msg = {.role = LLM_ROLE_USER, .content = "hi"};
  const llm_request_t req = {.messages = &msg, .n_messages = 1, .temperature = -1};
  const llm_stream_cb_t cb = {.on_text_delta = on_text};
  deltas_t d = {0};
  llm_response_t r;
  cr_assert_eq(llm_chat(l, &req, &cb, &d, &r), 0, "%s", r.error_message);
  cr_expect_str_eq(r.text, "Hi there");
  cr_expect_str_eq(d.text, "Hi there");
  cr_expect_eq(d.n, 2); /* coalescing off: each piece */
  cr_expect_eq(r.prompt_tokens, 5);
  cr_expect_eq(r.completion_tokens, 2);
  cr_expect_eq(r.finish, LLM_FINISH_STOP);
  llm_response_dispose(&r);
  json_t *b = body_of(0);
  cr_expect_null(json_object_get(b, "temperature"));
  cr_expect_null(json_object_get(b, "tools"));
  cr_expect_null(json_object_get(b, "tool_choice"));
  json_decref(b);
  /* further calls, from other threads one after the other, reuse the kept-alive connection */
  for (int i = 0; i < 3; i++) {
    worker_t w = {.l = l};
    pthread_t t;
    pthread_create(&t, NULL, call_once, &w);
    pthread_join(t, NULL);
    cr_expect_eq(w.rc, 0, "%s", w.r.error_message);
    llm_response_dispose(&w.r);
  }
  pthread_mutex_lock(&srv.mu);
  cr_expect_eq(srv.connections, 1, "%d connections", srv.connections);
  cr_expect_eq(srv.n_bodies, 4);
  pthread_mutex_unlock(&srv.mu);
  /* and calls at the same time each get their own */
  worker_t ws[4];
  pthread_t ts[4];
  for (int i = 0; i < 4; i++) {
    ws[i] = (worker_t){.l = l};
    pthread_create(&ts[i], NULL, call_once, &ws[i]);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(ts[i], NULL);
    cr_expect_eq(ws[i].rc, 0, "%s", ws[i].r.error_message);
    cr_expect_str_eq(ws[i].r.text, "Hi there");
    llm_response_dispose(&ws[i].r);
  }
  llm_close(l);
  server_stop();
}

/* The body is freed once the answer began (it is not needed while the stream
 * goes on); a retry after that builds it again: the same bytes go out. */
Test(llm_openai, a_retry_after_the_answer_began_resends_the_same_body) {
  server_start(SSE_TEXT, 0);
  srv.drop_first = 1;
  llm_t *l = open_provider(30);
  const llm_message_t msgs[] = {{.role = LLM_ROLE_SYSTEM, .content = "be brief"},
                                {.role = LLM_ROLE_USER, .content = "hi \u00e9 \"quoted\""}};
  const llm_request_t req = {.messages = msgs, .n_messages = 2, .temperature = 0.5, .max_output_tokens = 77};
  const llm_stream_cb_t cb = {.on_text_delta = on_text};
  deltas_t d = {0};
  llm_response_t r;
  cr_assert_eq(llm_chat(l, &req, &cb, &d, &r), 0, "%s", r.error_message);
  cr_expect_str_eq(r.text, "Hi there");
  cr_expect_str_eq(d.text, "Hi there", "nothing of the broken attempt was handed on");
  llm_response_dispose(&r);
  pthread_mutex_lock(&srv.mu);
  cr_assert_eq(srv.n_bodies, 2, "one retry: %d requests", srv.n_bodies);
  cr_expect_gt(strlen(srv.bodies[0]), 0);
  cr_expect_str_eq(srv.bodies[1], srv.bodies[0], "the retry's body is the first one");
  cr_expect_eq(srv.connections, 2);
  pthread_mutex_unlock(&srv.mu);
  llm_close(l);
  server_stop();
}

Test(llm_openai, coalescing_over_the_wire) {
  /* 40 pieces in one burst: with coalescing on they reach the callback in far fewer calls, whole */
  static char sse[8192];
  size_t n = 0;
  for (int i = 0; i < 40; i++)
    n += (size_t)snprintf(sse + n, sizeof(sse) - n,
                          "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"é%d \"}}]}\n\n", i % 10);
  snprintf(sse + n, sizeof(sse) - n,
           "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
  server_start(sse, 0);
  llm_t *l = open_provider(30);
  const llm_message_t msg = {.role = LLM_ROLE_USER, .content = "hi"};
  const llm_request_t req = {.messages = &msg, .n_messages = 1, .coalesce_bytes = 1 << 20, .coalesce_ms = 10000};
  const llm_stream_cb_t cb = {.on_text_delta = on_text};
  deltas_t d = {0};
  llm_response_t r;
  cr_assert_eq(llm_chat(l, &req, &cb, &d, &r), 0, "%s", r.error_message);
  /* the first piece at once, the rest held until the end */
  cr_expect_eq(d.n, 2, "%d callbacks", d.n);
  cr_expect_eq(strlen(r.text), 40 * 4);
  llm_response_dispose(&r);
  llm_close(l);
  server_stop();
}

/* ---- cancel ---- */

static atomic_int cancel_flag;

static void *cancel_later(void *arg) {
  (void)arg;
  usleep(200 * 1000);
  atomic_store(&cancel_flag, 1);
  return NULL;
}

Test(llm_openai, cancel_closes_the_connection) {
  server_start("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"part\"}}]}\n\n", 1);
  llm_t *l = open_provider(60);
  atomic_store(&cancel_flag, 0);
  const llm_message_t msg = {.role = LLM_ROLE_USER, .content = "hi"};
  const llm_request_t req = {.messages = &msg, .n_messages = 1, .cancel = &cancel_flag};
  pthread_t t;
  pthread_create(&t, NULL, cancel_later, NULL);
  llm_response_t r;
  cr_expect_eq(llm_chat(l, &req, NULL, NULL, &r), AGD_ECANCELLED);
  pthread_join(t, NULL);
  cr_expect_eq(r.finish, LLM_FINISH_CANCELLED);
  cr_expect_str_eq(r.text, "part"); /* what came before stays */
  llm_response_dispose(&r);
  for (int i = 0; i < 600 && !atomic_load(&srv.client_closed); i++) usleep(50 * 1000);
  cr_expect(atomic_load(&srv.client_closed), "the server never saw the client close");
  llm_close(l);
  server_stop();
}

/* ---- the one I/O thread: many calls at once ---- */

typedef struct stream_call {
  llm_t *l;
  char tag[64];
  char expect[4096]; /* the text the stream must bring */
  int slow_ms;       /* the callback sleeps this long at each piece */
  atomic_int *cancel;
  atomic_int *started; /* bumped at the first piece */
  buf_t seen;          /* what the callback was given, joined */
  int first;
  int rc;
  llm_response_t r;
} stream_call_t;

static int on_stream_text(void *ud, const char *p, size_t n) {
  stream_call_t *c = ud;
  buf_append(&c->seen, p, n);
  if (!c->first && c->started) atomic_fetch_add(c->started, 1);
  c->first = 1;
  if (c->slow_ms) usleep((useconds_t)c->slow_ms * 1000);
  return 0;
}

static void *stream_one(void *arg) {
  stream_call_t *c = arg;
  buf_init(&c->seen, 0);
  const llm_message_t msg = {.role = LLM_ROLE_USER, .content = c->tag};
  const llm_request_t req = {.messages = &msg, .n_messages = 1, .cancel = c->cancel};
  const llm_stream_cb_t cb = {.on_text_delta = on_stream_text};
  c->rc = llm_chat(c->l, &req, &cb, c, &c->r);
  return NULL;
}

/* tag "s:ID:N:MS" and the text it streams */
static void stream_plan(stream_call_t *c, llm_t *l, const char *id, int pieces, int ms) {
  memset(c, 0, sizeof(*c));
  c->l = l;
  snprintf(c->tag, sizeof(c->tag), "s:%s:%d:%d", id, pieces, ms);
  size_t n = 0;
  for (int k = 0; k < pieces; k++) n += (size_t)snprintf(c->expect + n, sizeof(c->expect) - n, "%s.%d;", id, k);
}

static void expect_whole(stream_call_t *c) {
  cr_expect_eq(c->rc, 0, "%s: %s", c->tag, c->r.error_message);
  cr_expect_str_eq(c->r.text ? c->r.text : "", c->expect, "%s", c->tag);
  cr_expect(c->seen.len == strlen(c->expect) && memcmp(c->seen.base, c->expect, c->seen.len) == 0,
            "%s: the callbacks saw %.*s", c->tag, (int)c->seen.len, c->seen.base ? c->seen.base : "");
}

static void stream_call_dispose(stream_call_t *c) {
  llm_response_dispose(&c->r);
  buf_dispose(&c->seen);
}

Test(llm_openai, many_threads_each_get_exactly_their_own_stream, .timeout = 240) {
  enum { THREADS = 50, ROUNDS = 2 };
  server_start(NULL, 0);
  llm_t *l = open_provider(120);
  for (int round = 0; round < ROUNDS; round++) {
    stream_call_t *cs = calloc(THREADS, sizeof(*cs));
    pthread_t ts[THREADS];
    for (int i = 0; i < THREADS; i++) {
      char id[32];
      snprintf(id, sizeof(id), "r%dc%d", round, i);
      stream_plan(&cs[i], l, id, 20 + i % 7, 2);
      pthread_create(&ts[i], NULL, stream_one, &cs[i]);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(ts[i], NULL);
    for (int i = 0; i < THREADS; i++) {
      expect_whole(&cs[i]);
      stream_call_dispose(&cs[i]);
    }
    free(cs);
  }
  llm_close(l);
  server_stop();
}

static void wait_count(atomic_int *v, int n) {
  for (int i = 0; i < 2400 && atomic_load(v) < n; i++) usleep(50 * 1000);
  cr_assert_geq(atomic_load(v), n, "only %d of %d calls started", atomic_load(v), n);
}

Test(llm_openai, a_cancel_of_one_call_leaves_the_others_alone, .timeout = 240) {
  enum { OTHERS = 10 };
  server_start(NULL, 0);
  llm_t *l = open_provider(120);
  atomic_int started = 0, cancel = 0;
  stream_call_t held;
  memset(&held, 0, sizeof(held));
  held.l = l;
  snprintf(held.tag, sizeof(held.tag), "h:victim");
  held.cancel = &cancel;
  held.started = &started;
  stream_call_t cs[OTHERS];
  pthread_t ts[OTHERS], th;
  pthread_create(&th, NULL, stream_one, &held);
  wait_count(&started, 1);
  for (int i = 0; i < OTHERS; i++) {
    char id[32];
    snprintf(id, sizeof(id), "o%d", i);
    stream_plan(&cs[i], l, id, 40, 10); /* ~0.4 s each: in flight when the cancel comes */
    cs[i].started = &started;
    pthread_create(&ts[i], NULL, stream_one, &cs[i]);
  }
  wait_count(&started, 1 + OTHERS);
  atomic_store(&cancel, 1);
  pthread_join(th, NULL);
  cr_expect_eq(held.rc, AGD_ECANCELLED);
  cr_expect_eq(held.r.finish, LLM_FINISH_CANCELLED);
  cr_expect_str_eq(held.r.text, "victim.held;");
  for (int i = 0; i < OTHERS; i++) {
    pthread_join(ts[i], NULL);
    expect_whole(&cs[i]);
    stream_call_dispose(&cs[i]);
  }
  for (int i = 0; i < 600 && atomic_load(&srv.held_closed) < 1; i++) usleep(50 * 1000);
  cr_expect_eq(atomic_load(&srv.held_closed), 1, "the server did not see the cancelled call's connection close");
  stream_call_dispose(&held);
  llm_close(l);
  server_stop();
}

Test(llm_openai, a_slow_callback_loses_nothing, .timeout = 240) {
  server_start(NULL, 0);
  llm_t *l = open_provider(120);
  /* the slow one gets 200 pieces as fast as the server writes them and takes
   * 3 ms over each; two others stream beside it */
  stream_call_t slow, a, b;
  stream_plan(&slow, l, "slow", 200, 0);
  slow.slow_ms = 3;
  stream_plan(&a, l, "a", 60, 1);
  stream_plan(&b, l, "b", 60, 0);
  pthread_t t1, t2, t3;
  pthread_create(&t1, NULL, stream_one, &slow);
  pthread_create(&t2, NULL, stream_one, &a);
  pthread_create(&t3, NULL, stream_one, &b);
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  pthread_join(t3, NULL);
  expect_whole(&slow);
  expect_whole(&a);
  expect_whole(&b);
  stream_call_dispose(&slow);
  stream_call_dispose(&a);
  stream_call_dispose(&b);
  llm_close(l);
  server_stop();
}

Test(llm_openai, close_with_calls_in_flight_cancels_them, .timeout = 240) {
  enum { N = 5 };
  server_start(NULL, 0);
  llm_t *l = open_provider(120);
  atomic_int started = 0;
  stream_call_t cs[N];
  pthread_t ts[N];
  for (int i = 0; i < N; i++) {
    memset(&cs[i], 0, sizeof(cs[i]));
    cs[i].l = l;
    snprintf(cs[i].tag, sizeof(cs[i].tag), "h:held%d", i);
    cs[i].started = &started;
    pthread_create(&ts[i], NULL, stream_one, &cs[i]);
  }
  wait_count(&started, N);
  llm_close(l); /* returns once every caller has left llm_chat */
  for (int i = 0; i < N; i++) {
    pthread_join(ts[i], NULL);
    cr_expect_eq(cs[i].rc, AGD_ECANCELLED);
    cr_expect_eq(cs[i].r.finish, LLM_FINISH_CANCELLED);
    char want[32];
    snprintf(want, sizeof(want), "held%d.held;", i);
    cr_expect_str_eq(cs[i].r.text, want);
    stream_call_dispose(&cs[i]);
  }
  for (int i = 0; i < 600 && atomic_load(&srv.held_closed) < N; i++) usleep(50 * 1000);
  cr_expect_eq(atomic_load(&srv.held_closed), N, "the server saw %d of %d connections close",
               atomic_load(&srv.held_closed), N);
  server_stop();
}

/* ---- held deltas go out on their due time, not at the end ---- */

typedef struct paused_call {
  llm_t *l;
  char tag[32], id[16];
  int n_cb;
  int b_before_end; /* the held piece reached the callback before the server wrote the end */
  int rc;
  llm_response_t r;
} paused_call_t;

static int on_paused_text(void *ud, const char *p, size_t n) {
  paused_call_t *c = ud;
  c->n_cb++;
  char want[32];
  snprintf(want, sizeof(want), "%s.b;", c->id);
  if (n >= strlen(want) && memcmp(p + n - strlen(want), want, strlen(want)) == 0 && atomic_load(&srv.ends_written) == 0)
    c->b_before_end = 1;
  return 0;
}

static void *paused_one(void *arg) {
  paused_call_t *c = arg;
  const llm_message_t msg = {.role = LLM_ROLE_USER, .content = c->tag};
  /* "ID.b;" comes right after "ID.a;": within 100 ms of the first callback, so it is held */
  const llm_request_t req = {.messages = &msg, .n_messages = 1, .coalesce_bytes = 1 << 20, .coalesce_ms = 100};
  const llm_stream_cb_t cb = {.on_text_delta = on_paused_text};
  c->rc = llm_chat(c->l, &req, &cb, c, &c->r);
  return NULL;
}

Test(llm_openai, held_deltas_of_many_calls_go_out_when_due, .timeout = 240) {
  enum { N = 8 };
  server_start(NULL, 0);
  llm_t *l = open_provider(120);
  paused_call_t cs[N];
  pthread_t ts[N];
  for (int i = 0; i < N; i++) {
    memset(&cs[i], 0, sizeof(cs[i]));
    cs[i].l = l;
    snprintf(cs[i].id, sizeof(cs[i].id), "p%d", i);
    snprintf(cs[i].tag, sizeof(cs[i].tag), "p:p%d", i);
    pthread_create(&ts[i], NULL, paused_one, &cs[i]);
  }
  for (int i = 0; i < N; i++) {
    pthread_join(ts[i], NULL);
    cr_expect_eq(cs[i].rc, 0, "%s", cs[i].r.error_message);
    char want[48];
    snprintf(want, sizeof(want), "%s.a;%s.b;", cs[i].id, cs[i].id);
    cr_expect_str_eq(cs[i].r.text, want);
    /* the held piece went out by the provider's timer during the 3 s of silence, not with the end */
    cr_expect(cs[i].b_before_end, "%s: the held piece waited for the end of the stream", cs[i].id);
    llm_response_dispose(&cs[i].r);
  }
  llm_close(l);
  server_stop();
}
