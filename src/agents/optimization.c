/* agents/optimization.c — the optimization agent (DESIGN.md "The built-in
 * agents"): finds concrete savings in the caller's call records through the
 * analysis tools (cache_opportunities, model_recommendations,
 * batch_opportunities, latency_analysis, cost_breakdown, price_lookup) and
 * ranks them by estimated monthly saving, each with its evidence.  What it
 * looks at follows triage's focus: cost (everything), latency, model choice,
 * caching.  Result fields: docs/agents.md ("optimization").  Runs on a run
 * thread.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agents_int.h"
#include "util/buf.h"
#include "util/err.h"

#define MAX_RECS 12
#define EVIDENCE_LIST_MAX 5

/* Where the analyses keep their numbers (docs/agents.md "Tools"). */
#define P_SAVING "monthly_saving_usd"
#define P_FROM_MODEL "model"
#define P_TO_MODEL "suggested_model"

/* A copy of v with every array cut to EVIDENCE_LIST_MAX entries (evidence stays small). */
static json_t *trimmed(const json_t *v, int depth) {
  if (json_is_array(v)) {
    json_t *a = json_array();
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e) {
      if (i >= EVIDENCE_LIST_MAX) break;
      json_array_append_new(a, depth < 4 ? trimmed(e, depth + 1) : json_null());
    }
    return a;
  }
  if (json_is_object(v)) {
    json_t *o = json_object();
    const char *k;
    const json_t *e;
    json_object_foreach((json_t *)v, k, e) json_object_set_new(o, k, depth < 4 ? trimmed(e, depth + 1) : json_null());
    return o;
  }
  return json_deep_copy(v);
}

typedef struct recs {
  json_t *list; /* [{"kind","title","monthly_saving_usd","evidence","detail","source"}] */
} recs_t;

static void add_rec(recs_t *r, const char *kind, const char *title, double saving, const json_t *evidence,
                    const char *detail, const char *source) {
  if (!isfinite(saving) || saving < 0) saving = 0;
  json_t *o = json_object();
  json_object_set_new(o, "kind", json_string(kind));
  json_t *t = json_string(title);
  json_object_set_new(o, "title", t ? t : json_string(kind));
  json_object_set_new(o, "monthly_saving_usd", agent__money(saving, 2));
  json_object_set_new(o, "evidence", evidence ? trimmed(evidence, 0) : json_object());
  json_t *d = json_string(detail ? detail : "");
  json_object_set_new(o, "detail", d ? d : json_string(""));
  json_object_set_new(o, "source", json_string(source));
  json_array_append_new(r->list, o);
}

static const char *str_at(const json_t *o, const char *paths) { return json_string_value(agent__pick(o, paths)); }

/* ---- one analysis result → recommendations ---- */

static void from_cache(recs_t *r, const json_t *res) {
  double saving = agent__pick_num(res, P_SAVING);
  double repeated = agent__pick_num(res, "repeated_calls");
  double rate = agent__pick_num(res, "repeat_rate");
  double calls = agent__pick_num(res, "calls_with_prompt_hash");
  if (saving <= 0 || repeated <= 0 || json_is_false(json_object_get(res, "recommended"))) return;
  char detail[400];
  snprintf(detail, sizeof(detail),
           "%.0f of %.0f calls with a prompt hash (%.1f%%) repeat an earlier prompt; a response cache would answer "
           "them without a model call ($%.2f over the %.1f days analysed).",
           repeated, calls, 100.0 * rate, agent__pick_num(res, "window_saving_usd"), agent__pick_num(res, "days"));
  add_rec(r, "caching", "Cache responses to repeated prompts", saving, res, detail, "cache_opportunities");
}

static void from_models(recs_t *r, const json_t *res) {
  const json_t *items = json_object_get(res, "recommendations");
  double max_pt = agent__pick_num(res, "thresholds.max_prompt_tokens");
  double max_ct = agent__pick_num(res, "thresholds.max_completion_tokens");
  size_t i;
  const json_t *it;
  json_array_foreach(items, i, it) {
    double saving = agent__pick_num(it, P_SAVING);
    if (saving <= 0) continue;
    const char *from = str_at(it, P_FROM_MODEL), *to = str_at(it, P_TO_MODEL);
    char title[300], detail[600];
    snprintf(title, sizeof(title), "Move short %.64s calls to %.64s", from ? from : "premium-model",
             to ? to : "a cheaper model");
    snprintf(detail, sizeof(detail),
             "%.0f of %.0f %.64s calls (%.0f%%) are short (at most %.0f prompt and %.0f completion tokens); at "
             "%.64s prices they would have cost $%.2f instead of $%.2f.",
             agent__pick_num(it, "eligible_calls"), agent__pick_num(it, "calls"), from ? from : "",
             100.0 * agent__pick_num(it, "eligible_share"), max_pt, max_ct, to ? to : "the cheaper model's",
             agent__pick_num(it, "projected_cost_usd"), agent__pick_num(it, "current_cost_usd"));
    add_rec(r, "model_switch", title, saving, it, detail, "model_recommendations");
  }
}

static void from_batch(recs_t *r, const json_t *res) {
  const json_t *feats = json_object_get(res, "batchable_features");
  double saving = agent__pick_num(res, P_SAVING);
  if (saving <= 0 || json_array_size(feats) == 0) return;
  buf_t names;
  buf_init(&names, 512);
  double calls = 0;
  size_t i;
  const json_t *f;
  json_array_foreach(feats, i, f) {
    calls += agent__pick_num(f, "calls");
    if (i < 3) buf_appendf(&names, "%s`%.64s`", i ? ", " : "", str_at(f, "feature") ? str_at(f, "feature") : "");
  }
  if (json_array_size(feats) > 3) buf_appendf(&names, " and %zu more", json_array_size(feats) - 3);
  char title[400], detail[600];
  snprintf(title, sizeof(title), "Send %s traffic through a batch API", names.base ? names.base : "");
  snprintf(detail, sizeof(detail),
           "%.0f calls of %s do not need an answer right away; the batch API's %.0f%% discount saves $%.2f over the "
           "%.1f days analysed.",
           calls, names.base ? names.base : "", 100.0 * agent__pick_num(res, "discount"),
           agent__pick_num(res, "window_saving_usd"), agent__pick_num(res, "days"));
  buf_dispose(&names);
  add_rec(r, "batching", title, saving, res, detail, "batch_opportunities");
}

static void from_latency(recs_t *r, const json_t *res) {
  const json_t *g = json_array_get(json_object_get(res, "by_model"), 0); /* slowest p95 first */
  const json_t *ov = json_object_get(res, "overall");
  double p50 = agent__pick_num(ov, "latency_p50_ms"), p95 = agent__pick_num(ov, "latency_p95_ms"),
         p99 = agent__pick_num(ov, "latency_p99_ms");
  if (!g || p95 <= 0) return;
  const char *model = str_at(g, "model");
  char title[300], detail[600];
  snprintf(title, sizeof(title), "Cut the latency of %.64s calls", model ? model : "the slowest model's");
  snprintf(detail, sizeof(detail),
           "%.64s is the slowest model: p95 %.0f ms (p50 %.0f ms, p99 %.0f ms) against p50 %.0f ms, p95 %.0f ms, "
           "p99 %.0f ms over all calls. Stream its answers, cap max_tokens, and move short calls to a faster model.",
           model ? model : "?", agent__pick_num(g, "latency_p95_ms"), agent__pick_num(g, "latency_p50_ms"),
           agent__pick_num(g, "latency_p99_ms"), p50, p95, p99);
  add_rec(r, "latency", title, 0, res, detail, "latency_analysis");
}

/* ---- ranking ---- */

static int by_saving(const void *a, const void *b) {
  const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  double sx = json_number_value(json_object_get(x, "monthly_saving_usd"));
  double sy = json_number_value(json_object_get(y, "monthly_saving_usd"));
  if (sx != sy) return sx < sy ? 1 : -1;
  return strcmp(json_string_value(json_object_get(x, "title")), json_string_value(json_object_get(y, "title")));
}

static json_t *ranked(json_t *list) {
  size_t n = json_array_size(list);
  json_t **v = malloc((n ? n : 1) * sizeof(*v));
  if (!v) abort();
  for (size_t i = 0; i < n; i++) v[i] = json_array_get(list, i);
  qsort(v, n, sizeof(*v), by_saving);
  json_t *out = json_array();
  for (size_t i = 0; i < n && i < MAX_RECS; i++) {
    json_object_set_new(v[i], "rank", json_integer((json_int_t)i + 1));
    json_array_append(out, v[i]);
  }
  free(v);
  return out;
}

/* ---- the agent ---- */

typedef struct step {
  const char *tool;
  void (*extract)(recs_t *r, const json_t *res);
} step_t;

static const step_t steps_cost[] = {{"cost_breakdown", NULL},
                                    {"cache_opportunities", from_cache},
                                    {"model_recommendations", from_models},
                                    {"batch_opportunities", from_batch},
                                    {NULL, NULL}};
static const step_t steps_latency[] = {{"latency_analysis", from_latency},
                                       {"model_recommendations", from_models},
                                       {"cache_opportunities", from_cache},
                                       {NULL, NULL}};
static const step_t steps_model[] = {{"model_recommendations", from_models}, {NULL, NULL}};
static const step_t steps_caching[] = {{"cache_opportunities", from_cache}, {NULL, NULL}};

static const step_t *steps_for(const char *focus) {
  if (!focus) return steps_cost;
  if (strcmp(focus, "latency") == 0) return steps_latency;
  if (strcmp(focus, "model") == 0) return steps_model;
  if (strcmp(focus, "caching") == 0) return steps_caching;
  return steps_cost;
}

static const char *focus_of_intent(const char *intent) {
  if (!intent) return "cost";
  if (strcmp(intent, "latency") == 0) return "latency";
  if (strcmp(intent, "model_selection") == 0) return "model";
  if (strcmp(intent, "caching") == 0) return "caching";
  return "cost";
}

/* Triage's focus, else classify the request here (the agent run on its own). */
static int pick_focus(agent_ctx_t *ctx, const char **focus) {
  const json_t *tr = json_object_get(agent_prior_results(ctx), "triage");
  if (tr) {
    *focus = focus_of_intent(json_string_value(json_object_get(tr, "intent")));
    return 0;
  }
  json_t *cls = NULL;
  int rc = agent__try_tool(ctx, "classify_request", json_pack("{s:s}", "text", agent_input_head(ctx)), &cls);
  if (rc < 0) return rc;
  *focus = focus_of_intent(rc == 0 ? json_string_value(json_object_get(cls, "intent")) : NULL);
  json_decref(cls);
  return 0;
}

/* The data agent ran and found nothing: no analysis can find savings. */
static int data_says_empty(agent_ctx_t *ctx) {
  const json_t *d = json_object_get(agent_prior_results(ctx), "data");
  return d && json_is_false(json_object_get(d, "has_data"));
}

static int optimization_run(agent_ctx_t *ctx, json_t **result) {
  const char *focus = "cost";
  int rc = agent_think(ctx, "Looking for savings in your call records: repeated prompts, cheaper models for short "
                            "calls, batchable traffic, slow calls.");
  if (rc == 0) rc = pick_focus(ctx, &focus);
  if (rc != 0) return rc;
  recs_t r = {.list = json_array()};
  json_t *analyses = json_object(); /* tool → "ok" | its error */
  json_t *drivers = json_array();
  if (data_says_empty(ctx)) {
    rc = agent_think(ctx, "The data agent found no call records, so there is nothing to optimise yet.");
  } else {
    rc = agent_think(ctx, "Focus: %s. Running the %s analyses.", focus,
                     strcmp(focus, "cost") == 0 ? "cost, caching, model and batching" : focus);
    json_t *window = agent__window_args(ctx);
    for (const step_t *s = steps_for(focus); rc == 0 && s->tool; s++) {
      json_t *res = NULL;
      int trc = agent__try_tool(ctx, s->tool, json_deep_copy(window), &res);
      if (trc < 0) {
        rc = trc;
        break;
      }
      if (trc == 1) {
        const char *e = json_string_value(json_object_get(res, "error"));
        json_object_set_new(analyses, s->tool, json_string(e ? e : "failed"));
      } else {
        json_object_set_new(analyses, s->tool, json_string("ok"));
        if (s->extract) s->extract(&r, res);
        if (strcmp(s->tool, "cost_breakdown") == 0) {
          const json_t *top = json_object_get(res, "by_model");
          json_decref(drivers);
          drivers = trimmed(top ? top : json_array(), 0);
          if (!json_is_array(drivers)) {
            json_decref(drivers);
            drivers = json_array();
          }
        }
      }
      json_decref(res);
    }
    json_decref(window);
  }
  if (rc != 0) {
    json_decref(r.list);
    json_decref(analyses);
    json_decref(drivers);
    return rc;
  }

  /* The best model switch: cite the prices it rests on. */
  json_t *recs = ranked(r.list);
  json_decref(r.list);
  size_t i;
  json_t *rec;
  json_array_foreach(recs, i, rec) {
    if (strcmp(json_string_value(json_object_get(rec, "kind")), "model_switch") != 0) continue;
    json_t *ev = json_object_get(rec, "evidence");
    const char *names[2] = {str_at(ev, P_FROM_MODEL), str_at(ev, P_TO_MODEL)};
    const char *keys[2] = {"price_from", "price_to"};
    for (int k = 0; k < 2 && rc == 0; k++) {
      if (!names[k]) continue;
      json_t *pr = NULL;
      int trc = agent__try_tool(ctx, "price_lookup", json_pack("{s:s}", "model", names[k]), &pr);
      if (trc < 0) rc = trc;
      else if (trc == 0) json_object_set(ev, keys[k], pr);
      json_decref(pr);
    }
    break;
  }
  if (rc != 0) {
    json_decref(recs);
    json_decref(analyses);
    json_decref(drivers);
    return rc;
  }

  double total = 0;
  json_array_foreach(recs, i, rec) total += json_number_value(json_object_get(rec, "monthly_saving_usd"));
  buf_t b;
  buf_init(&b, 4096);
  if (json_array_size(recs) == 0) {
    buf_append_str(&b, data_says_empty(ctx) ? "No call records to analyse yet, so no recommendation."
                                            : "No saving worth making was found in your call records.");
  } else {
    buf_appendf(&b, "%zu recommendation%s, about $%.2f per month in total.", json_array_size(recs),
                json_array_size(recs) == 1 ? "" : "s", total);
    json_t *top = json_array_get(recs, 0);
    buf_appendf(&b, " The biggest: %.200s ($%.2f/month).", json_string_value(json_object_get(top, "title")),
                json_number_value(json_object_get(top, "monthly_saving_usd")));
  }
  char *summary = buf_steal(&b, NULL);
  rc = agent_think(ctx, "%s", summary ? summary : "");
  if (rc != 0) {
    free(summary);
    json_decref(recs);
    json_decref(analyses);
    json_decref(drivers);
    return rc;
  }
  *result = json_object();
  json_object_set_new(*result, "focus", json_string(focus));
  json_object_set_new(*result, "recommendations", recs);
  json_object_set_new(*result, "total_monthly_saving_usd", agent__money(total, 2));
  json_object_set_new(*result, "top_cost_drivers", drivers);
  json_object_set_new(*result, "analyses", analyses);
  json_t *js = json_string(summary ? summary : "");
  json_object_set_new(*result, "summary", js ? js : json_string(""));
  free(summary);
  return 0;
}

static const char *const optimization_tools[] = {
    "cost_breakdown", "latency_analysis", "cache_opportunities", "model_recommendations", "batch_opportunities",
    "price_lookup",   "classify_request", NULL};

const agent_ops_t agent_optimization_ops = {
    .name = "optimization",
    .description = "Finds concrete savings in your call records (cache repeated prompts, cheaper models for short "
                   "calls, batch delay-tolerant traffic, cut slow calls), ranked by estimated monthly saving.",
    .tools = optimization_tools,
    .run = optimization_run,
};
