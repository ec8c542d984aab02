/* agents/loop.c — the tool-using model loop (SPEC §11; docs/architecture.md
 * "The model loop").  When the run's provider is a model (not builtin), the
 * answer is written by this loop instead of one compose call:
 *
 *   messages = the system prompt, the analysis agents' findings (when any ran),
 *              the thread's earlier messages (oldest first, the newest that fit
 *              LOOP_HISTORY_TOKENS at 4 bytes a token), the user's message,
 *              this run's tool calls so far (triage's, data's, …) as one
 *              assistant turn of tool_calls and their tool results,
 *              then the loop's own rounds;
 *   tools    = every registry tool but classify_request (triage classified
 *              already) and thread_context (the history is in the messages).
 *
 * Each round streams text as partial_result and reasoning as agent_thinking;
 * each tool call of the model gets a tool_executing / tool_completed pair with
 * the model's call id: an unknown tool, arguments that fail the schema or a
 * call the user denied are not run and the model gets {"error": …} back;
 * the others (after the approval gate) run through the registry.  The loop
 * ends when the model answers without tool calls (agent_respond with every
 * delta streamed, so the deltas joined are the content), or fails with
 * LLM_TOO_MANY_STEPS after --llm-max-steps rounds, or with the provider's
 * error code.
 *
 * The loop's state is JSON (messages in the provider's shape, the current
 * round's calls not yet done), so a call waiting for approval checkpoints it
 * as it is and a restarted server continues from it (agents__loop_resume).
 * Runs on a run thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agents_int.h"
#include "llm/llm.h"
#include "store/store.h"
#include "tools/tool.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/ids.h"
#include "util/utf8.h"

#define LOOP_HISTORY_TOKENS 8000  /* budget of the thread's earlier messages */
#define LOOP_BYTES_PER_TOKEN 4    /* the estimate: no tokenizer of every model here */
#define LOOP_HISTORY_FETCH 50     /* earlier messages read at most */
#define LOOP_HISTORY_MSG_MAX 8000 /* bytes of one earlier message sent */
#define LOOP_RESULT_MAX 16384     /* bytes of one tool result sent to the model */
#define LOOP_FINDINGS_MAX 16384   /* bytes of the analysis agents' findings sent */
#define LOOP_STEPS_DEFAULT 8      /* SPEC §11 --llm-max-steps */
#define LOOP_THINK_MAX 2000       /* bytes of reasoning per agent_thinking (agent_think keeps 2047) */

static const char system_prompt[] =
    "You are agentd, a service that analyses a user's own LLM calls (cost, latency, model choice, caching, "
    "usage) and answers their questions about them in markdown. Every number you give must come from a tool "
    "result or from the findings in this conversation: call a tool to get a number you do not have, and never "
    "invent, estimate or round up one. When the user has no call records, say what to upload (POST "
    "/api/workloads: JSON array, JSONL or CSV with timestamp, model, provider, prompt_tokens, "
    "completion_tokens, latency_ms). Be concise.";

/* Tools the model is not offered: triage already classified the request, and
 * the thread's history is in the messages. */
static int tool_hidden(const char *name) {
  return strcmp(name, "classify_request") == 0 || strcmp(name, "thread_context") == 0;
}

typedef struct loop {
  agent_ctx_t *ctx;
  json_t *msgs;      /* [{"role","content"?,"tool_call_id"?,"tool_calls"?:[{"id","name","arguments"}]}] */
  json_t *pending;   /* this round's calls not done yet: [{"id","name","tool"|null,"arguments"}] */
  json_t *names;     /* the offered tools: model name → registry name */
  int round;         /* model rounds done */
  int calls;         /* tool calls the model made */
  int resumed;       /* the first pending call waits for an approval asked before a restart */
  buf_t round_text;  /* this round's answer text */
} loop_t;

/* ---- tool names ----
 * The model is offered the registry's own names: a provider that cannot send
 * one (a `.` of an MCP tool, for OpenAI) maps it on the wire and back
 * (llm/openai.c), so the loop, its checkpoints and its events speak registry
 * names only. */

/* The offered tools of one round (a registry snapshot, held for the call). */
typedef struct offer {
  tool_list_t *list;
  llm_tool_t *tools;
  size_t n;
} offer_t;

static void offer_build(loop_t *l, offer_t *o) {
  o->list = tool_list_acquire();
  size_t n = tool_list_size(o->list);
  o->tools = calloc(n ? n : 1, sizeof(*o->tools));
  if (!o->tools) abort();
  o->n = 0;
  json_object_clear(l->names);
  for (size_t i = 0; i < n; i++) {
    const tool_t *t = tool_list_get(o->list, i);
    json_t *schema = tool_schema(t);
    if (tool_hidden(t->name) || !json_is_object(schema)) continue;
    json_object_set_new(l->names, t->name, json_string(t->name));
    /* the key's storage lives as long as names does and the key stays */
    o->tools[o->n++] = (llm_tool_t){.name = json_object_iter_key(json_object_iter_at(l->names, t->name)),
                                    .description = t->description,
                                    .parameters = schema};
  }
}

static void offer_release(offer_t *o) {
  free(o->tools);
  tool_list_release(o->list);
}

/* The registry name of the tool the model called, or NULL when it was not offered. */
static const char *registry_name(loop_t *l, const char *name) {
  return json_string_value(json_object_get(l->names, name ? name : ""));
}

/* ---- messages ---- */

static void add_msg(loop_t *l, const char *role, const char *content) {
  json_array_append_new(l->msgs, json_pack("{s:s,s:s}", "role", role, "content", content));
}

/* s cut to max bytes at a character boundary, with a note when cut (malloc'd). */
static char *cut_text(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n <= max) return strdup(s);
  size_t k = utf8_cut(s, max);
  buf_t b;
  buf_init(&b, 0);
  buf_append(&b, s, k);
  buf_appendf(&b, " … (%zu more bytes cut)", n - k);
  return buf_steal(&b, NULL);
}

static char *json_cut(const json_t *v, size_t max) {
  char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  if (!s) return strdup("{\"error\":\"the result could not be encoded\"}");
  char *c = cut_text(s, max);
  free(s);
  return c;
}

/* The analysis agents' findings (what reporting writes from), when any ran. */
static void add_findings(loop_t *l) {
  json_t *findings = json_object();
  const char *name;
  json_t *v;
  json_object_foreach(agent_prior_results(l->ctx), name, v) {
    if (strcmp(name, "reporting") == 0 || strcmp(name, "supervisor") == 0) continue;
    json_object_set(findings, name, v);
  }
  if (json_object_size(findings) > 0) {
    char *text = json_cut(findings, LOOP_FINDINGS_MAX);
    buf_t b;
    buf_init(&b, 0);
    buf_appendf(&b,
                "What agentd's agents found for this request (triage's classification and the analysis agents' "
                "results, computed from the user's own records; cite these numbers): %s",
                text);
    free(text);
    char *s = buf_steal(&b, NULL);
    add_msg(l, "system", s ? s : "");
    free(s);
  }
  json_decref(findings);
}

/* The thread's earlier user/assistant messages, oldest first: the newest that fit
 * the budget (each cut to LOOP_HISTORY_MSG_MAX).  Read on the run thread; the
 * history is context, not a requirement: a failed read sends none. */
static void add_history(loop_t *l) {
  agent_ctx_t *ctx = l->ctx;
  store_t *st = agent__store(ctx);
  const char *thread = agent_thread_id(ctx);
  if (!st || !thread || !*thread || !agent_user_id(ctx)) return;
  store_message_list_t list = {0};
  if (store_message_history(st, agent_user_id(ctx), thread, NULL, LOOP_HISTORY_FETCH, &list) != 0) {
    store_message_list_dispose(&list);
    return;
  }
  size_t end = list.n;
  /* the newest is this request itself (stored with the run) */
  if (end > 0 && strcmp(list.items[end - 1].role, "user") == 0 && list.items[end - 1].content &&
      strcmp(list.items[end - 1].content, agent_input(ctx)) == 0)
    end--;
  size_t budget = (size_t)LOOP_HISTORY_TOKENS * LOOP_BYTES_PER_TOKEN, used = 0, start = end;
  while (start > 0) {
    const store_message_t *m = &list.items[start - 1];
    int keep = (strcmp(m->role, "user") == 0 || strcmp(m->role, "assistant") == 0) && m->content;
    size_t size = keep ? strlen(m->content) : 0;
    if (size > LOOP_HISTORY_MSG_MAX) size = LOOP_HISTORY_MSG_MAX;
    if (used + size > budget) break;
    used += size;
    start--;
  }
  for (size_t i = start; i < end; i++) {
    const store_message_t *m = &list.items[i];
    if (!m->content || (strcmp(m->role, "user") != 0 && strcmp(m->role, "assistant") != 0)) continue;
    char *c = cut_text(m->content, LOOP_HISTORY_MSG_MAX);
    add_msg(l, m->role, c ? c : "");
    free(c);
  }
  store_message_list_dispose(&list);
}

/* The run's tool calls before the loop (triage's, data's, …) as the model's own:
 * one assistant turn of tool_calls, then a tool message per result. */
static void add_prior_calls(loop_t *l) {
  json_t *calls = agent__calls(l->ctx);
  if (json_array_size(calls) == 0) return;
  json_t *tc = json_array();
  size_t i;
  json_t *c;
  json_array_foreach(calls, i, c) {
    const char *mn = json_string_value(json_object_get(c, "name"));
    char *args = json_dumps(json_object_get(c, "args"), JSON_COMPACT);
    json_array_append_new(tc, json_pack("{s:s,s:s,s:s}", "id", json_string_value(json_object_get(c, "call_id")),
                                        "name", mn, "arguments", args ? args : "{}"));
    free(args);
  }
  json_array_append_new(l->msgs, json_pack("{s:s,s:n,s:o}", "role", "assistant", "content", "tool_calls", tc));
  json_array_foreach(calls, i, c) {
    char *res = json_cut(json_object_get(c, "result"), LOOP_RESULT_MAX);
    json_array_append_new(l->msgs, json_pack("{s:s,s:s,s:s}", "role", "tool", "tool_call_id",
                                             json_string_value(json_object_get(c, "call_id")), "content", res));
    free(res);
  }
}

/* The JSON messages as the request's (borrowed from msgs; arguments parsed into hold). */
typedef struct req_msgs {
  llm_message_t *m;
  size_t n;
  json_t *hold; /* parsed arguments, released after the call */
} req_msgs_t;

static llm_role_t role_of(const char *r) {
  if (r && strcmp(r, "system") == 0) return LLM_ROLE_SYSTEM;
  if (r && strcmp(r, "assistant") == 0) return LLM_ROLE_ASSISTANT;
  if (r && strcmp(r, "tool") == 0) return LLM_ROLE_TOOL;
  return LLM_ROLE_USER;
}

static void msgs_build(const json_t *msgs, req_msgs_t *out) {
  out->n = json_array_size(msgs);
  out->m = calloc(out->n ? out->n : 1, sizeof(*out->m));
  out->hold = json_array();
  if (!out->m) abort();
  for (size_t i = 0; i < out->n; i++) {
    const json_t *j = json_array_get(msgs, i);
    llm_message_t *m = &out->m[i];
    m->role = role_of(json_string_value(json_object_get(j, "role")));
    m->content = json_string_value(json_object_get(j, "content"));
    m->tool_call_id = json_string_value(json_object_get(j, "tool_call_id"));
    const json_t *tc = json_object_get(j, "tool_calls");
    size_t k = json_array_size(tc);
    if (k > 0) {
      llm_tool_call_t *calls = calloc(k, sizeof(*calls));
      if (!calls) abort();
      for (size_t c = 0; c < k; c++) {
        const json_t *x = json_array_get(tc, c);
        const char *raw = json_string_value(json_object_get(x, "arguments"));
        json_t *args = raw ? json_loads(raw, 0, NULL) : NULL;
        if (args) json_array_append_new(out->hold, args);
        calls[c] = (llm_tool_call_t){.id = (char *)json_string_value(json_object_get(x, "id")),
                                     .name = (char *)json_string_value(json_object_get(x, "name")),
                                     .arguments = args,
                                     .arguments_raw = (char *)(raw ? raw : "{}")};
      }
      m->tool_calls = calls;
      m->n_tool_calls = k;
    } else if (!m->content) {
      m->content = "";
    }
  }
}

static void msgs_free(req_msgs_t *r) {
  for (size_t i = 0; i < r->n; i++) free((void *)r->m[i].tool_calls);
  free(r->m);
  json_decref(r->hold);
}

/* ---- streaming ---- */

/* The stream callbacks may run on the provider's I/O thread while this run
 * thread sleeps in llm_chat (llm.h): they touch only this run's loop and
 * context (its owner is asleep) and emit through events_emit, which any thread
 * but the libuv loop may call; nothing here is thread-local or blocks. */
static int on_text(void *ud, const char *delta, size_t n) {
  loop_t *l = ud;
  size_t sn;
  const char *streamed = agent__streamed(l->ctx, &sn);
  /* an earlier round's text ("Let me look that up.") and this one's are paragraphs */
  if (l->round_text.len == 0 && sn > 0 && streamed[sn - 1] != '\n' && agent_partial(l->ctx, "\n\n") != 0) return 1;
  if (buf_append(&l->round_text, delta, n) != 0) return 1;
  return reporting__on_delta(l->ctx, delta, n);
}

static int on_reasoning(void *ud, const char *delta, size_t n) {
  loop_t *l = ud;
  while (n > 0) {
    size_t k = n <= LOOP_THINK_MAX ? n : utf8_floor(delta, LOOP_THINK_MAX);
    if (k == 0) k = n < LOOP_THINK_MAX ? n : LOOP_THINK_MAX;
    if (agent_think(l->ctx, "%.*s", (int)k, delta) != 0) return 1;
    delta += k;
    n -= k;
  }
  return 0;
}

static int probe_cancelled(const void *arg) { return agent_cancelled(arg); }

/* ---- one tool call of the model ---- */

static json_t *error_result(const char *fmt, const char *a, const char *b) {
  char msg[1024]; /* room for the 520-byte detail of check_call: no -Wformat-truncation at -O3 */
  snprintf(msg, sizeof(msg), fmt, a, b ? b : "");
  utf8_trim_tail(msg);
  return json_pack("{s:s}", "error", msg);
}

/* The approval gate: 0 approved, 1 denied (*refused set), or AGD_E* (stopped,
 * cancelled or failed). */
static int gate(loop_t *l, const json_t *call, const char *tool, const json_t *args, int resumed, json_t **refused) {
  agent_ctx_t *ctx = l->ctx;
  const agent_run_params_t *p = agent__params(ctx);
  if (!p->await_approval) {
    agent_fail(ctx, "APPROVAL_FAILED", "tool '%s' needs approval but the run cannot ask for it", tool);
    return ERR(AGD_EINTERNAL);
  }
  json_t *cp = agent__checkpoint(ctx, json_pack("{s:O,s:O,s:i,s:i}", "messages", l->msgs, "pending", l->pending,
                                                "round", l->round, "calls", l->calls));
  agent_approval_req_t req = {.agent_name = agent__agent_name(ctx),
                              .call_id = json_string_value(json_object_get(call, "id")),
                              .tool_name = tool,
                              .parameters = args,
                              .checkpoint = cp,
                              .resumed = resumed};
  agent_approval_t outcome = AGENT_APPROVAL_DENIED;
  char reason[512] = "";
  int rc = p->await_approval(p->emit_arg, &req, &outcome, reason, sizeof(reason));
  json_decref(cp);
  if (rc != 0) {
    if (agent_cancelled(ctx)) return AGD_ECANCELLED;
    agent_fail(ctx, "APPROVAL_FAILED", "could not wait for the user's approval of '%s' (%s)", tool, agd_err_code(rc));
    return rc;
  }
  switch (outcome) {
  case AGENT_APPROVAL_APPROVED: return 0;
  case AGENT_APPROVAL_TIMED_OUT: agent__stop(ctx, "approval_timeout"); return AGD_ECANCELLED;
  default:
    *refused = reason[0] ? json_pack("{s:s,s:s}", "error", "the user denied this call", "reason", reason)
                         : json_pack("{s:s}", "error", "the user denied this call");
    return 1;
  }
}

/* Why the call cannot run as the model wrote it (new {"error"}), or NULL. */
static json_t *check_call(const char *model, const char *tool, const json_t *args) {
  if (!tool) return error_result("unknown tool '%s'%s: call one of the tools offered", model, "");
  if (!json_is_object(args)) return error_result("the arguments of '%s' must be a JSON object%s", tool, "");
  const tool_t *t = tool_find(tool);
  if (!t) return error_result("tool '%s' is not available any more%s", tool, "");
  char path[256], msg[256];
  json_t *r = NULL;
  if (tool_validate(t, args, path, sizeof(path), msg, sizeof(msg)) != 0) {
    char both[520];
    snprintf(both, sizeof(both), "%s %s", path, msg);
    r = error_result("invalid arguments for '%s': %s", tool, both);
  }
  tool_unref(t);
  return r;
}

static int one_call(loop_t *l, const json_t *call, int resumed) {
  agent_ctx_t *ctx = l->ctx;
  const agent_run_params_t *p = agent__params(ctx);
  const char *id = json_string_value(json_object_get(call, "id"));
  const char *model = json_string_value(json_object_get(call, "name"));
  const char *tool = json_string_value(json_object_get(call, "tool"));
  const char *raw = json_string_value(json_object_get(call, "arguments"));
  json_t *args = raw ? json_loads(raw, 0, NULL) : NULL;
  json_t *refused = NULL;
  int rc = 0;
  if (resumed) {
    /* asked before the restart: only wait for the decision, then run it as usual */
    rc = gate(l, call, tool ? tool : model, json_is_object(args) ? args : NULL, 1, &refused);
    if (rc == 0) refused = check_call(model, tool, args);
  } else {
    refused = check_call(model, tool, args);
    if (!refused && p->needs_approval && p->needs_approval(p->emit_arg, tool))
      rc = gate(l, call, tool, args, 0, &refused);
  }
  if (rc < 0) {
    json_decref(args);
    json_decref(refused);
    return rc;
  }
  if (!json_is_object(args)) {
    json_decref(args);
    args = json_object();
  }
  json_t *res = NULL;
  rc = agent__call_tool_ex(ctx, tool ? tool : model, args, id, 1, refused, &res);
  if (rc != 0 && (agent__emit_failed(ctx) || agent_cancelled(ctx))) {
    json_decref(res);
    return agent__emit_failed(ctx) ? agent__emit_failed(ctx) : AGD_ECANCELLED;
  }
  /* a failed tool is a result for the model, not a failed run */
  char *content = json_cut(res, LOOP_RESULT_MAX);
  json_array_append_new(l->msgs,
                        json_pack("{s:s,s:s,s:s}", "role", "tool", "tool_call_id", id, "content", content));
  free(content);
  json_decref(res);
  l->calls++;
  return 0;
}

static int run_pending(loop_t *l) {
  while (json_array_size(l->pending) > 0) {
    json_t *c = json_incref(json_array_get(l->pending, 0));
    int resumed = l->resumed;
    l->resumed = 0;
    int rc = one_call(l, c, resumed); /* the checkpoint of its gate still lists it */
    json_array_remove(l->pending, 0);
    json_decref(c);
    if (rc != 0) return rc;
  }
  return 0;
}

/* ---- rounds ---- */

static int answer(loop_t *l, json_t **result) {
  size_t n;
  const char *s = agent__streamed(l->ctx, &n);
  char *text = strndup(s, n);
  if (!text) abort();
  int rc = agent_respond(l->ctx, text);
  if (rc == 0 && result) {
    *result = reporting__result(l->ctx, text);
    json_object_set_new(*result, "model", json_string(llm_model(agent_llm(l->ctx))));
    json_object_set_new(*result, "llm_rounds", json_integer(l->round));
    json_object_set_new(*result, "tool_calls", json_integer(l->calls));
  }
  free(text);
  return rc;
}

/* One model round: 0 with *answered when the model answered, 0 with pending
 * calls, or AGD_E*. */
static int one_round(loop_t *l, int *answered) {
  agent_ctx_t *ctx = l->ctx;
  const agent_run_params_t *p = agent__params(ctx);
  int max_steps = p->max_steps > 0 ? p->max_steps : LOOP_STEPS_DEFAULT;
  offer_t o;
  offer_build(l, &o);
  req_msgs_t rm;
  msgs_build(l->msgs, &rm);
  const llm_request_t req = {.messages = rm.m,
                             .n_messages = rm.n,
                             .tools = o.tools,
                             .n_tools = o.n,
                             .tool_choice = o.n ? LLM_TOOL_CHOICE_AUTO : LLM_TOOL_CHOICE_NONE,
                             .cancelled = probe_cancelled,
                             .cancel_arg = ctx,
                             .deadline = p->deadline,
                             .coalesce_bytes = 256,
                             .coalesce_ms = 25};
  const llm_stream_cb_t cb = {.on_text_delta = on_text, .on_reasoning_delta = on_reasoning};
  buf_reset(&l->round_text);
  llm_response_t resp;
  int rc = llm_chat(agent_llm(ctx), &req, &cb, l, &resp);
  msgs_free(&rm);
  offer_release(&o);
  if (rc != 0) {
    if (agent__emit_failed(ctx)) rc = agent__emit_failed(ctx);
    else if (agent_cancelled(ctx) || resp.finish == LLM_FINISH_CANCELLED) rc = AGD_ECANCELLED;
    else {
      const char *code = llm_error_code(resp.error);
      agent_fail(ctx, code ? code : "LLM_INTERNAL", "the model failed: %s",
                 resp.error_message[0] ? resp.error_message : agd_err_code(rc));
    }
    llm_response_dispose(&resp);
    return rc;
  }
  l->round++;
  /* text the provider did not stream (a server that does not) goes out now */
  size_t rn = l->round_text.len, tn = strlen(resp.text);
  if (tn > rn && (rn == 0 || strncmp(resp.text, l->round_text.base, rn) == 0) &&
      on_text(l, resp.text + rn, tn - rn) != 0) {
    llm_response_dispose(&resp);
    return agent__emit_failed(ctx) ? agent__emit_failed(ctx) : AGD_ECANCELLED;
  }
  if (resp.n_tool_calls == 0) {
    llm_response_dispose(&resp);
    size_t sn;
    agent__streamed(ctx, &sn);
    if (sn == 0) {
      agent_fail(ctx, "LLM_BAD_RESPONSE", "the model answered with no text and no tool call");
      return ERR(AGD_EUNAVAILABLE);
    }
    *answered = 1;
    return 0;
  }
  if (l->round >= max_steps) {
    llm_response_dispose(&resp);
    agent_fail(ctx, "LLM_TOO_MANY_STEPS", "the model still asked for tools after %d rounds (--llm-max-steps)",
               max_steps);
    return ERR(AGD_EUNAVAILABLE);
  }
  json_t *tc = json_array();
  for (size_t i = 0; i < resp.n_tool_calls; i++) {
    const llm_tool_call_t *c = &resp.tool_calls[i];
    char id[ID_MAX + 64];
    if (c->id && *c->id) snprintf(id, sizeof(id), "%s", c->id);
    else id_new(id, "call"); /* the answer must name the call it answers */
    /* a name that was offered goes back as it is (the provider maps it); one the model made up is
     * kept only when a provider can send it back */
    const char *name = registry_name(l, c->name) || (c->name && llm_tool_name_wire_safe(c->name))
                           ? c->name : "invalid_tool_name";
    const char *raw = c->arguments_raw && *c->arguments_raw ? c->arguments_raw : "{}";
    json_array_append_new(tc, json_pack("{s:s,s:s,s:s}", "id", id, "name", name, "arguments", raw));
    const char *tool = registry_name(l, c->name);
    json_array_append_new(l->pending, json_pack("{s:s,s:s,s:s?,s:s}", "id", id, "name", c->name ? c->name : "",
                                                "tool", tool, "arguments", raw));
  }
  json_array_append_new(l->msgs, json_pack("{s:s,s:s?,s:o}", "role", "assistant", "content",
                                            l->round_text.len ? resp.text : NULL, "tool_calls", tc));
  llm_response_dispose(&resp);
  return 0;
}

static int run_rounds(loop_t *l, json_t **result) {
  for (;;) {
    int rc = run_pending(l);
    if (rc == 0 && agent_cancelled(l->ctx)) rc = AGD_ECANCELLED;
    if (rc != 0) return rc;
    int answered = 0;
    rc = one_round(l, &answered);
    if (rc != 0) return rc;
    if (answered) return answer(l, result);
  }
}

static void loop_init(loop_t *l, agent_ctx_t *ctx) {
  *l = (loop_t){.ctx = ctx, .pending = json_array(), .names = json_object()};
  buf_init(&l->round_text, 0);
}

static void loop_dispose(loop_t *l) {
  json_decref(l->msgs);
  json_decref(l->pending);
  json_decref(l->names);
  buf_dispose(&l->round_text);
}

int agents__loop_run(agent_ctx_t *ctx, json_t **result) {
  if (result) *result = NULL;
  loop_t l;
  loop_init(&l, ctx);
  l.msgs = json_array();
  add_msg(&l, "system", system_prompt);
  add_findings(&l);
  add_history(&l);
  add_msg(&l, "user", agent_input(ctx));
  add_prior_calls(&l);
  int rc = run_rounds(&l, result);
  loop_dispose(&l);
  return rc;
}

int agents__loop_resume(agent_ctx_t *ctx, const json_t *cp, json_t **result) {
  if (result) *result = NULL;
  const json_t *msgs = json_object_get(cp, "messages"), *pending = json_object_get(cp, "pending");
  if (!json_is_array(msgs) || json_array_size(msgs) == 0 || !json_is_array(pending) ||
      json_array_size(pending) == 0) {
    agent_fail(ctx, "RESUME_FAILED", "the run's checkpoint has no call waiting for approval");
    return ERR(AGD_EINTERNAL);
  }
  loop_t l;
  loop_init(&l, ctx);
  l.msgs = json_deep_copy(msgs);
  json_decref(l.pending);
  l.pending = json_deep_copy(pending);
  l.round = (int)json_integer_value(json_object_get(cp, "round"));
  l.calls = (int)json_integer_value(json_object_get(cp, "calls"));
  l.resumed = 1;
  int rc = run_rounds(&l, result);
  loop_dispose(&l);
  return rc;
}
