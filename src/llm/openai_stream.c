/* llm/openai_stream.c — the chunk assembler (openai_stream.h). */
#include "llm/openai_stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

void oai_stream_init(oai_stream_t *s, const llm_stream_cb_t *cb, void *ud, int co_bytes, int co_ms) {
  memset(s, 0, sizeof(*s));
  s->cb = cb;
  s->ud = ud;
  s->co_bytes = co_bytes > 0 ? co_bytes : 0;
  s->co_ms = co_ms > 0 ? co_ms : 0;
  s->finish = -1;
  for (int k = 0; k < 2; k++) buf_init(&s->kind[k].all, 0);
}

void oai_stream_dispose(oai_stream_t *s) {
  for (int k = 0; k < 2; k++) buf_dispose(&s->kind[k].all);
  for (size_t i = 0; i < s->n_calls; i++) {
    free(s->calls[i].id);
    free(s->calls[i].name);
    buf_dispose(&s->calls[i].args);
  }
  free(s->calls);
  s->calls = NULL;
  s->n_calls = 0;
}

static int bad(oai_stream_t *s, llm_error_t e, const char *msg) {
  s->error = e;
  snprintf(s->error_message, sizeof(s->error_message), "%s", msg);
  return 1; /* positive: an SSE event function's "stop" (sse.h) */
}

/* ---- text and reasoning, coalesced ---- */

/* Hand on everything held of kind k in one callback. */
static int emit(oai_stream_t *s, int k, uint64_t now) {
  size_t held = s->kind[k].all.len - s->kind[k].sent;
  if (held == 0) return 0;
  int (*fn)(void *, const char *, size_t) = k == OAI_TEXT ? s->cb->on_text_delta : s->cb->on_reasoning_delta;
  const char *p = s->kind[k].all.base + s->kind[k].sent;
  s->kind[k].sent = s->kind[k].all.len;
  s->kind[k].last_ms = now;
  s->kind[k].any = 1;
  if (!fn) return 0;
  s->handed_on = 1;
  if (fn(s->ud, p, held) != 0) s->stopped = 1;
  return s->stopped;
}

/* Emit kind k, after what is held of the other kind (so the callbacks keep
 * the order the pieces came in). */
static int emit_in_order(oai_stream_t *s, int k, uint64_t now) {
  int rc = emit(s, !k, now);
  return rc ? rc : emit(s, k, now);
}

static int piece(oai_stream_t *s, int k, const char *p, size_t n, uint64_t now) {
  if (n == 0) return 0;
  if (buf_append(&s->kind[k].all, p, n) != 0) return bad(s, LLM_ERR_INTERNAL, "out of memory");
  int quiet = !s->kind[k].any || now >= s->kind[k].last_ms + (uint64_t)s->co_ms; /* also true when co_ms is 0 */
  size_t held = s->kind[k].all.len - s->kind[k].sent;
  if (quiet || (s->co_bytes > 0 && held >= (size_t)s->co_bytes)) return emit_in_order(s, k, now);
  return 0;
}

uint64_t oai_stream_due(const oai_stream_t *s) {
  uint64_t due = 0;
  for (int k = 0; k < 2; k++) {
    if (s->kind[k].all.len == s->kind[k].sent) continue;
    uint64_t t = s->kind[k].last_ms + (uint64_t)s->co_ms;
    if (!due || t < due) due = t;
  }
  return due;
}

int oai_stream_tick(oai_stream_t *s, uint64_t now_ms) {
  /* The kind that was held longer goes first. */
  int first = s->kind[OAI_REASONING].last_ms < s->kind[OAI_TEXT].last_ms ? OAI_REASONING : OAI_TEXT;
  for (int i = 0; i < 2; i++) {
    int k = i ? !first : first;
    if (s->kind[k].all.len > s->kind[k].sent && now_ms >= s->kind[k].last_ms + (uint64_t)s->co_ms) {
      int rc = emit(s, k, now_ms);
      if (rc) return rc;
    }
  }
  return 0;
}

/* ---- tool call fragments ---- */

static oai_call_t *call_at(oai_stream_t *s, int index) {
  for (size_t i = 0; i < s->n_calls; i++)
    if (s->calls[i].index == index) return &s->calls[i];
  if (s->n_calls >= OAI_MAX_TOOL_CALLS) return NULL;
  oai_call_t *c = realloc(s->calls, (s->n_calls + 1) * sizeof(*c));
  if (!c) return NULL;
  s->calls = c;
  c = &s->calls[s->n_calls++];
  memset(c, 0, sizeof(*c));
  c->index = index;
  buf_init(&c->args, 0);
  return c;
}

static int next_index(const oai_stream_t *s) {
  int next = 0;
  for (size_t i = 0; i < s->n_calls; i++)
    if (s->calls[i].index >= next) next = s->calls[i].index + 1;
  return next;
}

static int set_once(char **dst, const json_t *v) {
  const char *str = json_string_value(v);
  if (!str || *dst) return 0;
  *dst = strdup(str);
  return *dst ? 0 : -1;
}

static int fragment(oai_stream_t *s, const json_t *f) {
  if (!json_is_object(f)) return bad(s, LLM_ERR_BAD_RESPONSE, "a tool call fragment is not an object");
  const json_t *fn = json_object_get(f, "function");
  if (fn && !json_is_object(fn) && !json_is_null(fn))
    return bad(s, LLM_ERR_BAD_RESPONSE, "a tool call's function is not an object");
  const json_t *id = json_object_get(f, "id"), *name = json_object_get(fn, "name"),
               *args = json_object_get(fn, "arguments"), *jidx = json_object_get(f, "index");
  int index;
  if (json_is_integer(jidx)) {
    json_int_t v = json_integer_value(jidx);
    if (v < 0 || v >= OAI_MAX_TOOL_CALLS) return bad(s, LLM_ERR_BAD_RESPONSE, "a tool call index is out of range");
    index = (int)v;
  } else if (jidx && !json_is_null(jidx)) {
    return bad(s, LLM_ERR_BAD_RESPONSE, "a tool call index is not an integer");
  } else if (json_is_string(id) || json_is_string(name) || s->n_calls == 0) {
    index = next_index(s); /* a whole call without index (Ollama) */
  } else {
    index = s->calls[s->n_calls - 1].index; /* more of the last call */
  }
  oai_call_t *c = call_at(s, index);
  if (!c) return bad(s, LLM_ERR_BAD_RESPONSE, "too many tool calls in one answer");
  if (set_once(&c->id, id) != 0 || set_once(&c->name, name) != 0) return bad(s, LLM_ERR_INTERNAL, "out of memory");
  if (json_is_string(args)) {
    if (buf_append(&c->args, json_string_value(args), json_string_length(args)) != 0)
      return bad(s, LLM_ERR_INTERNAL, "out of memory");
  } else if (json_is_object(args)) { /* some servers send the arguments as an object */
    char *t = json_dumps(args, JSON_COMPACT);
    int rc = t ? buf_append_str(&c->args, t) : -1;
    free(t);
    if (rc != 0) return bad(s, LLM_ERR_INTERNAL, "out of memory");
  } else if (args && !json_is_null(args)) {
    return bad(s, LLM_ERR_BAD_RESPONSE, "a tool call's arguments are not a string");
  }
  return 0;
}

/* ---- chunks ---- */

static int map_finish(const char *r) {
  if (strcmp(r, "length") == 0) return LLM_FINISH_LENGTH;
  if (strcmp(r, "tool_calls") == 0 || strcmp(r, "function_call") == 0) return LLM_FINISH_TOOL_CALLS;
  return LLM_FINISH_STOP; /* stop, content_filter, eos and whatever a server invents: the answer ended */
}

static int usage(oai_stream_t *s, const json_t *u) {
  if (json_is_null(u) || !u) return 0;
  if (!json_is_object(u)) return bad(s, LLM_ERR_BAD_RESPONSE, "usage is not an object");
  const json_t *p = json_object_get(u, "prompt_tokens"), *c = json_object_get(u, "completion_tokens");
  if (json_is_integer(p)) s->prompt_tokens = (long)json_integer_value(p);
  if (json_is_integer(c)) s->completion_tokens = (long)json_integer_value(c);
  s->have_usage = 1;
  return 0;
}

/* One text-ish field of the delta: a string is a piece, null or absent nothing. */
static int delta_text(oai_stream_t *s, const json_t *delta, const char *key, int k, uint64_t now) {
  const json_t *v = json_object_get(delta, key);
  if (!v || json_is_null(v)) return 0;
  if (!json_is_string(v)) return bad(s, LLM_ERR_BAD_RESPONSE, "a delta's text is not a string");
  return piece(s, k, json_string_value(v), json_string_length(v), now);
}

static int choice(oai_stream_t *s, const json_t *c, uint64_t now) {
  if (!json_is_object(c)) return bad(s, LLM_ERR_BAD_RESPONSE, "a choice is not an object");
  const json_t *idx = json_object_get(c, "index");
  if (json_is_integer(idx) && json_integer_value(idx) != 0) return 0; /* we ask for one choice */
  const json_t *delta = json_object_get(c, "delta");
  if (delta && !json_is_null(delta)) {
    if (!json_is_object(delta)) return bad(s, LLM_ERR_BAD_RESPONSE, "a delta is not an object");
    int rc = delta_text(s, delta, "reasoning_content", OAI_REASONING, now);
    if (!rc) rc = delta_text(s, delta, "reasoning", OAI_REASONING, now);
    if (!rc) rc = delta_text(s, delta, "content", OAI_TEXT, now);
    if (rc) return rc;
    const json_t *tc = json_object_get(delta, "tool_calls");
    if (tc && !json_is_null(tc)) {
      if (!json_is_array(tc)) return bad(s, LLM_ERR_BAD_RESPONSE, "tool_calls is not an array");
      size_t i;
      const json_t *f;
      json_array_foreach(tc, i, f) if ((rc = fragment(s, f)) != 0) return rc;
    }
  }
  const json_t *fr = json_object_get(c, "finish_reason");
  if (json_is_string(fr)) s->finish = map_finish(json_string_value(fr));
  else if (fr && !json_is_null(fr)) return bad(s, LLM_ERR_BAD_RESPONSE, "finish_reason is not a string");
  return 0;
}

/* {"error":{"message":…}} in the stream: the server failed after it began. */
static int stream_error(oai_stream_t *s, const json_t *e) {
  const char *m = json_string_value(json_object_get(e, "message"));
  if (!m) m = json_string_value(e);
  char msg[160];
  snprintf(msg, sizeof(msg), "the model server failed mid-stream: %s", m ? m : "(no message)");
  for (char *p = msg; *p; p++)
    if ((unsigned char)*p < 0x20) *p = ' ';
  return bad(s, LLM_ERR_UNAVAILABLE, msg);
}

int oai_stream_event(oai_stream_t *s, const char *data, size_t n, uint64_t now_ms) {
  if (s->done) return 0;
  if (n == 6 && memcmp(data, "[DONE]", 6) == 0) {
    s->done = 1;
    return 0;
  }
  json_error_t je;
  json_t *j = json_loadb(data, n, 0, &je);
  int rc;
  if (!json_is_object(j)) {
    rc = bad(s, LLM_ERR_BAD_RESPONSE, "the model server sent a stream event that is not a JSON object");
  } else if (json_object_get(j, "error") && !json_is_null(json_object_get(j, "error"))) {
    rc = stream_error(s, json_object_get(j, "error"));
  } else {
    const json_t *choices = json_object_get(j, "choices"), *u = json_object_get(j, "usage");
    if (!choices && !u) rc = bad(s, LLM_ERR_BAD_RESPONSE, "a stream event is not a chat.completion.chunk");
    else if (choices && !json_is_array(choices) && !json_is_null(choices))
      rc = bad(s, LLM_ERR_BAD_RESPONSE, "choices is not an array");
    else {
      rc = usage(s, u);
      if (!rc && json_array_size(choices) > 0) rc = choice(s, json_array_get(choices, 0), now_ms);
    }
  }
  json_decref(j);
  return rc ? rc : s->stopped;
}

/* ---- the end ---- */

static int cmp_index(const void *a, const void *b) {
  return ((const oai_call_t *)a)->index - ((const oai_call_t *)b)->index;
}

/* Move the joined text of kind k into *dst (NULL when none). */
static void take_kind(oai_stream_t *s, int k, char **dst) {
  if (*dst) return;
  size_t n;
  *dst = buf_steal(&s->kind[k].all, &n);
  s->kind[k].sent = 0;
}

void oai_stream_take(oai_stream_t *s, llm_response_t *out) {
  take_kind(s, OAI_TEXT, &out->text);
  take_kind(s, OAI_REASONING, &out->reasoning);
  out->prompt_tokens = s->prompt_tokens;
  out->completion_tokens = s->completion_tokens;
}

/* The complete call c into out, and to on_tool_call. */
static int complete_call(oai_stream_t *s, oai_call_t *c, llm_response_t *out, oai_name_fn decode, void *arg) {
  const char *raw = c->args.len ? c->args.base : "";
  size_t rn = c->args.len;
  while (rn > 0 && (raw[rn - 1] == ' ' || raw[rn - 1] == '\n' || raw[rn - 1] == '\t' || raw[rn - 1] == '\r')) rn--;
  size_t lead = 0;
  while (lead < rn && (raw[lead] == ' ' || raw[lead] == '\n' || raw[lead] == '\t' || raw[lead] == '\r')) lead++;
  json_t *args;
  if (lead == rn) { /* no arguments at all: a function without parameters */
    args = json_object();
    raw = "{}";
  } else {
    args = json_loadb(raw, c->args.len, 0, NULL);
    if (args && !json_is_object(args)) {
      json_decref(args);
      args = NULL;
    }
  }
  char fallback_id[32];
  const char *id = c->id;
  if (!id || !*id) { /* a server that gives no id: the tool result still needs one to answer */
    snprintf(fallback_id, sizeof(fallback_id), "call_%d", c->index);
    id = fallback_id;
  }
  const char *name = c->name ? c->name : "";
  if (decode) name = decode(arg, name);
  char *rawz = raw == c->args.base ? strndup(raw, c->args.len) : strdup(raw); /* a buf is not always NUL-ended */
  if (!rawz) {
    json_decref(args);
    return ERR(AGD_EINTERNAL);
  }
  int rc = llm_response_add_tool_call(out, id, name, args, rawz);
  free(rawz);
  if (rc != 0) return ERR(AGD_EINTERNAL);
  if (s->cb->on_tool_call) {
    s->handed_on = 1;
    if (s->cb->on_tool_call(s->ud, &out->tool_calls[out->n_tool_calls - 1]) != 0) s->stopped = 1;
  }
  return 0;
}

int oai_stream_finish(oai_stream_t *s, llm_response_t *out, oai_name_fn decode, void *arg) {
  uint64_t far = UINT64_MAX / 2;
  /* What is held goes first, before the tool calls, in the order it came. */
  int first = s->kind[OAI_REASONING].last_ms < s->kind[OAI_TEXT].last_ms ? OAI_REASONING : OAI_TEXT;
  if (s->kind[!first].all.len > s->kind[!first].sent && s->kind[first].all.len == s->kind[first].sent) first = !first;
  if (emit(s, first, far) || emit(s, !first, far)) {
    oai_stream_take(s, out);
    return ERR(AGD_ECANCELLED);
  }
  if (s->n_calls > 1) qsort(s->calls, s->n_calls, sizeof(*s->calls), cmp_index);
  for (size_t i = 0; i < s->n_calls; i++) {
    int rc = complete_call(s, &s->calls[i], out, decode, arg);
    if (rc) {
      oai_stream_take(s, out);
      return rc;
    }
    if (s->stopped) {
      oai_stream_take(s, out);
      return ERR(AGD_ECANCELLED);
    }
  }
  oai_stream_take(s, out);
  int f = s->finish < 0 ? LLM_FINISH_STOP : s->finish;
  if (out->n_tool_calls > 0 && f == LLM_FINISH_STOP) f = LLM_FINISH_TOOL_CALLS;
  if (out->n_tool_calls == 0 && f == LLM_FINISH_TOOL_CALLS) f = LLM_FINISH_STOP; /* nothing to call */
  out->finish = (llm_finish_t)f;
  return 0;
}
