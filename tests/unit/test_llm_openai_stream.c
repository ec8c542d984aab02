/* tests/unit/test_llm_openai_stream.c — llm/openai_stream.c, the chunk
 * assembler of the openai provider: text and reasoning deltas (both
 * reasoning fields), tool call fragments joined by index (OpenAI's split
 * arguments, interleaved calls, Ollama's whole calls without index),
 * finish_reason mapping, usage with choices [] or null, [DONE], malformed
 * chunks, and the coalescing rule of llm.h (a piece after a quiet
 * coalesce_ms goes at once, a fast one is held until coalesce_bytes or
 * coalesce_ms, all before the tool calls at the end). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "llm/openai_stream.h"
#include "util/buf.h"
#include "util/err.h"

/* What the callbacks saw: "T[..]" text, "R[..]" reasoning, "C[name]" a call. */
typedef struct rec {
  buf_t log;
  int stop_on_call;
} rec_t;

static int on_text(void *ud, const char *p, size_t n) {
  rec_t *r = ud;
  buf_appendf(&r->log, "T[%.*s]", (int)n, p);
  return 0;
}
static int on_reasoning(void *ud, const char *p, size_t n) {
  rec_t *r = ud;
  buf_appendf(&r->log, "R[%.*s]", (int)n, p);
  return 0;
}
static int on_call(void *ud, const llm_tool_call_t *c) {
  rec_t *r = ud;
  buf_appendf(&r->log, "C[%s]", c->name);
  return r->stop_on_call;
}
static const llm_stream_cb_t cbs = {.on_text_delta = on_text, .on_reasoning_delta = on_reasoning,
                                    .on_tool_call = on_call};

typedef struct fx {
  oai_stream_t st;
  rec_t rec;
  llm_response_t out;
} fx_t;

static void fx_init(fx_t *f, int co_bytes, int co_ms) {
  memset(f, 0, sizeof(*f));
  buf_init(&f->rec.log, 0);
  oai_stream_init(&f->st, &cbs, &f->rec, co_bytes, co_ms);
}

static void fx_dispose(fx_t *f) {
  oai_stream_dispose(&f->st);
  llm_response_dispose(&f->out);
  buf_dispose(&f->rec.log);
}

static const char *logged(fx_t *f) {
  buf_append(&f->rec.log, "", 1);
  f->rec.log.len--;
  return f->rec.log.base ? f->rec.log.base : "";
}

static int ev(fx_t *f, const char *data, uint64_t now) { return oai_stream_event(&f->st, data, strlen(data), now); }

#define DELTA(d) "{\"choices\":[{\"index\":0,\"delta\":" d ",\"finish_reason\":null}]}"
#define FINISH(r) "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"" r "\"}]}"

static const char *upper(void *arg, const char *name) {
  (void)arg;
  return strcmp(name, "weather_forecast") == 0 ? "weather.forecast" : name;
}

Test(oai_stream, text_reasoning_usage_done) {
  fx_t f;
  fx_init(&f, 0, 0);
  cr_assert_eq(ev(&f, DELTA("{\"role\":\"assistant\",\"content\":\"\"}"), 1), 0);
  cr_assert_eq(ev(&f, DELTA("{\"reasoning_content\":\"think \"}"), 2), 0);
  cr_assert_eq(ev(&f, DELTA("{\"reasoning\":\"more\"}"), 3), 0);
  cr_assert_eq(ev(&f, DELTA("{\"content\":\"Hé\",\"role\":\"assistant\"}"), 4), 0);
  cr_assert_eq(ev(&f, DELTA("{\"content\":\"llo\"}"), 5), 0);
  cr_assert_eq(ev(&f, FINISH("stop"), 6), 0);
  cr_assert_eq(ev(&f, "{\"choices\":null,\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7}}", 7), 0);
  cr_assert_eq(ev(&f, "[DONE]", 8), 0);
  cr_expect(f.st.done);
  cr_assert_eq(ev(&f, "anything after [DONE] is ignored", 9), 0);
  cr_assert_eq(oai_stream_finish(&f.st, &f.out, NULL, NULL), 0);
  cr_expect_str_eq(f.out.text, "Héllo");
  cr_expect_str_eq(f.out.reasoning, "think more");
  cr_expect_eq(f.out.finish, LLM_FINISH_STOP);
  cr_expect_eq(f.out.prompt_tokens, 12);
  cr_expect_eq(f.out.completion_tokens, 7);
  cr_expect_str_eq(logged(&f), "R[think ]R[more]T[Hé]T[llo]");
  fx_dispose(&f);
}

Test(oai_stream, usage_with_empty_choices) {
  fx_t f;
  fx_init(&f, 0, 0);
  cr_assert_eq(ev(&f, DELTA("{\"content\":\"x\"}"), 1), 0);
  cr_assert_eq(ev(&f, FINISH("length"), 1), 0);
  cr_assert_eq(ev(&f, "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}", 1), 0);
  cr_assert_eq(oai_stream_finish(&f.st, &f.out, NULL, NULL), 0);
  cr_expect_eq(f.out.finish, LLM_FINISH_LENGTH);
  cr_expect_eq(f.out.prompt_tokens, 3);
  fx_dispose(&f);
}

Test(oai_stream, split_tool_calls_joined_by_index) {
  fx_t f;
  fx_init(&f, 0, 0);
  /* two calls, fragments interleaved, id and name in the first fragment only */
  cr_assert_eq(ev(&f, DELTA("{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":1,\"id\":\"call_b\","
                            "\"type\":\"function\",\"function\":{\"name\":\"weather_forecast\",\"arguments\":\"\"}}]}"),
                  1),
               0);
  cr_assert_eq(ev(&f, DELTA("{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{"
                            "\"name\":\"get_weather\",\"arguments\":\"{\\\"ci\"}}]}"),
                  1),
               0);
  cr_assert_eq(ev(&f, DELTA("{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{\\\"days\\\":\"}}]}"), 1), 0);
  cr_assert_eq(ev(&f, DELTA("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ty\\\":\\\"Paris\\\"}\"}}]}"),
                  1),
               0);
  cr_assert_eq(ev(&f, DELTA("{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"3}\"}}]}"), 1), 0);
  cr_assert_eq(ev(&f, FINISH("tool_calls"), 1), 0);
  cr_assert_eq(ev(&f, "[DONE]", 1), 0);
  cr_assert_eq(oai_stream_finish(&f.st, &f.out, upper, NULL), 0);
  cr_expect_eq(f.out.finish, LLM_FINISH_TOOL_CALLS);
  cr_assert_eq(f.out.n_tool_calls, 2);
  cr_expect_str_eq(f.out.tool_calls[0].id, "call_a");
  cr_expect_str_eq(f.out.tool_calls[0].name, "get_weather");
  cr_expect_str_eq(f.out.tool_calls[0].arguments_raw, "{\"city\":\"Paris\"}");
  cr_expect_str_eq(json_string_value(json_object_get(f.out.tool_calls[0].arguments, "city")), "Paris");
  cr_expect_str_eq(f.out.tool_calls[1].id, "call_b");
  cr_expect_str_eq(f.out.tool_calls[1].name, "weather.forecast");
  cr_expect_eq(json_integer_value(json_object_get(f.out.tool_calls[1].arguments, "days")), 3);
  cr_expect_str_eq(logged(&f), "C[get_weather]C[weather.forecast]");
  fx_dispose(&f);
}

Test(oai_stream, ollama_whole_calls_without_index) {
  fx_t f;
  fx_init(&f, 0, 0);
  cr_assert_eq(ev(&f, DELTA("{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call_1\",\"function\":"
                            "{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}}]}"),
                  1),
               0);
  /* a second whole call, arguments as an object (some servers do) */
  cr_assert_eq(ev(&f, DELTA("{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"call_2\",\"function\":"
                            "{\"name\":\"noargs\",\"arguments\":{}}}]}"),
                  1),
               0);
  /* Ollama ends a tool answer with "stop" */
  cr_assert_eq(ev(&f, "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                      "\"finish_reason\":\"stop\"}]}",
                  1),
               0);
  cr_assert_eq(oai_stream_finish(&f.st, &f.out, NULL, NULL), 0);
  cr_expect_eq(f.out.finish, LLM_FINISH_TOOL_CALLS);
  cr_assert_eq(f.out.n_tool_calls, 2);
  cr_expect_str_eq(f.out.tool_calls[0].id, "call_1");
  cr_expect_str_eq(f.out.tool_calls[1].name, "noargs");
  cr_expect(json_is_object(f.out.tool_calls[1].arguments));
  fx_dispose(&f);
}

Test(oai_stream, arguments_that_are_not_an_object_stay_raw) {
  fx_t f;
  fx_init(&f, 0, 0);
  cr_assert_eq(ev(&f, DELTA("{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"a\",\"arguments\":\"{broken\"}},"
                            "{\"index\":1,\"id\":\"call_x\",\"function\":{\"name\":\"b\",\"arguments\":\"  \"}}]}"),
                  1),
               0);
  cr_assert_eq(ev(&f, FINISH("function_call"), 1), 0);
  cr_assert_eq(oai_stream_finish(&f.st, &f.out, NULL, NULL), 0);
  cr_expect_eq(f.out.finish, LLM_FINISH_TOOL_CALLS);
  cr_assert_eq(f.out.n_tool_calls, 2);
  cr_expect_null(f.out.tool_calls[0].arguments);
  cr_expect_str_eq(f.out.tool_calls[0].arguments_raw, "{broken");
  cr_expect_str_eq(f.out.tool_calls[0].id, "call_0"); /* no id from the server: one is made up */
  cr_expect_str_eq(f.out.tool_calls[1].arguments_raw, "{}"); /* no arguments: {} */
  fx_dispose(&f);
}

Test(oai_stream, a_callback_stops_at_a_tool_call) {
  fx_t f;
  fx_init(&f, 0, 0);
  f.rec.stop_on_call = 1;
  cr_assert_eq(ev(&f, DELTA("{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"a\",\"arguments\":"
                            "\"{}\"}},{\"index\":1,\"id\":\"d\",\"function\":{\"name\":\"b\",\"arguments\":\"{}\"}}]}"),
                  1),
               0);
  cr_expect_eq(oai_stream_finish(&f.st, &f.out, NULL, NULL), AGD_ECANCELLED);
  cr_expect_str_eq(logged(&f), "C[a]");
  fx_dispose(&f);
}

static void expect_bad(const char *data, llm_error_t want) {
  fx_t f;
  fx_init(&f, 0, 0);
  cr_expect_neq(ev(&f, data, 1), 0, "%s", data);
  cr_expect_eq(f.st.error, want, "%s: %d", data, f.st.error);
  cr_expect(f.st.error_message[0] != '\0');
  fx_dispose(&f);
}

Test(oai_stream, malformed_chunks) {
  expect_bad("{not json}", LLM_ERR_BAD_RESPONSE);
  expect_bad("[1,2]", LLM_ERR_BAD_RESPONSE);
  expect_bad("\"text\"", LLM_ERR_BAD_RESPONSE);
  expect_bad("{}", LLM_ERR_BAD_RESPONSE);
  expect_bad("{\"choices\":{}}", LLM_ERR_BAD_RESPONSE);
  expect_bad("{\"choices\":[7]}", LLM_ERR_BAD_RESPONSE);
  expect_bad(DELTA("[]"), LLM_ERR_BAD_RESPONSE);
  expect_bad(DELTA("{\"content\":5}"), LLM_ERR_BAD_RESPONSE);
  expect_bad(DELTA("{\"reasoning\":{}}"), LLM_ERR_BAD_RESPONSE);
  expect_bad(DELTA("{\"tool_calls\":{}}"), LLM_ERR_BAD_RESPONSE);
  expect_bad(DELTA("{\"tool_calls\":[5]}"), LLM_ERR_BAD_RESPONSE);
  expect_bad(DELTA("{\"tool_calls\":[{\"index\":-1}]}"), LLM_ERR_BAD_RESPONSE);
  expect_bad(DELTA("{\"tool_calls\":[{\"index\":100000}]}"), LLM_ERR_BAD_RESPONSE);
  expect_bad(DELTA("{\"tool_calls\":[{\"index\":\"0\"}]}"), LLM_ERR_BAD_RESPONSE);
  expect_bad(DELTA("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":7}}]}"), LLM_ERR_BAD_RESPONSE);
  expect_bad("{\"choices\":[{\"delta\":{},\"finish_reason\":3}]}", LLM_ERR_BAD_RESPONSE);
  expect_bad("{\"choices\":[],\"usage\":7}", LLM_ERR_BAD_RESPONSE);
  /* a failure the server reports mid-stream */
  expect_bad("{\"error\":{\"message\":\"overloaded\\nnow\"}}", LLM_ERR_UNAVAILABLE);
}

Test(oai_stream, too_many_tool_calls) {
  fx_t f;
  fx_init(&f, 0, 0);
  char d[256];
  int rc = 0;
  for (int i = 0; i <= OAI_MAX_TOOL_CALLS && rc == 0; i++) {
    snprintf(d, sizeof(d), DELTA("{\"tool_calls\":[{\"id\":\"c%d\",\"function\":{\"name\":\"t\"}}]}"), i);
    rc = ev(&f, d, 1);
  }
  cr_expect_neq(rc, 0);
  cr_expect_eq(f.st.error, LLM_ERR_BAD_RESPONSE);
  fx_dispose(&f);
}

/* ---- coalescing (llm.h: coalesce_bytes / coalesce_ms) ---- */

Test(oai_stream, coalescing_off_hands_on_each_piece) {
  fx_t f;
  fx_init(&f, 0, 0);
  for (int i = 0; i < 3; i++) ev(&f, DELTA("{\"content\":\"ab\"}"), 100);
  cr_expect_str_eq(logged(&f), "T[ab]T[ab]T[ab]");
  cr_expect_eq(oai_stream_due(&f.st), 0);
  fx_dispose(&f);
}

Test(oai_stream, coalescing_rate_limits_a_fast_stream) {
  fx_t f;
  fx_init(&f, 8, 25);
  ev(&f, DELTA("{\"content\":\"a\"}"), 1000); /* the first piece goes at once */
  cr_expect_str_eq(logged(&f), "T[a]");
  ev(&f, DELTA("{\"content\":\"b\"}"), 1005); /* sooner than 25 ms: held */
  ev(&f, DELTA("{\"content\":\"c\"}"), 1010);
  cr_expect_str_eq(logged(&f), "T[a]");
  cr_expect_eq(oai_stream_due(&f.st), 1025);
  cr_expect_eq(oai_stream_tick(&f.st, 1024), 0);
  cr_expect_str_eq(logged(&f), "T[a]");
  cr_expect_eq(oai_stream_tick(&f.st, 1025), 0); /* due: what is held goes in one callback */
  cr_expect_str_eq(logged(&f), "T[a]T[bc]");
  cr_expect_eq(oai_stream_due(&f.st), 0);
  /* coalesce_bytes held: out at once */
  ev(&f, DELTA("{\"content\":\"1234\"}"), 1030);
  ev(&f, DELTA("{\"content\":\"5678\"}"), 1031);
  cr_expect_str_eq(logged(&f), "T[a]T[bc]T[12345678]");
  /* a piece after a quiet coalesce_ms goes at once */
  ev(&f, DELTA("{\"content\":\"z\"}"), 1100);
  cr_expect_str_eq(logged(&f), "T[a]T[bc]T[12345678]T[z]");
  fx_dispose(&f);
}

Test(oai_stream, held_pieces_go_before_the_tool_calls_and_in_order) {
  fx_t f;
  fx_init(&f, 1000, 25);
  ev(&f, DELTA("{\"reasoning\":\"r1\"}"), 1000);
  ev(&f, DELTA("{\"reasoning\":\"r2\"}"), 1001); /* held */
  ev(&f, DELTA("{\"content\":\"t1\"}"), 1002);   /* the first text: the held reasoning goes first */
  ev(&f, DELTA("{\"content\":\"t2\"}"), 1003);   /* held */
  ev(&f, DELTA("{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}"),
     1004);
  ev(&f, FINISH("tool_calls"), 1005);
  cr_expect_str_eq(logged(&f), "R[r1]R[r2]T[t1]");
  cr_assert_eq(oai_stream_finish(&f.st, &f.out, NULL, NULL), 0);
  cr_expect_str_eq(logged(&f), "R[r1]R[r2]T[t1]T[t2]C[f]");
  cr_expect_str_eq(f.out.text, "t1t2");
  cr_expect_str_eq(f.out.reasoning, "r1r2");
  fx_dispose(&f);
}

Test(oai_stream, take_keeps_what_was_produced) {
  fx_t f;
  fx_init(&f, 1000, 25);
  ev(&f, DELTA("{\"content\":\"a\"}"), 1000);
  ev(&f, DELTA("{\"content\":\"b\"}"), 1001);
  oai_stream_take(&f.st, &f.out);
  cr_expect_str_eq(f.out.text, "ab");
  cr_expect_null(f.out.reasoning);
  cr_expect(f.st.handed_on);
  fx_dispose(&f);
}
