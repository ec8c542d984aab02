/* llm/llm.c — what every provider shares (llm.h): the request check and the
 * response's invariants around a provider's chat(), provider selection,
 * classification as a forced function call, and the streaming helper.
 */
#include "llm/llm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/timeutil.h"
#include "util/utf8.h"
#include "util/xalloc.h"

/* ---- names ---- */

static const char *const intent_names[LLM_INTENT__COUNT] = {
    [LLM_INTENT_COST] = "cost",
    [LLM_INTENT_LATENCY] = "latency",
    [LLM_INTENT_MODEL_SELECTION] = "model_selection",
    [LLM_INTENT_CACHING] = "caching",
    [LLM_INTENT_USAGE_REPORT] = "usage_report",
    [LLM_INTENT_DATA_UPLOAD_HELP] = "data_upload_help",
    [LLM_INTENT_GENERAL] = "general",
};

const char *llm_intent_name(llm_intent_t i) {
  if ((int)i < 0 || i >= LLM_INTENT__COUNT) return "general";
  return intent_names[i];
}

int llm_intent_parse(const char *s) {
  for (int i = 0; s && i < LLM_INTENT__COUNT; i++)
    if (strcmp(s, intent_names[i]) == 0) return i;
  return -1;
}

static const char *const role_names[LLM_ROLE__COUNT] = {
    [LLM_ROLE_SYSTEM] = "system", [LLM_ROLE_USER] = "user", [LLM_ROLE_ASSISTANT] = "assistant",
    [LLM_ROLE_TOOL] = "tool"};

const char *llm_role_name(llm_role_t r) { return (int)r < 0 || r >= LLM_ROLE__COUNT ? NULL : role_names[r]; }

static const char *const finish_names[LLM_FINISH__COUNT] = {
    [LLM_FINISH_STOP] = "stop",           [LLM_FINISH_TOOL_CALLS] = "tool_calls", [LLM_FINISH_LENGTH] = "length",
    [LLM_FINISH_CANCELLED] = "cancelled", [LLM_FINISH_ERROR] = "error"};

const char *llm_finish_name(llm_finish_t f) { return (int)f < 0 || f >= LLM_FINISH__COUNT ? "error" : finish_names[f]; }

static const char *const error_codes[LLM_ERR__COUNT] = {
    [LLM_OK] = NULL,
    [LLM_ERR_BAD_REQUEST] = "LLM_BAD_REQUEST",
    [LLM_ERR_BAD_RESPONSE] = "LLM_BAD_RESPONSE",
    [LLM_ERR_TIMEOUT] = "LLM_TIMEOUT",
    [LLM_ERR_UNAVAILABLE] = "LLM_UNAVAILABLE",
    [LLM_ERR_RATE_LIMITED] = "LLM_RATE_LIMITED",
    [LLM_ERR_INTERNAL] = "LLM_INTERNAL",
};

const char *llm_error_code(llm_error_t e) {
  if ((int)e <= 0 || e >= LLM_ERR__COUNT) return e == LLM_OK ? NULL : "LLM_INTERNAL";
  return error_codes[e];
}

/* The AGD_E* a caller sees for an llm error.  The server answering garbage or
 * refusing more work is a dependency failing, like a database that is down. */
static int agd_of(llm_error_t e) {
  switch (e) {
  case LLM_OK: return 0;
  case LLM_ERR_BAD_REQUEST: return AGD_EBAD_REQUEST;
  case LLM_ERR_TIMEOUT: return AGD_ETIMEOUT;
  case LLM_ERR_BAD_RESPONSE:
  case LLM_ERR_UNAVAILABLE:
  case LLM_ERR_RATE_LIMITED: return AGD_EUNAVAILABLE;
  default: return AGD_EINTERNAL;
  }
}

/* ---- requests and responses ---- */

int llm_request_cancelled(const llm_request_t *req) {
  if (req->cancel && atomic_load(req->cancel)) return 1;
  return req->cancelled && req->cancelled(req->cancel_arg);
}

int llm_response_fail(llm_response_t *out, llm_error_t e, const char *fmt, ...) {
  if (e == LLM_OK) e = LLM_ERR_INTERNAL;
  out->finish = LLM_FINISH_ERROR;
  out->error = e;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out->error_message, sizeof(out->error_message), fmt, ap);
  va_end(ap);
  return ERR(agd_of(e));
}

static void tool_call_dispose(llm_tool_call_t *c) {
  free(c->id);
  free(c->name);
  json_decref(c->arguments);
  free(c->arguments_raw);
}

int llm_response_add_tool_call(llm_response_t *out, const char *id, const char *name, json_t *arguments,
                               const char *arguments_raw) {
  llm_tool_call_t *calls = realloc(out->tool_calls, (out->n_tool_calls + 1) * sizeof(*calls));
  if (!calls) {
    json_decref(arguments);
    return ERR(AGD_EINTERNAL);
  }
  out->tool_calls = calls;
  llm_tool_call_t c = {
      .id = strdup(id ? id : ""),
      .name = strdup(name ? name : ""),
      .arguments = arguments,
      .arguments_raw = arguments_raw ? strdup(arguments_raw)
                       : arguments   ? json_dumps(arguments, JSON_COMPACT | JSON_ENCODE_ANY)
                                     : strdup(""),
  };
  if (!c.id || !c.name || !c.arguments_raw) {
    tool_call_dispose(&c);
    return ERR(AGD_EINTERNAL);
  }
  out->tool_calls[out->n_tool_calls++] = c;
  return 0;
}

char *llm_message_text(const llm_message_t *m) {
  if (m->content_json) return json_dumps(m->content_json, JSON_COMPACT | JSON_ENCODE_ANY);
  return m->content ? xstrdup(m->content) : NULL;
}

void llm_response_dispose(llm_response_t *r) {
  if (!r) return;
  free(r->text);
  free(r->reasoning);
  for (size_t i = 0; i < r->n_tool_calls; i++) tool_call_dispose(&r->tool_calls[i]);
  free(r->tool_calls);
  memset(r, 0, sizeof(*r));
}

/* A tool name the request may carry: 1-128 bytes, no control bytes or spaces.
 * A provider maps it to what its API takes (openai.c: a name with a '.'). */
static int tool_name_ok(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > 128) return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f) return 0;
  return 1;
}

/* The shape every provider relies on, checked once here.  0 or a fail(). */
static int check_request(const llm_request_t *req, llm_response_t *out) {
  if (!req->messages || req->n_messages == 0)
    return llm_response_fail(out, LLM_ERR_BAD_REQUEST, "a chat request needs at least one message");
  for (size_t i = 0; i < req->n_messages; i++) {
    const llm_message_t *m = &req->messages[i];
    if (!llm_role_name(m->role)) return llm_response_fail(out, LLM_ERR_BAD_REQUEST, "message %zu has no role", i);
    if (!m->content && !m->content_json && !(m->role == LLM_ROLE_ASSISTANT && m->n_tool_calls > 0))
      return llm_response_fail(out, LLM_ERR_BAD_REQUEST, "message %zu (%s) has no content", i, role_names[m->role]);
    if (m->role == LLM_ROLE_TOOL && (!m->tool_call_id || !*m->tool_call_id))
      return llm_response_fail(out, LLM_ERR_BAD_REQUEST, "tool message %zu has no tool_call_id", i);
    if (m->n_tool_calls > 0 && (m->role != LLM_ROLE_ASSISTANT || !m->tool_calls))
      return llm_response_fail(out, LLM_ERR_BAD_REQUEST, "message %zu: only an assistant message has tool calls", i);
    for (size_t k = 0; k < m->n_tool_calls; k++)
      if (!m->tool_calls[k].id || !tool_name_ok(m->tool_calls[k].name))
        return llm_response_fail(out, LLM_ERR_BAD_REQUEST, "message %zu: tool call %zu needs an id and a name", i,
                                 k);
  }
  if (req->n_tools > 0 && !req->tools) return llm_response_fail(out, LLM_ERR_BAD_REQUEST, "tools missing");
  for (size_t i = 0; i < req->n_tools; i++) {
    const llm_tool_t *t = &req->tools[i];
    if (!tool_name_ok(t->name))
      return llm_response_fail(out, LLM_ERR_BAD_REQUEST, "tool %zu: the name must be 1-128 bytes without spaces", i);
    if (!json_is_object(t->parameters))
      return llm_response_fail(out, LLM_ERR_BAD_REQUEST, "tool '%s': parameters must be a JSON schema object",
                               t->name);
  }
  switch (req->tool_choice) {
  case LLM_TOOL_CHOICE_AUTO:
  case LLM_TOOL_CHOICE_NONE: break;
  case LLM_TOOL_CHOICE_REQUIRED:
    if (req->n_tools == 0) return llm_response_fail(out, LLM_ERR_BAD_REQUEST, "tool_choice required without tools");
    break;
  case LLM_TOOL_CHOICE_FUNCTION: {
    size_t i = 0;
    while (i < req->n_tools && !(req->tool_choice_name && strcmp(req->tools[i].name, req->tool_choice_name) == 0))
      i++;
    if (i == req->n_tools)
      return llm_response_fail(out, LLM_ERR_BAD_REQUEST, "tool_choice names a function that is not among the tools");
    break;
  }
  default: return llm_response_fail(out, LLM_ERR_BAD_REQUEST, "unknown tool_choice");
  }
  if (req->max_output_tokens < 0) return llm_response_fail(out, LLM_ERR_BAD_REQUEST, "max_output_tokens < 0");
  if (!(req->temperature <= 2)) /* NaN too */
    return llm_response_fail(out, LLM_ERR_BAD_REQUEST, "temperature must be at most 2");
  return 0;
}

/* After the provider: text and reasoning never NULL, and the return code
 * agrees with the finish reason whatever the provider returned. */
static int settle(const llm_t *l, llm_response_t *out, int rc) {
  if (!out->text) out->text = strdup("");
  if (!out->reasoning) out->reasoning = strdup("");
  if (!out->text || !out->reasoning) abort(); /* out of memory for two bytes */
  if (rc != 0 && out->finish != LLM_FINISH_ERROR && out->finish != LLM_FINISH_CANCELLED) {
    if (rc == AGD_ECANCELLED) out->finish = LLM_FINISH_CANCELLED;
    else llm_response_fail(out, LLM_ERR_INTERNAL, "the %s provider failed (%s)", llm_name(l), agd_err_code(rc));
  }
  switch (out->finish) {
  case LLM_FINISH_STOP:
  case LLM_FINISH_TOOL_CALLS:
  case LLM_FINISH_LENGTH: out->error = LLM_OK; return 0;
  case LLM_FINISH_CANCELLED: out->error = LLM_OK; return AGD_ECANCELLED;
  default:
    out->finish = LLM_FINISH_ERROR;
    if (out->error == LLM_OK) out->error = LLM_ERR_INTERNAL;
    return agd_of(out->error);
  }
}

/* ---- usage ---- */

static _Thread_local llm_usage_fn usage_fn;
static _Thread_local void *usage_arg;

void llm_usage_observe(llm_usage_fn fn, void *arg) {
  usage_fn = fn;
  usage_arg = fn ? arg : NULL;
}

/* Tell the thread's observer about one call the provider made. */
static void report_usage(const llm_t *l, const llm_response_t *out, double t0) {
  if (!usage_fn) return;
  double now = time_now();
  llm_call_usage_t u = {
      .provider = llm_name(l),
      .model = llm_model(l),
      .started_at = t0,
      .latency_ms = (now - t0) * 1000.0,
      .prompt_tokens = out->prompt_tokens,
      .completion_tokens = out->completion_tokens,
      .finish = out->finish,
      .error = out->error,
  };
  usage_fn(usage_arg, &u);
}

int llm_chat(llm_t *l, const llm_request_t *req, const llm_stream_cb_t *cb, void *ud, llm_response_t *out) {
  memset(out, 0, sizeof(*out));
  static const llm_stream_cb_t no_cb = {0};
  int rc;
  if (!l || !l->provider || !l->provider->chat || !req)
    rc = llm_response_fail(out, LLM_ERR_BAD_REQUEST, "no provider or no request");
  else if ((rc = check_request(req, out)) != 0)
    ;
  else if (llm_request_cancelled(req))
    out->finish = LLM_FINISH_CANCELLED; /* stopped before it started */
  else if (req->deadline > 0 && time_now() >= req->deadline)
    rc = llm_response_fail(out, LLM_ERR_TIMEOUT, "the deadline passed before the model was asked");
  else {
    double t0 = time_now();
    rc = settle(l, out, l->provider->chat(l, req, cb ? cb : &no_cb, ud, out));
    report_usage(l, out, t0);
    return rc;
  }
  return settle(l, out, rc);
}

const char *llm_name(const llm_t *l) { return l && l->provider ? l->provider->name : "none"; }

int llm_tool_name_wire_safe(const char *name) {
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > 64) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

const char *llm_model(const llm_t *l) {
  if (l && l->provider && l->provider->model) return l->provider->model(l);
  return llm_name(l);
}

/* ---- selection ---- */

llm_t *llm_open(const char *provider, const llm_options_t *opt, char *err, size_t cap) {
  if (!provider || strcmp(provider, "builtin") == 0) return llm_builtin_new();
  if (strcmp(provider, "openai") == 0) return llm_openai_new(opt, err, cap);
  /* Honest at start-up: no silent fallback to builtin (SPEC §10: bad
   * configuration exits 2 with one line). */
  if (err && cap) snprintf(err, cap, "unknown llm provider '%.64s' (known: builtin, openai)", provider);
  return NULL;
}

void llm_close(llm_t *l) {
  if (l && l->provider && l->provider->destroy) l->provider->destroy(l);
}

/* ---- classification as a forced function call ---- */

static const char classify_prompt[] =
    "You classify one request that a user sent to agentd, a service that analyses the user's own LLM calls. "
    "Call " LLM_CLASSIFY_FN " once with: intent (cost: what the calls cost and how to spend less; latency: how "
    "fast they are; model_selection: which model to use; caching: repeated prompts worth caching; usage_report: "
    "a summary or report of usage; data_upload_help: how to send call records to agentd; general: anything "
    "else), confidence from 0 to 1, one or two sentences of reasoning that quote the words that decided it, and "
    "those words as keywords.";

static json_t *classify_schema(void) {
  json_t *intents = json_array();
  for (int i = 0; i < LLM_INTENT__COUNT; i++) json_array_append_new(intents, json_string(intent_names[i]));
  return json_pack("{s:s,s:{s:{s:s,s:o},s:{s:s,s:i,s:i},s:{s:s},s:{s:s,s:{s:s}}},s:[ssss],s:b}", "type", "object",
                   "properties", "intent", "type", "string", "enum", intents, "confidence", "type", "number",
                   "minimum", 0, "maximum", 1, "reasoning", "type", "string", "keywords", "type", "array", "items",
                   "type", "string", "required", "intent", "confidence", "reasoning", "keywords",
                   "additionalProperties", 0);
}

/* Copy s into dst[cap] without cutting a UTF-8 sequence. */
static void copy_utf8(char *dst, size_t cap, const char *s) {
  size_t n = utf8_cut(s, cap - 1);
  memcpy(dst, s, n);
  dst[n] = '\0';
}

/* The model's call of LLM_CLASSIFY_FN into *out; 0 or a bad response. */
static int read_classification(const llm_response_t *r, llm_classification_t *out) {
  const json_t *args = NULL;
  for (size_t i = 0; i < r->n_tool_calls && !args; i++)
    if (strcmp(r->tool_calls[i].name, LLM_CLASSIFY_FN) == 0) args = r->tool_calls[i].arguments;
  int intent = llm_intent_parse(json_string_value(json_object_get(args, "intent")));
  if (!json_is_object(args) || intent < 0) return ERR(AGD_EUNAVAILABLE);
  out->intent = (llm_intent_t)intent;
  const json_t *conf = json_object_get(args, "confidence");
  double c = json_is_number(conf) ? json_number_value(conf) : 0.5;
  out->confidence = c < 0 ? 0 : c > 1 ? 1 : c;
  const char *why = json_string_value(json_object_get(args, "reasoning"));
  copy_utf8(out->reasoning, sizeof(out->reasoning), why ? why : "");
  /* Comma-separated, whole keywords only (a comma inside one would split it). */
  size_t i;
  const json_t *k;
  json_array_foreach(json_object_get(args, "keywords"), i, k) {
    const char *s = json_string_value(k);
    size_t len = strlen(out->keywords), kn = s ? strlen(s) : 0;
    if (!kn || strchr(s, ',') || len + kn + 2 > sizeof(out->keywords)) continue;
    snprintf(out->keywords + len, sizeof(out->keywords) - len, "%s%s", len ? "," : "", s);
  }
  return 0;
}

int llm_classify(llm_t *l, const char *text, int (*cancelled)(const void *arg), const void *cancel_arg,
                 llm_classification_t *out) {
  if (!text || !out) return ERR(AGD_EBAD_REQUEST);
  memset(out, 0, sizeof(*out));
  json_t *schema = classify_schema();
  if (!schema) return ERR(AGD_EINTERNAL);
  const llm_message_t msgs[] = {{.role = LLM_ROLE_SYSTEM, .content = classify_prompt},
                                {.role = LLM_ROLE_USER, .content = text}};
  const llm_tool_t tool = {.name = LLM_CLASSIFY_FN,
                           .description = "Report the intent of the user's request.",
                           .parameters = schema};
  const llm_request_t req = {.messages = msgs,
                             .n_messages = 2,
                             .tools = &tool,
                             .n_tools = 1,
                             .tool_choice = LLM_TOOL_CHOICE_FUNCTION,
                             .tool_choice_name = LLM_CLASSIFY_FN,
                             .max_output_tokens = 400,
                             .cancelled = cancelled,
                             .cancel_arg = cancel_arg};
  llm_response_t r;
  int rc = llm_chat(l, &req, NULL, NULL, &r);
  if (rc == 0) rc = read_classification(&r, out);
  llm_response_dispose(&r);
  json_decref(schema);
  return rc;
}

/* ---- streaming helper ---- */

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t llm_next_delta(const char *p, size_t n) {
  /* Whole words (with their leading whitespace) until the delta has ≥ 200
   * bytes — a sentence or two: the answer still visibly streams, while each
   * delta is an event that is stored and sent to every socket of the user, so
   * word-sized deltas would multiply a run's events several times over — never
   * past LLM_DELTA_MAX; a single longer word is cut. */
  enum { MIN_DELTA = 200 };
  size_t i = 0;
  if (n == 0) return 0;
  for (;;) {
    size_t start = i;
    while (i < n && is_space((unsigned char)p[i])) i++;
    while (i < n && !is_space((unsigned char)p[i])) i++;
    if (i > LLM_DELTA_MAX) {
      if (start > 0) return start; /* this word goes into the next delta */
      size_t cut = utf8_floor(p, LLM_DELTA_MAX);
      return cut > 0 ? cut : LLM_DELTA_MAX; /* never an empty delta, even of invalid text */
    }
    if (i >= n || i >= MIN_DELTA) return i;
  }
}
