/* llm/builtin.c — the deterministic provider (llm.h, DESIGN.md "The built-in
 * agents"): one implementation of the chat vtable, a "model" made of rules
 * and templates.  No state, no network: the same request always gives the
 * same response, so tests are exact.  Reentrant (any thread).
 *
 * How it answers a chat request (its whole "policy"):
 * - offered LLM_CLASSIFY_FN (tool_choice auto, required or that function)
 *   and the conversation ends with the user's message: it calls the function
 *   with its keyword scoring of that message (finish tool_calls);
 * - asked to call any other function: LLM_BAD_REQUEST (it knows no other);
 * - otherwise it writes markdown.  When the last user message is a JSON
 *   object, that object is the facts the agents found (the shape under
 *   render() below, written by agents/reporting.c) and the answer renders
 *   them; else the answer is its classification of that message.  The text is
 *   streamed in sentence-sized deltas (llm_next_delta), and the cancel flag,
 *   the probe and the deadline are checked before each one.
 * max_output_tokens counts 4 bytes a token (finish length past it); usage is
 * 0, there is no model.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/llm.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/timeutil.h"

/* Only the first bytes of a request are scored (a 100 000-character message
 * says what it is about early on; this bounds the work). */
#define CLASSIFY_MAX_BYTES 16384
/* Longest string value rendered from facts. */
#define FACT_STR_MAX 600

/* ---- classification ---- */

typedef struct term {
  const char *text; /* normalised: lowercase words separated by one space */
  int weight;
} term_t;

/* A term matches at the start of a word and as a prefix of it ("cost" matches
 * "costs", "which model" matches "which models"); a trailing space asks for
 * the whole word ("import " does not match "important"); "$" matches anywhere. */
static const term_t cost_terms[] = {
    {"cost", 3}, {"spend", 3}, {"spent", 2}, {"bill", 3}, {"cheaper", 3}, {"cheap", 2}, {"price", 3},
    {"pricing", 3}, {"expensive", 3}, {"budget", 2}, {"save money", 3}, {"saving", 2}, {"dollar", 2},
    {"invoice", 2}, {"$", 2}, {"cut", 1}, {"reduce", 1}, {NULL, 0}};
static const term_t latency_terms[] = {
    {"latency", 3}, {"slow", 3}, {"fast", 2}, {"faster", 3}, {"p50", 3}, {"p95", 3}, {"p99", 3},
    {"response time", 3}, {"speed", 2}, {"lag", 2}, {"timeout", 2}, {"takes too long", 3}, {"delay", 2},
    {"ttft", 3}, {"time to first token", 3}, {NULL, 0}};
static const term_t model_terms[] = {
    {"which model", 5}, {"what model", 5}, {"best model", 5}, {"model for", 4}, {"model should", 4},
    {"choose a model", 5}, {"switch model", 4}, {"switch to", 2}, {"gpt 4", 2}, {"gpt 3", 2}, {"gpt 4o", 2},
    {"claude", 2}, {"llama", 2}, {"mistral", 2}, {"gemini", 2}, {"smaller model", 3}, {"compare models", 4},
    {NULL, 0}};
static const term_t caching_terms[] = {
    {"cache", 4}, {"caching", 4}, {"cached", 4}, {"repeated", 3}, {"duplicate", 3}, {"same prompt", 3},
    {"identical", 2}, {"dedup", 3}, {"memoiz", 3}, {NULL, 0}};
static const term_t usage_terms[] = {
    {"summarise my", 4}, {"summarize my", 4}, {"summarise", 2}, {"summarize", 2}, {"summary", 3},
    {"usage", 3}, {"report", 3}, {"how much did", 3}, {"how many calls", 3}, {"how many tokens", 3},
    {"breakdown", 2}, {"overview", 2}, {"statistics", 2}, {"stats", 2}, {"dashboard", 2}, {NULL, 0}};
static const term_t upload_terms[] = {
    {"upload", 5}, {"import ", 4}, {"importing", 4}, {"format", 3}, {"csv", 4}, {"jsonl", 4}, {"ndjson", 4},
    {"how do i send", 4}, {"send my data", 4}, {"send data", 3}, {"ingest", 4}, {"what data", 3},
    {"which fields", 3}, {"schema", 2}, {"my data", 2}, {NULL, 0}};

static const term_t *const intent_terms[LLM_INTENT__COUNT] = {
    [LLM_INTENT_COST] = cost_terms,
    [LLM_INTENT_LATENCY] = latency_terms,
    [LLM_INTENT_MODEL_SELECTION] = model_terms,
    [LLM_INTENT_CACHING] = caching_terms,
    [LLM_INTENT_USAGE_REPORT] = usage_terms,
    [LLM_INTENT_DATA_UPLOAD_HELP] = upload_terms,
    [LLM_INTENT_GENERAL] = NULL,
};

static const char *const intent_topic[LLM_INTENT__COUNT] = {
    [LLM_INTENT_COST] = "the cost of your LLM calls",
    [LLM_INTENT_LATENCY] = "the latency of your LLM calls",
    [LLM_INTENT_MODEL_SELECTION] = "which model to use",
    [LLM_INTENT_CACHING] = "caching repeated prompts",
    [LLM_INTENT_USAGE_REPORT] = "a report of your LLM usage",
    [LLM_INTENT_DATA_UPLOAD_HELP] = "how to send your workload data",
    [LLM_INTENT_GENERAL] = "a general question",
};

/* Lowercase ASCII letters and digits, keep '$' and non-ASCII bytes, turn
 * everything else into single spaces; a leading and trailing space make word
 * starts easy to find (" cost"). */
static size_t normalise(const char *in, char *out, size_t cap) {
  size_t o = 0;
  int space = 1;
  out[o++] = ' ';
  for (size_t i = 0; in[i] && i < CLASSIFY_MAX_BYTES && o + 2 < cap; i++) {
    unsigned char c = (unsigned char)in[i];
    if (isalnum(c) || c == '$' || c >= 0x80) {
      out[o++] = (char)tolower(c);
      space = 0;
    } else if (!space) {
      out[o++] = ' ';
      space = 1;
    }
  }
  if (!space) out[o++] = ' ';
  out[o] = '\0';
  return o;
}

static int term_matches(const char *norm, const char *term) {
  if (strcmp(term, "$") == 0) return strchr(norm, '$') != NULL;
  for (const char *p = strstr(norm, term); p; p = strstr(p + 1, term))
    if (p > norm && p[-1] == ' ') return 1;
  return 0;
}

/* Append kw (trailing space dropped) to a list: sep between items, each in quotes. */
static void add_keyword(char *dst, size_t cap, const char *kw, const char *sep, const char *quote) {
  size_t len = strlen(dst), kn = strlen(kw);
  if (kn && kw[kn - 1] == ' ') kn--;
  if (len + kn + strlen(sep) + 2 * strlen(quote) + 1 > cap) return;
  snprintf(dst + len, cap - len, "%s%s%.*s%s", len ? sep : "", quote, (int)kn, kw, quote);
}

/* Keyword scoring of text into *out. */
static void classify_text(const char *text, llm_classification_t *out) {
  memset(out, 0, sizeof(*out));
  char *norm = malloc(CLASSIFY_MAX_BYTES + 3);
  if (!norm) abort();
  normalise(text, norm, CLASSIFY_MAX_BYTES + 3);

  int score[LLM_INTENT__COUNT] = {0};
  for (int i = 0; i < LLM_INTENT__COUNT; i++)
    for (const term_t *t = intent_terms[i]; t && t->text; t++)
      if (term_matches(norm, t->text)) score[i] += t->weight;

  /* Winner: highest score; ties go to the earlier intent in the enum. */
  int best = LLM_INTENT_GENERAL, second = 0;
  for (int i = 0; i < LLM_INTENT_GENERAL; i++)
    if (score[i] > (best == LLM_INTENT_GENERAL ? 0 : score[best])) best = i;
  for (int i = 0; i < LLM_INTENT_GENERAL; i++)
    if (i != best && score[i] > second) second = score[i];

  out->intent = (llm_intent_t)best;
  if (best == LLM_INTENT_GENERAL) {
    out->confidence = 0.5;
    snprintf(out->reasoning, sizeof(out->reasoning),
             "No cost, latency, model choice, caching, usage report or data upload terms were found, so this "
             "is treated as a general question.");
  } else {
    char quoted[256] = "";
    for (const term_t *t = intent_terms[best]; t->text; t++)
      if (term_matches(norm, t->text)) {
        add_keyword(out->keywords, sizeof(out->keywords), t->text, ",", "");
        add_keyword(quoted, sizeof(quoted), t->text, ", ", "\"");
      }
    double margin = (double)(score[best] - second) / score[best];
    double strength = score[best] >= 5 ? 1.0 : score[best] / 5.0;
    out->confidence = round((0.45 + 0.3 * margin + 0.2 * strength) * 100.0) / 100.0;
    if (second > 0)
      snprintf(out->reasoning, sizeof(out->reasoning),
               "The request mentions %s, which points to %s (score %d; the next closest topic scored %d).",
               quoted, intent_topic[best], score[best], second);
    else
      snprintf(out->reasoning, sizeof(out->reasoning), "The request mentions %s, which points to %s.",
               quoted, intent_topic[best]);
  }
  free(norm);
}

/* The classification as LLM_CLASSIFY_FN's arguments (NULL when out of memory). */
static json_t *classification_args(const llm_classification_t *c) {
  json_t *kw = json_array();
  char buf[sizeof(c->keywords)], *save = NULL;
  memcpy(buf, c->keywords, sizeof(buf));
  for (char *k = strtok_r(buf, ",", &save); k && kw; k = strtok_r(NULL, ",", &save))
    if (*k) json_array_append_new(kw, json_string(k));
  return json_pack("{s:s,s:f,s:s,s:o}", "intent", llm_intent_name(c->intent), "confidence", c->confidence,
                   "reasoning", c->reasoning, "keywords", kw);
}

/* ---- composing answers ---- */

typedef struct composer {
  buf_t out;
} composer_t;

/* Append a string, cut to max bytes on a UTF-8 boundary. */
static void put_str(buf_t *b, const char *s, size_t max) {
  size_t n = strlen(s);
  if (n > max) {
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    buf_append(b, s, n);
    buf_append_str(b, "…");
    return;
  }
  buf_append(b, s, n);
}

static const char *intent_title(const char *intent) {
  static const struct { const char *intent, *title; } titles[] = {
      {"cost", "Cutting the cost of your LLM calls"},
      {"latency", "Making your LLM calls faster"},
      {"model_selection", "Choosing a model"},
      {"caching", "Caching repeated prompts"},
      {"usage_report", "Your LLM usage report"},
      {"data_upload_help", "Sending your workload data to agentd"},
      {"general", "What agentd can help with"},
  };
  for (size_t i = 0; intent && i < sizeof(titles) / sizeof(titles[0]); i++)
    if (strcmp(intent, titles[i].intent) == 0) return titles[i].title;
  return "Answer";
}

/* "data_helper" → "Data helper". */
static void put_agent_title(buf_t *b, const char *name) {
  for (size_t i = 0; name[i] && i < 64; i++) {
    char c = name[i] == '_' ? ' ' : name[i];
    if (i == 0) c = (char)toupper((unsigned char)c);
    buf_append(b, &c, 1);
  }
}

static void put_scalar(buf_t *b, const json_t *v) {
  if (json_is_string(v)) put_str(b, json_string_value(v), FACT_STR_MAX);
  else if (json_is_integer(v)) buf_appendf(b, "%lld", (long long)json_integer_value(v));
  else if (json_is_real(v)) buf_appendf(b, "%.6g", json_real_value(v));
  else if (json_is_true(v)) buf_append_str(b, "yes");
  else if (json_is_false(v)) buf_append_str(b, "no");
  else if (json_is_null(v)) buf_append_str(b, "n/a");
  else {
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (s) {
      buf_append_str(b, "`");
      put_str(b, s, FACT_STR_MAX);
      buf_append_str(b, "`");
      free(s);
    }
  }
}

/* One agent's result as a bullet list: its "summary" first, then the other
 * members (arrays of scalars joined, nested values compact). */
static void put_finding(buf_t *b, const char *name, const json_t *res) {
  buf_append_str(b, "\n### ");
  put_agent_title(b, name);
  buf_append_str(b, " agent\n\n");
  const char *summary = json_is_object(res) ? json_string_value(json_object_get(res, "summary")) : NULL;
  if (summary) {
    put_str(b, summary, FACT_STR_MAX);
    buf_append_str(b, "\n\n");
  }
  if (!json_is_object(res)) {
    buf_append_str(b, "- result: ");
    put_scalar(b, res);
    buf_append_str(b, "\n");
    return;
  }
  const char *key;
  const json_t *v;
  int shown = 0;
  json_object_foreach((json_t *)res, key, v) {
    if (strcmp(key, "summary") == 0) continue;
    if (++shown > 20) break;
    buf_append_str(b, "- ");
    put_str(b, key, 64);
    buf_append_str(b, ": ");
    if (json_is_array(v)) {
      size_t i;
      const json_t *e;
      if (json_array_size(v) == 0) buf_append_str(b, "none");
      json_array_foreach(v, i, e) {
        if (i >= 10) {
          buf_appendf(b, " (+%zu more)", json_array_size(v) - 10);
          break;
        }
        if (i) buf_append_str(b, ", ");
        put_scalar(b, e);
      }
    } else {
      put_scalar(b, v);
    }
    buf_append_str(b, "\n");
  }
}

static void put_string_list(buf_t *b, const json_t *arr) {
  size_t i;
  const json_t *e;
  json_array_foreach(arr, i, e) {
    if (!json_is_string(e)) continue;
    buf_append_str(b, "- ");
    put_str(b, json_string_value(e), FACT_STR_MAX);
    buf_append_str(b, "\n");
  }
}

static void put_joined(buf_t *b, const json_t *arr, const char *quote, const char *conj) {
  size_t i;
  const json_t *e;
  json_array_foreach(arr, i, e) {
    if (!json_is_string(e)) continue;
    if (i) buf_append_str(b, i + 1 == json_array_size(arr) ? conj : ", ");
    buf_append_str(b, quote);
    put_str(b, json_string_value(e), 64);
    buf_append_str(b, quote);
  }
}

/* "- Required fields: `a` and `b`" and the optional ones, from an upload guide object. */
static void put_upload_fields(buf_t *b, const json_t *guide) {
  static const char *const keys[][2] = {{"required_fields", "- Required fields: "},
                                        {"optional_fields", "- Optional fields: "}};
  for (size_t k = 0; k < 2; k++) {
    const json_t *arr = json_object_get(guide, keys[k][0]);
    if (json_array_size(arr) == 0) continue;
    buf_append_str(b, keys[k][1]);
    put_joined(b, arr, "`", " and ");
    buf_append_str(b, "\n");
  }
}

/* ---- the built-in agents' findings (src/agents, docs/agents.md "Agents") ----
 * Each renderer recognises its agent's result by its fields and returns 0
 * when the result is not of that shape (then put_finding lists it). */

static double num(const json_t *o, const char *key) { return json_number_value(json_object_get(o, key)); }
static const char *str(const json_t *o, const char *key) { return json_string_value(json_object_get(o, key)); }

static void put_money(buf_t *b, double v) {
  if (v != 0 && v < 0.01 && v > -0.01) buf_appendf(b, "$%.4f", v);
  else buf_appendf(b, "$%.2f", v);
}

/* One anomaly: its own description when it has one, else its fields. */
static void put_anomaly(buf_t *b, const json_t *a) {
  const char *d = str(a, "description");
  if (!d) d = str(a, "message");
  if (!d) d = str(a, "summary");
  if (d) {
    put_str(b, d, FACT_STR_MAX);
    return;
  }
  put_scalar(b, a);
}

static int render_data(buf_t *b, const json_t *res) {
  if (!json_is_boolean(json_object_get(res, "has_data")) || !json_is_array(json_object_get(res, "top_models")))
    return 0;
  buf_append_str(b, "\n### Your usage\n\n");
  if (json_is_false(json_object_get(res, "has_data"))) {
    const char *s = str(res, "summary");
    put_str(b, s ? s : "You have no LLM call records yet.", FACT_STR_MAX);
    buf_append_str(b, "\n");
    return 1;
  }
  buf_appendf(b, "- **%lld calls**, %lld tokens (%lld prompt, %lld completion), **", (long long)num(res, "calls"),
              (long long)num(res, "tokens"), (long long)num(res, "prompt_tokens"),
              (long long)num(res, "completion_tokens"));
  put_money(b, num(res, "cost_usd"));
  buf_append_str(b, "** in total");
  const json_t *period = json_object_get(res, "period");
  if (num(period, "days") > 0) buf_appendf(b, " over %.1f days", num(period, "days"));
  buf_append_str(b, "\n");
  const json_t *lat = json_object_get(res, "latency_ms");
  buf_appendf(b, "- Latency: p50 %.0f ms, p95 %.0f ms, p99 %.0f ms; error rate %.1f%%\n", num(lat, "p50"),
              num(lat, "p95"), num(lat, "p99"), 100.0 * num(res, "error_rate"));
  const json_t *top = json_object_get(res, "top_models");
  if (json_array_size(top) > 0) {
    buf_append_str(b, "\n**Top cost drivers**\n\n| Model | Provider | Calls | Cost | Share of cost |\n"
                      "|---|---|---:|---:|---:|\n");
    size_t i;
    const json_t *m;
    json_array_foreach(top, i, m) {
      buf_append_str(b, "| ");
      put_str(b, str(m, "model") ? str(m, "model") : "?", 64);
      buf_append_str(b, " | ");
      put_str(b, str(m, "provider") ? str(m, "provider") : "", 32);
      buf_appendf(b, " | %lld | ", (long long)num(m, "calls"));
      put_money(b, num(m, "cost_usd"));
      buf_appendf(b, " | %.0f%% |\n", 100.0 * num(m, "share_of_cost"));
    }
  }
  const json_t *feats = json_object_get(res, "top_features");
  if (json_array_size(feats) > 0) {
    buf_append_str(b, "\nBy feature: ");
    size_t i;
    const json_t *f;
    json_array_foreach(feats, i, f) {
      if (i) buf_append_str(b, ", ");
      const char *name = str(f, "feature");
      put_str(b, name && *name ? name : "(none)", 64);
      buf_append_str(b, " ");
      put_money(b, num(f, "cost_usd"));
    }
    buf_append_str(b, ".\n");
  }
  const json_t *anoms = json_object_get(res, "anomalies");
  if (json_array_size(anoms) > 0) {
    buf_append_str(b, "\n**Anomalies**\n\n");
    size_t i;
    const json_t *a;
    json_array_foreach(anoms, i, a) {
      buf_append_str(b, "- ");
      put_anomaly(b, a);
      buf_append_str(b, "\n");
    }
  } else {
    buf_append_str(b, "\nNo anomalies: no day stands out from the usual level.\n");
  }
  return 1;
}

static int render_optimization(buf_t *b, const json_t *res) {
  const json_t *recs = json_object_get(res, "recommendations");
  if (!json_is_array(recs) || !json_is_number(json_object_get(res, "total_monthly_saving_usd"))) return 0;
  buf_append_str(b, "\n### Recommendations\n\n");
  if (json_array_size(recs) == 0) {
    const char *s = str(res, "summary");
    put_str(b, s ? s : "No saving worth making was found.", FACT_STR_MAX);
    buf_append_str(b, "\n");
    return 1;
  }
  buf_append_str(b, "**Estimated saving: about ");
  put_money(b, num(res, "total_monthly_saving_usd"));
  buf_appendf(b, " per month** from %zu change%s.\n\n", json_array_size(recs), json_array_size(recs) == 1 ? "" : "s");
  size_t i;
  const json_t *r;
  json_array_foreach(recs, i, r) {
    buf_appendf(b, "%zu. **", i + 1);
    put_str(b, str(r, "title") ? str(r, "title") : "?", 200);
    buf_append_str(b, "** (`");
    put_str(b, str(r, "kind") ? str(r, "kind") : "other", 32);
    buf_append_str(b, "`)");
    double saving = num(r, "monthly_saving_usd");
    if (saving > 0) {
      buf_append_str(b, ": saves about ");
      put_money(b, saving);
      buf_append_str(b, " per month");
    }
    buf_append_str(b, ".");
    const char *d = str(r, "detail");
    if (d && *d) {
      buf_append_str(b, " ");
      put_str(b, d, FACT_STR_MAX);
    }
    buf_append_str(b, "\n");
  }
  return 1;
}

static int render_actions(buf_t *b, const json_t *res) {
  const json_t *plan = json_object_get(res, "plan");
  if (!json_is_array(plan)) return 0;
  buf_append_str(b, "\n### Plan\n\n");
  size_t i;
  const json_t *s;
  json_array_foreach(plan, i, s) {
    buf_appendf(b, "%zu. ", i + 1);
    put_str(b, str(s, "action") ? str(s, "action") : "", FACT_STR_MAX);
    const char *e = str(s, "expected_effect");
    if (e && *e) {
      buf_append_str(b, " *Expected effect:* ");
      put_str(b, e, FACT_STR_MAX);
    }
    buf_append_str(b, "\n");
  }
  return 1;
}

static int render_data_helper(buf_t *b, const json_t *res) {
  if (!json_is_string(json_object_get(res, "example_jsonl")) || !json_is_string(json_object_get(res, "endpoint")))
    return 0;
  buf_append_str(b, "\n### What data to upload\n\n");
  const char *s = str(res, "summary");
  if (s) {
    put_str(b, s, FACT_STR_MAX);
    buf_append_str(b, "\n\n");
  }
  buf_append_str(b, "- Endpoint: `");
  put_str(b, str(res, "endpoint"), 64);
  buf_append_str(b, "`, one record per LLM call\n");
  const json_t *formats = json_object_get(res, "formats");
  if (json_array_size(formats) > 0) {
    buf_append_str(b, "- Formats: ");
    size_t i;
    const json_t *f;
    json_array_foreach(formats, i, f) {
      if (i) buf_append_str(b, ", ");
      if (json_is_string(f)) {
        put_str(b, json_string_value(f), 64);
        continue;
      }
      put_str(b, str(f, "name") ? str(f, "name") : "?", 32);
      buf_append_str(b, " (`");
      put_str(b, str(f, "content_type") ? str(f, "content_type") : "", 64);
      buf_append_str(b, "`)");
    }
    buf_append_str(b, "\n");
  }
  put_upload_fields(b, res);
  put_string_list(b, json_object_get(res, "tips"));
  buf_append_str(b, "\nExample (JSONL, one line per call):\n\n```json\n");
  put_str(b, str(res, "example_jsonl"), 2000);
  if (b->len && b->base[b->len - 1] != '\n') buf_append_str(b, "\n");
  buf_append_str(b, "```\n");
  const char *curl = str(res, "curl_example");
  if (curl) {
    buf_append_str(b, "\n```sh\n");
    put_str(b, curl, FACT_STR_MAX);
    buf_append_str(b, "\n```\n");
  }
  return 1;
}

/* The findings, the built-in agents' in reading order (savings first), then the rest. */
static void put_findings(buf_t *b, const json_t *findings) {
  static const struct {
    const char *name;
    int (*render)(buf_t *b, const json_t *res);
  } known[] = {{"optimization", render_optimization},
               {"actions", render_actions},
               {"data", render_data},
               {"data_helper", render_data_helper}};
  size_t nk = sizeof(known) / sizeof(known[0]);
  int done[sizeof(known) / sizeof(known[0])] = {0};
  for (size_t k = 0; k < nk; k++) {
    const json_t *res = json_object_get(findings, known[k].name);
    if (res && json_is_object(res)) done[k] = known[k].render(b, res);
  }
  const char *name;
  const json_t *res;
  json_object_foreach((json_t *)findings, name, res) {
    size_t k = 0;
    while (k < nk && strcmp(known[k].name, name) != 0) k++;
    if (k < nk && done[k]) continue;
    put_finding(b, name, res);
  }
}

/* Facts (written by agents/reporting.c):
 *   {"request", "intent"?, "confidence"?, "reasoning"?, "keywords"?:[…],
 *    "findings"?:{agent: result}, "unavailable_agents"?:[…],
 *    "guidance"?:{"capabilities":[…], "upload":{"endpoint","formats":[…],
 *                 "required_fields":[…], "optional_fields":[…], "example",
 *                 "notes":[…]}}} */
static void render(buf_t *b, const json_t *facts) {
  const char *intent = json_string_value(json_object_get(facts, "intent"));
  buf_appendf(b, "## %s\n\n", intent_title(intent));

  if (intent) {
    const json_t *conf = json_object_get(facts, "confidence");
    buf_appendf(b, "**What triage found:** this is a **%s** request", intent);
    if (json_is_number(conf)) buf_appendf(b, " (confidence %.2f)", json_number_value(conf));
    buf_append_str(b, ".");
    const char *why = json_string_value(json_object_get(facts, "reasoning"));
    if (why) {
      buf_append_str(b, " ");
      put_str(b, why, FACT_STR_MAX);
    }
    buf_append_str(b, "\n");
  }

  const json_t *findings = json_object_get(facts, "findings");
  size_t nfind = json_is_object(findings) ? json_object_size(findings) : 0;
  if (nfind) put_findings(b, findings);

  const json_t *unavailable = json_object_get(facts, "unavailable_agents");
  if (!nfind && json_array_size(unavailable) > 0) {
    buf_append_str(b, "\nNo analysis of your call records ran for this request: the ");
    put_joined(b, unavailable, "`", " and ");
    buf_append_str(b, json_array_size(unavailable) > 1 ? " agents that would do it are" : " agent that would do it is");
    buf_append_str(b, " not enabled in this build of agentd.\n");
  }

  const json_t *guidance = json_object_get(facts, "guidance");
  if (json_is_object(guidance)) {
    const json_t *caps = json_object_get(guidance, "capabilities");
    if (json_array_size(caps) > 0) {
      buf_append_str(b, "\n### What agentd can do for this request\n\n");
      put_string_list(b, caps);
    }
    const json_t *up = json_object_get(guidance, "upload");
    if (json_is_object(up)) {
      const char *endpoint = json_string_value(json_object_get(up, "endpoint"));
      buf_append_str(b, "\n### What data to upload\n\n");
      buf_appendf(b, "Send your LLM call records to `%s`", endpoint ? endpoint : "POST /api/workloads");
      const json_t *formats = json_object_get(up, "formats");
      if (json_array_size(formats) > 0) {
        buf_append_str(b, " as ");
        put_joined(b, formats, "", " or ");
      }
      buf_append_str(b, ", one record per LLM call.\n\n");
      put_upload_fields(b, up);
      put_string_list(b, json_object_get(up, "notes"));
      const char *example = json_string_value(json_object_get(up, "example"));
      if (example) {
        buf_append_str(b, "\nExample (JSONL, one line per call):\n\n```json\n");
        put_str(b, example, 1000);
        buf_append_str(b, "\n```\n");
      }
    }
  }
}

/* ---- the chat vtable ---- */

static const llm_message_t *last_user(const llm_request_t *req) {
  for (size_t i = req->n_messages; i > 0; i--)
    if (req->messages[i - 1].role == LLM_ROLE_USER) return &req->messages[i - 1];
  return NULL;
}

static int offers(const llm_request_t *req, const char *name) {
  for (size_t i = 0; i < req->n_tools; i++)
    if (strcmp(req->tools[i].name, name) == 0) return 1;
  return 0;
}

/* Answer with a call of LLM_CLASSIFY_FN.  Its id is deterministic and unique
 * within the conversation (one call per turn). */
static int call_classify(const llm_request_t *req, const char *text, const llm_stream_cb_t *cb, void *ud,
                         llm_response_t *out) {
  llm_classification_t c;
  classify_text(text, &c);
  json_t *args = classification_args(&c);
  char id[48];
  snprintf(id, sizeof(id), "call_builtin_%zu", req->n_messages);
  if (!args || llm_response_add_tool_call(out, id, LLM_CLASSIFY_FN, args, NULL) != 0)
    return llm_response_fail(out, LLM_ERR_INTERNAL, "out of memory");
  if (cb->on_tool_call && cb->on_tool_call(ud, &out->tool_calls[0]) != 0) {
    out->finish = LLM_FINISH_CANCELLED;
    return AGD_ECANCELLED;
  }
  out->finish = LLM_FINISH_TOOL_CALLS;
  return 0;
}

/* The facts to write from: the message itself when it is a JSON object (the
 * agents' facts), else the classification of its text. */
static json_t *facts_of(const llm_message_t *u) {
  if (json_is_object(u->content_json)) return json_incref((json_t *)u->content_json);
  char *owned = u->content_json ? llm_message_text(u) : NULL;
  const char *text = owned ? owned : u->content ? u->content : "";
  json_t *facts = json_loads(text, JSON_ALLOW_NUL, NULL);
  if (json_is_object(facts)) {
    free(owned);
    return facts;
  }
  json_decref(facts);
  llm_classification_t c;
  classify_text(text, &c);
  free(owned);
  return json_pack("{s:s,s:f,s:s}", "intent", llm_intent_name(c.intent), "confidence", c.confidence, "reasoning",
                   c.reasoning);
}

/* Stream text[0..len) (owned; becomes out->text, cut where the stream stopped). */
static int stream_text(const llm_request_t *req, char *text, size_t len, const llm_stream_cb_t *cb, void *ud,
                       llm_response_t *out) {
  out->text = text;
  out->finish = LLM_FINISH_STOP;
  if (req->max_output_tokens > 0 && len > (size_t)req->max_output_tokens * 4) {
    len = (size_t)req->max_output_tokens * 4;
    while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80) len--;
    text[len] = '\0';
    out->finish = LLM_FINISH_LENGTH;
  }
  for (size_t off = 0; off < len;) {
    int stop = llm_request_cancelled(req);
    if (!stop && req->deadline > 0 && time_now() >= req->deadline) {
      text[off] = '\0';
      return llm_response_fail(out, LLM_ERR_TIMEOUT, "the deadline passed while the answer was streamed");
    }
    size_t d = llm_next_delta(text + off, len - off);
    if (!stop && cb->on_text_delta) stop = cb->on_text_delta(ud, text + off, d) != 0;
    if (stop) {
      text[off] = '\0'; /* what the caller received */
      out->finish = LLM_FINISH_CANCELLED;
      return AGD_ECANCELLED;
    }
    off += d;
  }
  return 0;
}

static int builtin_chat(llm_t *l, const llm_request_t *req, const llm_stream_cb_t *cb, void *ud,
                        llm_response_t *out) {
  (void)l;
  const llm_message_t *u = last_user(req);
  if (!u)
    return llm_response_fail(out, LLM_ERR_BAD_REQUEST, "the builtin model answers a user message; there is none");
  int wants_fn = req->tool_choice == LLM_TOOL_CHOICE_REQUIRED || req->tool_choice == LLM_TOOL_CHOICE_FUNCTION;
  int may_classify = req->tool_choice != LLM_TOOL_CHOICE_NONE && offers(req, LLM_CLASSIFY_FN) &&
                     (req->tool_choice != LLM_TOOL_CHOICE_FUNCTION ||
                      strcmp(req->tool_choice_name, LLM_CLASSIFY_FN) == 0);
  /* Like a model: classify a fresh user turn; once the call is answered, write. */
  int user_turn = u == &req->messages[req->n_messages - 1];
  if (may_classify && (wants_fn || user_turn)) {
    char *owned = u->content_json ? llm_message_text(u) : NULL;
    int rc = call_classify(req, owned ? owned : u->content ? u->content : "", cb, ud, out);
    free(owned);
    return rc;
  }
  if (wants_fn)
    return llm_response_fail(out, LLM_ERR_BAD_REQUEST, "the builtin model can only call %s", LLM_CLASSIFY_FN);

  json_t *facts = facts_of(u);
  if (!facts) return llm_response_fail(out, LLM_ERR_INTERNAL, "out of memory");
  buf_t b;
  buf_init(&b, 0);
  render(&b, facts);
  json_decref(facts);
  size_t len;
  char *text = buf_steal(&b, &len);
  if (!text) {
    text = strdup("");
    len = 0;
    if (!text) abort();
  }
  return stream_text(req, text, len, cb, ud, out);
}

static const llm_provider_t builtin_provider = {
    .name = "builtin",
    .chat = builtin_chat,
    .destroy = NULL, /* a static instance */
};

static llm_t builtin_instance = {.provider = &builtin_provider};

llm_t *llm_builtin_new(void) { return &builtin_instance; }
