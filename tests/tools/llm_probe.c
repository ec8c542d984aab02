/* tests/tools/llm_probe.c — one llm_chat of the openai provider from the
 * command line, for the end-to-end tests (tests/e2e/test_llm_openai.py) and
 * the comparison with the official openai client against the stand-in.
 *
 *   llm_probe [--timeout S] [--max-output BYTES] [--cancel-after-ms N] BASE_URL MODEL MESSAGE
 *
 * Sends MESSAGE as the user message with two tools — get_weather and the
 * dotted weather.forecast (exercising the provider's name mapping) —
 * coalescing off, OPENAI_API_KEY from the environment, and prints one JSON
 * object: {"text","reasoning","tool_calls":[{"id","name","arguments"}],
 * "finish","error","prompt_tokens","completion_tokens"} (arguments: the
 * parsed object, or the raw text when it is not JSON; error: the
 * llm_error_code or null).  With --cancel-after-ms a second thread sets the
 * cancel flag after N ms and the object also has "cancel_to_return_ms".
 * An error's message goes to stderr.
 * Exit 0 whenever the call ran (the JSON says how it went), 2 on bad usage.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llm/llm.h"
#include "util/timeutil.h"

static atomic_int cancel_flag;
static _Atomic uint64_t cancelled_at_ms;
static long cancel_after_ms = -1;

static void *canceller(void *arg) {
  (void)arg;
  struct timespec ts = {.tv_sec = cancel_after_ms / 1000, .tv_nsec = (cancel_after_ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  atomic_store(&cancelled_at_ms, time_mono_ms());
  atomic_store(&cancel_flag, 1);
  return NULL;
}

static int usage(void) {
  fprintf(stderr, "usage: llm_probe [--timeout S] [--max-output BYTES] [--cancel-after-ms N] BASE_URL MODEL MESSAGE\n");
  return 2;
}

int main(int argc, char **argv) {
  double timeout = 0;
  size_t max_output = 0;
  int i = 1;
  for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
    if (strcmp(argv[i], "--timeout") == 0) timeout = atof(argv[i + 1]);
    else if (strcmp(argv[i], "--max-output") == 0) max_output = strtoull(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--cancel-after-ms") == 0) cancel_after_ms = atol(argv[i + 1]);
    else return usage();
  }
  if (argc - i != 3) return usage();
  llm_options_t opt = {.base_url = argv[i],
                       .model = argv[i + 1],
                       .api_key = getenv("OPENAI_API_KEY"),
                       .timeout_s = timeout,
                       .max_output_bytes = max_output};
  char err[512];
  llm_t *l = llm_open("openai", &opt, err, sizeof(err));
  if (!l) {
    fprintf(stderr, "llm_probe: %s\n", err);
    return 2;
  }
  json_t *weather = json_pack("{s:s,s:{s:{s:s}},s:[s]}", "type", "object", "properties", "city", "type", "string",
                              "required", "city");
  json_t *forecast = json_pack("{s:s,s:{s:{s:s}}}", "type", "object", "properties", "days", "type", "integer");
  const llm_tool_t tools[] = {
      {.name = "get_weather", .description = "The current weather of a city.", .parameters = weather},
      {.name = "weather.forecast", .description = "The forecast for the next days.", .parameters = forecast}};
  const llm_message_t msg = {.role = LLM_ROLE_USER, .content = argv[i + 2]};
  const llm_request_t req = {.messages = &msg,
                             .n_messages = 1,
                             .tools = tools,
                             .n_tools = 2,
                             .temperature = -1,
                             .cancel = &cancel_flag};
  pthread_t th;
  if (cancel_after_ms >= 0) pthread_create(&th, NULL, canceller, NULL);
  llm_response_t r;
  llm_chat(l, &req, NULL, NULL, &r);
  uint64_t returned = time_mono_ms();
  if (cancel_after_ms >= 0) pthread_join(th, NULL);

  json_t *calls = json_array();
  for (size_t k = 0; k < r.n_tool_calls; k++) {
    const llm_tool_call_t *c = &r.tool_calls[k];
    json_t *args = c->arguments ? json_incref(c->arguments) : json_string(c->arguments_raw);
    json_array_append_new(calls, json_pack("{s:s,s:s,s:o}", "id", c->id, "name", c->name, "arguments", args));
  }
  const char *code = r.finish == LLM_FINISH_ERROR ? llm_error_code(r.error) : NULL;
  json_t *o = json_pack("{s:s,s:s,s:o,s:s,s:o,s:I,s:I}", "text", r.text, "reasoning", r.reasoning, "tool_calls",
                        calls, "finish", llm_finish_name(r.finish), "error", code ? json_string(code) : json_null(),
                        "prompt_tokens", (json_int_t)r.prompt_tokens, "completion_tokens",
                        (json_int_t)r.completion_tokens);
  if (cancel_after_ms >= 0) {
    uint64_t at = atomic_load(&cancelled_at_ms);
    json_object_set_new(o, "cancel_to_return_ms", json_integer(at && returned >= at ? (json_int_t)(returned - at) : -1));
  }
  if (r.finish == LLM_FINISH_ERROR) fprintf(stderr, "llm_probe: %s: %s\n", code, r.error_message);
  char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
  puts(s ? s : "{}");
  free(s);
  json_decref(o);
  llm_response_dispose(&r);
  json_decref(weather);
  json_decref(forecast);
  llm_close(l);
  return 0;
}
