/* agents/agent.c — the agent context, the registry of agents, agent_run_top
 * and the step API (agent.h; SPEC §4, §5; DESIGN.md "Cancellation").
 *
 * A context lives on the stack of agent_run_top() for one run on one run
 * thread; sub-agents share it (the current agent and its step counter are
 * saved and restored around agent_run_sub).  Every step checks the run's
 * cancel flag and deadline first; every Event goes out through params->emit.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agents/agents_int.h"
#include "llm/llm.h"
#include "tools/tool.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/ids.h"
#include "util/timeutil.h"
#include "util/utf8.h"
#include "workloads/workloads.h"

/* ---- the registry ----
 * Listing order of GET /api/agents (supervisor first).  Adding an agent is one
 * line here (plus its ops table in its own file). */
static const agent_ops_t *const registry[] = {
    &agent_supervisor_ops,
    &agent_triage_ops,
    &agent_data_ops,
    &agent_optimization_ops,
    &agent_actions_ops,
    &agent_reporting_ops,
    &agent_data_helper_ops,
    NULL,
};

const agent_ops_t *agent_find(const char *name) {
  if (!name) return NULL;
  for (size_t i = 0; registry[i]; i++)
    if (strcmp(registry[i]->name, name) == 0) return registry[i];
  return NULL;
}

const agent_ops_t *const *agent_all(void) { return registry; }

/* ---- the context ---- */

struct agent_ctx {
  const agent_run_params_t *p;
  const agent_ops_t *agent; /* the agent running now */
  int step;                 /* its last agent_thinking step_number */
  json_t *prior;            /* {"triage":{…},…} */
  buf_t streamed;           /* partial_result text since the last agent_respond */
  int depth;                /* 0: the top agent runs; n: inside n agent_run_sub */
  char *response;           /* the answer, once agent_respond ran */
  int response_pending;     /* a sub-agent answered: persist + agent_response at the top */
  int emit_rc;              /* first emit failure: the run fails */
  int failed;
  char fail_agent[64];
  char fail_code[48];
  char fail_msg[512];
  char *input_head;         /* agent_input_head() when the input is longer (malloc'd), else NULL */
  json_t *calls;            /* this run's tool calls [{"name","call_id","args","result"}], oldest first: the
                               model loop shows them to the model (SPEC §11) */
  char stop_why[32];        /* agent__stop(): why the run stops, instead of the cancel flag's reason */
  agent_usage_t *usage;     /* the run's model usage so far (agent_run_top's observer) */
  struct {
    const agent_ops_t *agent;
    int step;
  } outer[AGENT__DEPTH_MAX]; /* the agents agent_run_sub interrupted, outermost first (a checkpoint's stack) */
};

const char *agent_input(const agent_ctx_t *ctx) { return ctx->p->input ? ctx->p->input : ""; }
const char *agent_input_head(const agent_ctx_t *ctx) { return ctx->input_head ? ctx->input_head : agent_input(ctx); }

/* A message may be as long as the body limit (SPEC conventions), so what events and tool
 * calls carry of it is its head: the first AGENT_INPUT_HEAD_MAX bytes, cut at a character
 * boundary, "…" added.  Every agent_started would otherwise carry the whole text, several
 * times per run, into the store and past a socket's send queue (issue 13, defect 13). */
static char *input_head_new(const char *in) {
  size_t n = strlen(in);
  if (n <= AGENT_INPUT_HEAD_MAX) return NULL;
  n = utf8_cut(in, AGENT_INPUT_HEAD_MAX - 3); /* room for "…" */
  char *h = malloc(n + 4);
  if (!h) abort();
  memcpy(h, in, n);
  memcpy(h + n, "\xE2\x80\xA6", 4); /* "…" and the NUL */
  return h;
}
const char *agent_user_id(const agent_ctx_t *ctx) { return ctx->p->user_id; }
const char *agent_thread_id(const agent_ctx_t *ctx) { return ctx->p->thread_id; }
const char *agent_run_id(const agent_ctx_t *ctx) { return ctx->p->run_id; }
json_t *agent_request_context(const agent_ctx_t *ctx) { return ctx->p->context; }
llm_t *agent_llm(const agent_ctx_t *ctx) { return ctx->p->llm ? ctx->p->llm : llm_builtin_new(); }
json_t *agent_prior_results(const agent_ctx_t *ctx) { return ctx->prior; }
struct store *agent__store(const agent_ctx_t *ctx) { return ctx->p->store; }

/* The cancel flag is never reset and the deadline only passes, so the answer
 * never goes back from 1 to 0. */
int agent_cancelled(const agent_ctx_t *ctx) {
  const agent_run_params_t *p = ctx->p;
  if (ctx->stop_why[0]) return 1; /* agent__stop(): everything winds down as for a cancel */
  if (p->cancel && atomic_load(p->cancel)) return 1;
  return p->deadline > 0 && time_now() >= p->deadline;
}

/* The builtin provider's simulated model latency (--llm-latency-ms): wait in
 * 5 ms slices so a cancel or the deadline takes effect within one slice. */
static int simulate_latency(agent_ctx_t *ctx) {
  int ms = ctx->p->step_latency_ms;
  while (ms > 0) {
    if (agent_cancelled(ctx)) return AGD_ECANCELLED;
    int slice = ms < 5 ? ms : 5;
    struct timespec ts = {0, slice * 1000000L};
    nanosleep(&ts, NULL);
    ms -= slice;
  }
  return agent_cancelled(ctx) ? AGD_ECANCELLED : 0;
}

/* The cancel flag says why: 1 a user's stop, 2 the server shutting down. */
static const char *stop_reason(const agent_ctx_t *ctx) {
  if (ctx->stop_why[0]) return ctx->stop_why;
  int v = ctx->p->cancel ? atomic_load(ctx->p->cancel) : 0;
  return v == 2 ? "shutdown" : v ? "cancelled" : "timeout";
}

static double ms_since(uint64_t t0_ns) {
  double ms = (double)(time_mono_ns() - t0_ns) / 1e6;
  return (double)(long long)(ms * 1000.0 + 0.5) / 1000.0;
}

/* Hand one event to the run's emitter (data: reference taken). */
static int emit_as(agent_ctx_t *ctx, event_type_t type, const char *agent_name, json_t *data) {
  if (!data) return ERR(AGD_EINTERNAL); /* a json_pack over bad UTF-8: our bug */
  if (!ctx->p->emit) {
    json_decref(data);
    return 0;
  }
  return ctx->p->emit(ctx->p->emit_arg, type, agent_name, data);
}

/* The run's last event is about to be emitted: tell the run first (agent_final_fn). */
static void tell_final(agent_ctx_t *ctx, event_type_t type, const json_t *data) {
  if (data && ctx->p->on_final) ctx->p->on_final(ctx->p->emit_arg, type, data);
}

static int emit(agent_ctx_t *ctx, event_type_t type, json_t *data) {
  if (ctx->emit_rc) {
    json_decref(data);
    return ctx->emit_rc;
  }
  int rc = emit_as(ctx, type, ctx->agent->name, data);
  if (rc != 0) {
    ctx->emit_rc = rc;
    agent_fail(ctx, "EVENT_FAILED", "could not deliver a %s event", event_type_name(type));
  }
  return rc;
}

void agent_fail(agent_ctx_t *ctx, const char *error_code, const char *fmt, ...) {
  if (ctx->failed) return; /* the first (deepest) reason wins */
  ctx->failed = 1;
  snprintf(ctx->fail_agent, sizeof(ctx->fail_agent), "%s", ctx->agent->name);
  snprintf(ctx->fail_code, sizeof(ctx->fail_code), "%s", error_code ? error_code : "AGENT_FAILED");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx->fail_msg, sizeof(ctx->fail_msg), fmt, ap);
  va_end(ap);
  utf8_trim_tail(ctx->fail_msg);
}

int agent_think(agent_ctx_t *ctx, const char *fmt, ...) {
  if (simulate_latency(ctx) != 0) return AGD_ECANCELLED;
  char text[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  utf8_trim_tail(text);
  ctx->step++;
  return emit(ctx, EV_AGENT_THINKING,
              json_pack("{s:s,s:i,s:s}", "reasoning", text, "step_number", ctx->step, "status", "thinking"));
}

static int probe_cancelled(const void *arg) { return agent_cancelled(arg); }

static int agent_may_call(const agent_ops_t *a, const char *tool) {
  if (!a->tools) return 1; /* no list: any registered tool */
  for (size_t i = 0; a->tools[i]; i++)
    if (strcmp(a->tools[i], tool) == 0) return 1;
  return 0;
}

/* Keep the call for the model loop (agent__calls).  Results are kept whole: the
 * loop bounds what it sends. */
static void record_call(agent_ctx_t *ctx, const char *tool_name, const char *call_id, const json_t *args,
                        const json_t *res) {
  json_t *c = json_pack("{s:s,s:s,s:O,s:O}", "name", tool_name, "call_id", call_id, "args", args, "result", res);
  if (c) json_array_append_new(ctx->calls, c);
}

int agent__call_tool_ex(agent_ctx_t *ctx, const char *tool_name, json_t *args, const char *call_id_in, int any_tool,
                        json_t *refused, json_t **result) {
  *result = NULL;
  if (!args) args = json_object();
  if (simulate_latency(ctx) != 0) {
    json_decref(args);
    json_decref(refused);
    return AGD_ECANCELLED;
  }
  char call_id[ID_MAX];
  if (call_id_in && *call_id_in) snprintf(call_id, sizeof(call_id), "%s", call_id_in);
  else id_new(call_id, "call");
  int rc = emit(ctx, EV_TOOL_EXECUTING,
                json_pack("{s:s,s:s,s:O,s:s}", "tool_name", tool_name, "call_id", call_id, "parameters", args,
                          "status", "executing"));
  if (rc != 0) {
    json_decref(args);
    json_decref(refused);
    return rc;
  }
  uint64_t t0 = time_mono_ns();
  const tool_t *t = refused ? NULL : tool_find(tool_name);
  json_t *res = NULL;
  int trc;
  if (refused) {
    trc = AGD_EVALIDATION;
    res = refused;
  } else if (!t) {
    trc = AGD_ENOT_FOUND;
    res = json_pack("{s:s++}", "error", "unknown tool '", tool_name, "'");
  } else if (!any_tool && !agent_may_call(ctx->agent, tool_name)) {
    trc = AGD_EFORBIDDEN;
    res = json_pack("{s:s++++}", "error", "agent '", ctx->agent->name, "' may not call tool '", tool_name, "'");
  } else {
    tool_call_ctx_t tc = {
        .user_id = ctx->p->user_id,
        .run_id = ctx->p->run_id,
        .store = ctx->p->store,
        .llm = agent_llm(ctx),
        .cancelled = probe_cancelled,
        .cancel_arg = ctx,
    };
    trc = tool_call(t, &tc, args, &res);
    if (!res) res = trc ? json_pack("{s:s}", "error", agd_err_code(trc)) : json_object();
  }
  tool_unref(t); /* tool_find's reference: the tool lived through the call even if unregistered */
  record_call(ctx, tool_name, call_id, args, res);
  json_decref(args);
  rc = emit(ctx, EV_TOOL_COMPLETED,
            json_pack("{s:s,s:s,s:O,s:f,s:s}", "tool_name", tool_name, "call_id", call_id, "result", res,
                      "execution_time_ms", ms_since(t0), "status", trc ? "error" : "completed"));
  *result = res;
  if (rc != 0) return rc;
  if (agent_cancelled(ctx)) return AGD_ECANCELLED;
  return trc;
}

int agent_call_tool(agent_ctx_t *ctx, const char *tool_name, json_t *args, json_t **result) {
  return agent__call_tool_ex(ctx, tool_name, args, NULL, 0, NULL, result);
}

int agent__partial_n(agent_ctx_t *ctx, const char *p, size_t n) {
  if (agent_cancelled(ctx)) return AGD_ECANCELLED;
  return emit(ctx, EV_PARTIAL_RESULT, json_pack("{s:s%}", "content", p, n));
}

int agent_partial(agent_ctx_t *ctx, const char *delta) {
  size_t n = strlen(delta);
  int rc = agent__partial_n(ctx, delta, n);
  if (rc == 0 && buf_append(&ctx->streamed, delta, n) != 0) rc = ERR(AGD_EINTERNAL);
  return rc;
}

/* Persist the answer and emit agent_response (SPEC §5: right before the top
 * agent's agent_completed). */
static int deliver_response(agent_ctx_t *ctx) {
  if (agent_cancelled(ctx)) return AGD_ECANCELLED;
  char message_id[ID_MAX] = "";
  int rc = 0;
  if (ctx->p->persist) {
    rc = ctx->p->persist(ctx->p->emit_arg, ctx->response, message_id);
    if (rc != 0) agent_fail(ctx, "PERSIST_FAILED", "could not store the answer (%s)", agd_err_code(rc));
  }
  if (rc == 0)
    rc = emit(ctx, EV_AGENT_RESPONSE, json_pack("{s:s,s:s}", "content", ctx->response, "message_id", message_id));
  if (rc == 0) ctx->response_pending = 0;
  return rc;
}

int agent_respond(agent_ctx_t *ctx, const char *text) {
  if (agent_cancelled(ctx)) return AGD_ECANCELLED;
  /* What was streamed already is part of the answer: stream only the rest.  If
   * the streamed text is not a prefix of `text`, the answer becomes streamed
   * text + text, so the deltas joined are always the content (SPEC §5). */
  size_t sn = ctx->streamed.len;
  const char *rest = text;
  buf_t full;
  buf_init(&full, 0);
  if (sn > 0 && strncmp(ctx->streamed.base, text, sn) == 0) {
    rest = text + sn;
  } else if (sn > 0) {
    buf_append(&full, ctx->streamed.base, sn);
  }
  buf_append_str(&full, text);
  buf_reset(&ctx->streamed);
  int rc = 0;
  size_t rn = strlen(rest);
  for (size_t off = 0; off < rn && rc == 0;) {
    size_t d = llm_next_delta(rest + off, rn - off);
    rc = agent__partial_n(ctx, rest + off, d);
    off += d;
  }
  char *content = buf_steal(&full, NULL);
  if (!content) content = strdup("");
  if (!content) abort();
  if (rc != 0) {
    free(content);
    return rc;
  }
  free(ctx->response);
  ctx->response = content;
  ctx->response_pending = 1;
  /* A sub-agent's answer goes out when the top agent finishes, so that
   * agent_response comes right before the top agent's agent_completed. */
  return ctx->depth == 0 ? deliver_response(ctx) : 0;
}

int agent_run_sub(agent_ctx_t *ctx, const agent_ops_t *ops, json_t **result) {
  if (result) *result = NULL;
  if (agent_cancelled(ctx)) return AGD_ECANCELLED;
  const agent_ops_t *saved_agent = ctx->agent;
  int saved_step = ctx->step;
  if (ctx->depth < AGENT__DEPTH_MAX) {
    ctx->outer[ctx->depth].agent = saved_agent;
    ctx->outer[ctx->depth].step = saved_step;
  }
  ctx->agent = ops;
  ctx->step = 0;
  ctx->depth++;
  uint64_t t0 = time_mono_ns();
  json_t *res = NULL;
  int rc = emit(ctx, EV_AGENT_STARTED,
                json_pack("{s:s,s:s,s:s}", "agent_name", ops->name, "message", agent_input_head(ctx), "status", "started"));
  if (rc == 0) rc = ops->run(ctx, &res);
  if (rc == 0 && agent_cancelled(ctx)) rc = AGD_ECANCELLED;
  if (rc != 0 && !agent_cancelled(ctx))
    agent_fail(ctx, agd_err_code(rc), "agent '%s' failed (%s)", ops->name, agd_err_code(rc));
  if (rc == 0) {
    if (!json_is_object(res)) {
      json_decref(res);
      res = json_object();
    }
    json_object_set_new(ctx->prior, ops->name, res);
    if (result) *result = res;
    rc = emit(ctx, EV_AGENT_COMPLETED,
              json_pack("{s:s,s:O,s:f,s:s}", "agent_name", ops->name, "result", res, "execution_time_ms",
                        ms_since(t0), "status", "completed"));
  } else {
    json_decref(res);
  }
  ctx->agent = saved_agent;
  ctx->step = saved_step;
  ctx->depth--;
  return rc;
}

/* ---- usage (SPEC §11) ---- */

/* The run thread's llm_usage_observe observer: sums the model calls (the builtin
 * provider is no model: not counted) and tells core/runs of each. */
static void on_llm_usage(void *arg, const llm_call_usage_t *u) {
  agent_ctx_t *ctx = arg;
  if (!u->provider || strcmp(u->provider, "builtin") == 0) return;
  double in = 0, out = 0, cost = 0;
  if (workloads_price(u->provider, u->model, &in, &out) == 0 || workloads_price(NULL, u->model, &in, &out) == 0)
    cost = ((double)u->prompt_tokens * in + (double)u->completion_tokens * out) / 1e6;
  agent_usage_t *s = ctx->usage;
  s->prompt_tokens += u->prompt_tokens > 0 ? u->prompt_tokens : 0;
  s->completion_tokens += u->completion_tokens > 0 ? u->completion_tokens : 0;
  s->llm_calls++;
  s->cost_usd += cost;
  if (ctx->p->usage) *ctx->p->usage = *s;
  if (ctx->p->on_llm_call) ctx->p->on_llm_call(ctx->p->emit_arg, u, cost);
}

/* ---- checkpoints (the approval gate, SPEC §11) ---- */

json_t *agent__checkpoint(agent_ctx_t *ctx, json_t *loop) {
  json_t *stack = json_array();
  int depth = ctx->depth < AGENT__DEPTH_MAX ? ctx->depth : AGENT__DEPTH_MAX;
  for (int i = 0; i < depth; i++)
    json_array_append_new(stack, json_pack("{s:s,s:i}", "agent", ctx->outer[i].agent->name, "step", ctx->outer[i].step));
  json_array_append_new(stack, json_pack("{s:s,s:i}", "agent", ctx->agent->name, "step", ctx->step));
  const agent_usage_t *u = ctx->usage;
  return json_pack("{s:i,s:s,s:o,s:O,s:s%,s:{s:I,s:I,s:I,s:f},s:o}", "v", 1, "top_agent",
                   depth > 0 ? ctx->outer[0].agent->name : ctx->agent->name, "stack", stack, "prior", ctx->prior,
                   "streamed", ctx->streamed.base ? ctx->streamed.base : "", ctx->streamed.len, "usage",
                   "prompt_tokens", (json_int_t)u->prompt_tokens, "completion_tokens",
                   (json_int_t)u->completion_tokens, "llm_calls", (json_int_t)u->llm_calls, "cost_usd", u->cost_usd,
                   "loop", loop);
}

/* Continue a run from its checkpoint (agent_run_params_t.resume): what it did
 * before is not emitted again.  The stack is the top agent alone (it or the
 * answer it fell back to ran the loop) or the top agent and one sub-agent
 * (supervisor → reporting): that sub-agent ends as agent_run_sub would end it.
 * *result gets the top agent's result. */
static int resume_run(agent_ctx_t *ctx, const agent_ops_t *ops, json_t **result) {
  const json_t *cp = ctx->p->resume;
  const json_t *stack = json_object_get(cp, "stack");
  size_t depth = json_array_size(stack);
  const char *top = json_string_value(json_object_get(cp, "top_agent"));
  const agent_ops_t *inner =
      depth ? agent_find(json_string_value(json_object_get(json_array_get(stack, depth - 1), "agent"))) : NULL;
  if (json_integer_value(json_object_get(cp, "v")) != 1 || depth < 1 || depth > 2 || !top ||
      strcmp(top, ops->name) != 0 || !inner || !json_is_object(json_object_get(cp, "loop"))) {
    agent_fail(ctx, "RESUME_FAILED", "the run's checkpoint cannot be resumed by agent '%s'", ops->name);
    return AGD_EINTERNAL;
  }
  const json_t *prior = json_object_get(cp, "prior");
  if (json_is_object(prior)) json_object_update(ctx->prior, (json_t *)prior);
  const char *streamed = json_string_value(json_object_get(cp, "streamed"));
  if (streamed) buf_append(&ctx->streamed, streamed, json_string_length(json_object_get(cp, "streamed")));
  const json_t *u = json_object_get(cp, "usage");
  ctx->usage->prompt_tokens = (long)json_integer_value(json_object_get(u, "prompt_tokens"));
  ctx->usage->completion_tokens = (long)json_integer_value(json_object_get(u, "completion_tokens"));
  ctx->usage->llm_calls = (long)json_integer_value(json_object_get(u, "llm_calls"));
  ctx->usage->cost_usd = json_number_value(json_object_get(u, "cost_usd"));
  if (ctx->p->usage) *ctx->p->usage = *ctx->usage;
  int step0 = (int)json_integer_value(json_object_get(json_array_get(stack, 0), "step"));
  if (depth == 2) {
    ctx->outer[0].agent = ops;
    ctx->outer[0].step = step0;
    ctx->agent = inner;
    ctx->step = (int)json_integer_value(json_object_get(json_array_get(stack, 1), "step"));
    ctx->depth = 1;
  } else {
    ctx->step = step0;
  }
  uint64_t t0 = time_mono_ns();
  json_t *res = NULL;
  int rc = agents__loop_resume(ctx, json_object_get(cp, "loop"), &res);
  if (depth == 1) {
    if (rc == 0) {
      json_t *own = ops == &agent_reporting_ops ? res : json_object_get(ctx->prior, ops->name);
      *result = json_is_object(own) ? json_incref(own) : json_object();
    }
    json_decref(res);
    return rc;
  }
  /* the sub-agent's end, as agent_run_sub */
  if (rc == 0 && agent_cancelled(ctx)) rc = AGD_ECANCELLED;
  if (rc != 0 && !agent_cancelled(ctx))
    agent_fail(ctx, agd_err_code(rc), "agent '%s' failed (%s)", inner->name, agd_err_code(rc));
  if (rc == 0) {
    if (!json_is_object(res)) {
      json_decref(res);
      res = json_object();
    }
    json_object_set_new(ctx->prior, inner->name, res);
    rc = emit(ctx, EV_AGENT_COMPLETED,
              json_pack("{s:s,s:O,s:f,s:s}", "agent_name", inner->name, "result", res, "execution_time_ms",
                        ms_since(t0), "status", "completed"));
  } else {
    json_decref(res);
  }
  ctx->agent = ops;
  ctx->step = step0;
  ctx->depth = 0;
  if (rc == 0) *result = agents__resumed_result(ctx, ops);
  return rc;
}

void agent__stop(agent_ctx_t *ctx, const char *reason) {
  if (!ctx->stop_why[0]) snprintf(ctx->stop_why, sizeof(ctx->stop_why), "%s", reason);
}

json_t *agent__calls(const agent_ctx_t *ctx) { return ctx->calls; }
const agent_run_params_t *agent__params(const agent_ctx_t *ctx) { return ctx->p; }
const char *agent__agent_name(const agent_ctx_t *ctx) { return ctx->agent->name; }
int agent__emit_failed(const agent_ctx_t *ctx) { return ctx->emit_rc; }
const char *agent__streamed(const agent_ctx_t *ctx, size_t *n) {
  *n = ctx->streamed.len;
  return ctx->streamed.base ? ctx->streamed.base : "";
}

static int run_top(const agent_ops_t *ops, const agent_run_params_t *p, agent_usage_t *usage, json_t **result_out,
                   char **response_out, json_t **error_out) {
  agent_ctx_t ctx = {.p = p,
                     .agent = ops,
                     .prior = json_object(),
                     .calls = json_array(),
                     .usage = usage,
                     .input_head = input_head_new(p->input ? p->input : "")};
  buf_init(&ctx.streamed, 0);
  llm_usage_observe(on_llm_usage, &ctx); /* cleared by agent_run_top before ctx goes */
  json_t *result = NULL;
  int rc = 0;
  uint64_t t0 = time_mono_ns();

  if (agent_cancelled(&ctx)) goto stopped;
  if (p->resume) {
    rc = resume_run(&ctx, ops, &result);
  } else {
    rc = emit(&ctx, EV_AGENT_STARTED,
              json_pack("{s:s,s:s,s:s}", "agent_name", ops->name, "message", agent_input_head(&ctx), "status",
                        "started"));
    if (rc == 0) rc = ops->run(&ctx, &result);
  }
  if (agent_cancelled(&ctx)) goto stopped;
  if (rc == 0) {
    if (!json_is_object(result)) {
      json_decref(result);
      result = json_object();
    }
    /* A run always ends with agent_response then the top agent's
     * agent_completed: answer from the result when the agent did not. */
    if (!ctx.response) {
      json_object_set(ctx.prior, ops->name, result);
      rc = reporting_answer(&ctx, NULL);
    } else if (ctx.response_pending) {
      rc = deliver_response(&ctx);
    }
    if (agent_cancelled(&ctx)) goto stopped;
  }
  if (rc == 0) {
    json_t *done = json_pack("{s:s,s:O,s:f,s:s}", "agent_name", ops->name, "result", result, "execution_time_ms",
                             ms_since(t0), "status", "completed");
    tell_final(&ctx, EV_AGENT_COMPLETED, done);
    rc = emit(&ctx, EV_AGENT_COMPLETED, done);
  }
  if (rc == 0) {
    if (result_out) *result_out = result;
    else json_decref(result);
    if (response_out) *response_out = ctx.response;
    else free(ctx.response);
    json_decref(ctx.prior);
    json_decref(ctx.calls);
    buf_dispose(&ctx.streamed);
    free(ctx.input_head);
    return 0;
  }

  /* failed: agent_error last */
  if (!ctx.failed) agent_fail(&ctx, agd_err_code(rc), "agent '%s' failed (%s)", ops->name, agd_err_code(rc));
  json_t *err = json_pack("{s:s,s:s,s:s}", "agent_name", ctx.fail_agent, "error_message", ctx.fail_msg,
                          "error_code", ctx.fail_code);
  tell_final(&ctx, EV_AGENT_ERROR, err);
  emit_as(&ctx, EV_AGENT_ERROR, ctx.fail_agent, err);
  if (error_out) *error_out = json_pack("{s:s,s:s}", "error_message", ctx.fail_msg, "error_code", ctx.fail_code);
  if (rc >= 0 || rc == AGD_ETIMEOUT || rc == AGD_ECANCELLED) rc = AGD_EINTERNAL; /* those mean stopped */
  goto out;

stopped: {
  const char *reason = stop_reason(&ctx);
  json_t *stop = json_pack("{s:s}", "reason", reason);
  tell_final(&ctx, EV_AGENT_STOPPED, stop);
  emit_as(&ctx, EV_AGENT_STOPPED, ops->name, stop);
  rc = strcmp(reason, "timeout") == 0 ? AGD_ETIMEOUT : AGD_ECANCELLED;
}
out:
  json_decref(result);
  free(ctx.response);
  json_decref(ctx.prior);
  json_decref(ctx.calls);
  buf_dispose(&ctx.streamed);
  free(ctx.input_head);
  return rc;
}

int agent_run_top(const agent_ops_t *ops, const agent_run_params_t *p, json_t **result_out, char **response_out,
                  json_t **error_out) {
  if (result_out) *result_out = NULL;
  if (response_out) *response_out = NULL;
  if (error_out) *error_out = NULL;
  agent_usage_t usage = {0};
  if (p->usage) memset(p->usage, 0, sizeof(*p->usage));
  int rc = run_top(ops, p, &usage, result_out, response_out, error_out);
  llm_usage_observe(NULL, NULL);
  return rc;
}

/* ---- helpers shared by the built-in agents (agents_int.h) ---- */

int agent__try_tool(agent_ctx_t *ctx, const char *tool_name, json_t *args, json_t **result) {
  int rc = agent_call_tool(ctx, tool_name, args, result);
  if (rc == 0) return 0;
  if (agent_cancelled(ctx) || ctx->emit_rc) {
    json_decref(*result);
    *result = NULL;
    return ctx->emit_rc ? ctx->emit_rc : AGD_ECANCELLED;
  }
  if (!*result) *result = json_pack("{s:s}", "error", agd_err_code(rc));
  return 1;
}

json_t *agent__window_args(agent_ctx_t *ctx) {
  json_t *args = json_object();
  const json_t *c = agent_request_context(ctx);
  const char *keys[] = {"from", "to"};
  for (size_t i = 0; i < 2; i++) {
    const json_t *v = json_object_get(c, keys[i]);
    if (json_is_number(v) && json_number_value(v) >= 0 && json_number_value(v) < 1e12)
      json_object_set_new(args, keys[i], json_real(json_number_value(v)));
  }
  return args;
}

json_t *agent__money(double v, int digits) {
  if (!(v == v) || v > 1e15 || v < -1e15) v = 0; /* NaN or absurd: never into JSON */
  double scale = 1;
  for (int i = 0; i < digits; i++) scale *= 10;
  double r = (double)(long long)(v * scale + (v < 0 ? -0.5 : 0.5)) / scale;
  return json_real(r == 0 ? 0 : r);
}

json_t *agent__pick(const json_t *o, const char *paths) {
  char buf[256];
  const char *p = paths;
  while (p && *p) {
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len < sizeof(buf)) {
      memcpy(buf, p, len);
      buf[len] = '\0';
      const json_t *cur = o;
      char *save = NULL;
      for (char *k = strtok_r(buf, ".", &save); k && cur; k = strtok_r(NULL, ".", &save))
        cur = json_is_object(cur) ? json_object_get(cur, k) : NULL;
      if (cur && !json_is_null(cur)) return (json_t *)cur;
    }
    p = bar ? bar + 1 : NULL;
  }
  return NULL;
}

double agent__pick_num(const json_t *o, const char *paths) {
  const json_t *v = agent__pick(o, paths);
  return json_is_number(v) ? json_number_value(v) : 0;
}
