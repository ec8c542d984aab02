/* tools/builtin_core.c — the core built-in tools (SPEC §7):
 *   classify_request {"text"}              → the llm's classification of a request
 *   calculator       {"expression"}        → safe arithmetic (agents use it for cost math)
 *   thread_context   {"thread_id","limit"?} → the caller's latest messages of one thread
 * and, from builtin_workloads.c, the workload tools (registered here too).
 * Reentrant: any thread (run threads, workers).  thread_context blocks on the
 * store, so it is never called on the loop thread.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/llm.h"
#include "store/store.h"
#include "tools/tool.h"
#include "util/err.h"
#include "util/utf8.h"

#define CALC_MAX_LEN 1000
#define CALC_MAX_DEPTH 64
#define CONTEXT_MAX_LIMIT 50
#define CONTEXT_DEFAULT_LIMIT 10
#define CONTEXT_CONTENT_MAX 4000 /* bytes of one message returned to an agent */

static json_t *error_obj(const char *msg) { return json_pack("{s:s}", "error", msg); }

/* ---- classify_request ---- */

static int classify_call(const tool_t *self, const tool_call_ctx_t *ctx, const json_t *args, json_t **result) {
  llm_t *l = ctx && ctx->llm ? ctx->llm : llm_builtin_new();
  const char *text = json_string_value(json_object_get(args, "text"));
  llm_classification_t c;
  int rc = llm_classify(l, text, ctx ? ctx->cancelled : NULL, ctx ? ctx->cancel_arg : NULL, &c);
  /* A model that answers nonsense (no call, an unknown intent) or fails (down,
   * rate limited) does not fail the run: the builtin classifier answers and the
   * result says so (SPEC §11, docs/protocol.md).  A cancel stays a cancel. */
  int fallback = 0;
  char why[96] = "";
  if (rc != 0 && rc != AGD_ECANCELLED && l != llm_builtin_new() && !tool_call_cancelled(ctx)) {
    snprintf(why, sizeof(why), "%s", rc == AGD_EUNAVAILABLE ? "the model did not classify the request"
                                     : agd_err_code(rc));
    fallback = 1;
    rc = llm_classify(llm_builtin_new(), text, ctx ? ctx->cancelled : NULL, ctx ? ctx->cancel_arg : NULL, &c);
  }
  if (rc != 0) {
    *result = error_obj("classification failed");
    return rc;
  }
  json_t *kw = json_array();
  char *save = NULL, buf[sizeof(c.keywords)];
  memcpy(buf, c.keywords, sizeof(buf));
  for (char *k = strtok_r(buf, ",", &save); k; k = strtok_r(NULL, ",", &save))
    if (*k) json_array_append_new(kw, json_string(k));
  *result = json_pack("{s:s,s:f,s:s,s:o}", "intent", llm_intent_name(c.intent), "confidence", c.confidence,
                      "reasoning", c.reasoning, "keywords", kw);
  if (fallback && *result) {
    json_object_set_new(*result, "fallback", json_true());
    json_object_set_new(*result, "fallback_reason", json_string(why));
  }
  return 0;
}

static const tool_t tool_classify = {
    .name = "classify_request",
    .description = "Classify a user request about LLM usage: cost, latency, model_selection, caching, "
                   "usage_report, data_upload_help or general, with confidence, reasoning and matched keywords.",
    .input_schema_json = "{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\",\"minLength\":1,"
                         "\"maxLength\":100000,\"description\":\"the request to classify\"}},"
                         "\"required\":[\"text\"],\"additionalProperties\":false}",
    .source = "builtin",
    .call = classify_call,
};

/* ---- calculator: recursive descent over doubles ----
 *   expr    = term (('+' | '-') term)*
 *   term    = unary (('*' | '/') unary)*
 *   unary   = ('-' | '+') unary | primary
 *   primary = number | '(' expr ')'
 *   number  = digits ['.' digits] | '.' digits */

typedef struct calc {
  const char *s;
  size_t n, i;
  int depth;
  char err[160];
} calc_t;

static void calc_skip(calc_t *c) {
  while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' || c->s[c->i] == '\r'))
    c->i++;
}

static int calc_fail(calc_t *c, const char *what) {
  if (!c->err[0]) {
    if (c->i >= c->n) snprintf(c->err, sizeof(c->err), "%s at the end of the expression", what);
    else {
      unsigned char ch = (unsigned char)c->s[c->i];
      if (ch >= 0x20 && ch < 0x7f)
        snprintf(c->err, sizeof(c->err), "%s: unexpected '%c' at position %zu", what, ch, c->i + 1);
      else snprintf(c->err, sizeof(c->err), "%s: unexpected character at position %zu", what, c->i + 1);
    }
  }
  return -1;
}

static int calc_expr(calc_t *c, double *out);

static int calc_primary(calc_t *c, double *out) {
  calc_skip(c);
  if (c->i < c->n && c->s[c->i] == '(') {
    if (++c->depth > CALC_MAX_DEPTH) {
      snprintf(c->err, sizeof(c->err), "expression nested deeper than %d levels", CALC_MAX_DEPTH);
      return -1;
    }
    c->i++;
    if (calc_expr(c, out) != 0) return -1;
    calc_skip(c);
    if (c->i >= c->n || c->s[c->i] != ')') return calc_fail(c, "expected ')'");
    c->i++;
    c->depth--;
    return 0;
  }
  size_t start = c->i;
  double v = 0;
  int digits = 0;
  while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
    v = v * 10 + (c->s[c->i++] - '0');
    digits++;
  }
  if (c->i < c->n && c->s[c->i] == '.') {
    c->i++;
    double scale = 0.1;
    while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
      v += (c->s[c->i++] - '0') * scale;
      scale /= 10;
      digits++;
    }
  }
  if (digits == 0) {
    c->i = start;
    return calc_fail(c, "expected a number");
  }
  /* Re-read with strtod for correct rounding of the decimal literal. */
  char lit[128];
  size_t len = c->i - start;
  if (len < sizeof(lit)) {
    memcpy(lit, c->s + start, len);
    lit[len] = '\0';
    v = strtod(lit, NULL);
  }
  *out = v;
  return 0;
}

static int calc_unary(calc_t *c, double *out) {
  calc_skip(c);
  if (c->i < c->n && (c->s[c->i] == '-' || c->s[c->i] == '+')) {
    int neg = c->s[c->i] == '-';
    if (++c->depth > CALC_MAX_DEPTH) {
      snprintf(c->err, sizeof(c->err), "expression nested deeper than %d levels", CALC_MAX_DEPTH);
      return -1;
    }
    c->i++;
    if (calc_unary(c, out) != 0) return -1;
    c->depth--;
    if (neg) *out = -*out;
    return 0;
  }
  return calc_primary(c, out);
}

static int calc_term(calc_t *c, double *out) {
  if (calc_unary(c, out) != 0) return -1;
  for (;;) {
    calc_skip(c);
    if (c->i >= c->n || (c->s[c->i] != '*' && c->s[c->i] != '/')) return 0;
    char op = c->s[c->i++];
    double r;
    if (calc_unary(c, &r) != 0) return -1;
    if (op == '/') {
      if (r == 0) {
        snprintf(c->err, sizeof(c->err), "division by zero");
        return -1;
      }
      *out /= r;
    } else {
      *out *= r;
    }
  }
}

static int calc_expr(calc_t *c, double *out) {
  if (calc_term(c, out) != 0) return -1;
  for (;;) {
    calc_skip(c);
    if (c->i >= c->n || (c->s[c->i] != '+' && c->s[c->i] != '-')) return 0;
    char op = c->s[c->i++];
    double r;
    if (calc_term(c, &r) != 0) return -1;
    *out = op == '+' ? *out + r : *out - r;
  }
}

/* Evaluate expr; 0 and *out, or AGD_EVALIDATION with err filled. */
static int calc_eval(const char *expr, double *out, char *err, size_t cap) {
  calc_t c = {.s = expr, .n = strlen(expr)};
  if (c.n > CALC_MAX_LEN) {
    snprintf(err, cap, "expression longer than %d characters", CALC_MAX_LEN);
    return AGD_EVALIDATION;
  }
  double v = 0;
  int rc = calc_expr(&c, &v);
  if (rc == 0) {
    calc_skip(&c);
    if (c.i < c.n) rc = calc_fail(&c, "expected an operator");
  }
  if (rc == 0 && !isfinite(v)) {
    snprintf(c.err, sizeof(c.err), "result is too large");
    rc = -1;
  }
  if (rc != 0) {
    snprintf(err, cap, "%s", c.err[0] ? c.err : "invalid expression");
    return AGD_EVALIDATION;
  }
  *out = v == 0 ? 0 : v; /* no "-0" */
  return 0;
}

static int calc_call(const tool_t *self, const tool_call_ctx_t *ctx, const json_t *args, json_t **result) {
  const char *expr = json_string_value(json_object_get(args, "expression"));
  double v;
  char err[200];
  int rc = calc_eval(expr, &v, err, sizeof(err));
  if (rc != 0) {
    *result = error_obj(err);
    return rc;
  }
  json_t *num = (v == floor(v) && fabs(v) < 9007199254740992.0) ? json_integer((json_int_t)v) : json_real(v);
  *result = json_pack("{s:s,s:o}", "expression", expr, "result", num);
  return 0;
}

static const tool_t tool_calculator = {
    .name = "calculator",
    .description = "Evaluate an arithmetic expression: + - * / and parentheses over decimal numbers, unary minus.",
    .input_schema_json = "{\"type\":\"object\",\"properties\":{\"expression\":{\"type\":\"string\",\"minLength\":1,"
                         "\"maxLength\":1000,\"description\":\"e.g. (0.03 * 1200 + 0.06 * 300) / 1000\"}},"
                         "\"required\":[\"expression\"],\"additionalProperties\":false}",
    .source = "builtin",
    .call = calc_call,
};

/* ---- thread_context ---- */

static int context_call(const tool_t *self, const tool_call_ctx_t *ctx, const json_t *args, json_t **result) {
  const char *thread_id = json_string_value(json_object_get(args, "thread_id"));
  json_int_t limit = CONTEXT_DEFAULT_LIMIT;
  const json_t *jl = json_object_get(args, "limit");
  if (json_is_number(jl)) limit = (json_int_t)json_number_value(jl); /* the schema allows 5.0 */
  if (!ctx || !ctx->store || !ctx->user_id) {
    *result = error_obj("the message store is not available");
    return AGD_EUNAVAILABLE;
  }
  store_message_list_t list = {0};
  int rc = store_message_history((store_t *)ctx->store, ctx->user_id, thread_id, NULL, (int)limit, &list);
  if (rc != 0) {
    *result = error_obj(rc == AGD_ENOT_FOUND ? "thread not found" : "could not read the thread");
    store_message_list_dispose(&list);
    return rc;
  }
  json_t *msgs = json_array();
  for (size_t i = 0; i < list.n; i++) {
    const store_message_t *m = &list.items[i];
    const char *content = m->content ? m->content : "";
    size_t cut = utf8_cut(content, CONTEXT_CONTENT_MAX);
    json_t *o = json_pack("{s:s,s:s,s:s%,s:f}", "id", m->id, "role", m->role, "content", content, cut,
                          "created_at", m->created_at);
    if (!o) continue; /* content that is not UTF-8 cannot come from our API; skip defensively */
    if (cut < strlen(content)) json_object_set_new(o, "truncated", json_true());
    json_array_append_new(msgs, o);
  }
  *result = json_pack("{s:s,s:o,s:I,s:b}", "thread_id", thread_id, "messages", msgs, "count",
                      (json_int_t)json_array_size(msgs), "has_more", list.has_more);
  store_message_list_dispose(&list);
  return 0;
}

static const tool_t tool_thread_context = {
    .name = "thread_context",
    .description = "The caller's latest messages of one of their threads, oldest first (role, content, time).",
    .input_schema_json = "{\"type\":\"object\",\"properties\":{\"thread_id\":{\"type\":\"string\",\"minLength\":1,"
                         "\"maxLength\":64},\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":50,"
                         "\"description\":\"how many messages (default 10)\"}},"
                         "\"required\":[\"thread_id\"],\"additionalProperties\":false}",
    .source = "builtin",
    .call = context_call,
};

/* The workload tools live in builtin_workloads.c. */
void tools__register_workloads(void);

void tools_register_builtin(void) {
  tool_register(&tool_classify);
  tool_register(&tool_calculator);
  tool_register(&tool_thread_context);
  tools__register_workloads();
}
