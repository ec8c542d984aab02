/* tools/registry.c — the tool registry and argument validation (tool.h, SPEC §7).
 *
 * A fixed table filled at start-up (main thread); read-only afterwards, so
 * lookups and calls need no lock.  Schemas are parsed once at registration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/tool.h"
#include "util/err.h"
#include "util/log.h"

#define TOOLS_MAX 256

static const tool_t *tools[TOOLS_MAX + 1];
static json_t *schemas[TOOLS_MAX];
static size_t n_tools;

void tool_register(const tool_t *t) {
  if (!t || !t->name) return;
  for (size_t i = 0; i < n_tools; i++)
    if (strcmp(tools[i]->name, t->name) == 0) {
      log_warn("tool '%s' registered twice; keeping the first", t->name);
      return;
    }
  if (n_tools >= TOOLS_MAX) {
    log_warn("tool registry full; '%s' dropped", t->name);
    return;
  }
  json_error_t jerr;
  json_t *schema = json_loads(t->input_schema_json ? t->input_schema_json : "{\"type\":\"object\"}", 0, &jerr);
  if (!json_is_object(schema)) {
    log_warn("tool '%s': bad input schema (%s); using an empty one", t->name, jerr.text);
    json_decref(schema);
    schema = json_pack("{s:s}", "type", "object");
  }
  schemas[n_tools] = schema;
  tools[n_tools++] = t;
  tools[n_tools] = NULL;
}

const tool_t *tool_find(const char *name) {
  if (!name) return NULL;
  for (size_t i = 0; i < n_tools; i++)
    if (strcmp(tools[i]->name, name) == 0) return tools[i];
  return NULL;
}

const tool_t *const *tool_all(size_t *n) {
  if (n) *n = n_tools;
  return tools;
}

json_t *tool_schema(const tool_t *t) {
  for (size_t i = 0; i < n_tools; i++)
    if (tools[i] == t) return schemas[i];
  return NULL;
}

void tool_registry_reset(void) {
  for (size_t i = 0; i < n_tools; i++) {
    json_decref(schemas[i]);
    schemas[i] = NULL;
    tools[i] = NULL;
  }
  n_tools = 0;
}

int tool_call_cancelled(const tool_call_ctx_t *ctx) {
  return ctx && ctx->cancelled && ctx->cancelled(ctx->cancel_arg);
}

/* ---- validation ---- */

static size_t utf8_chars(const char *s) {
  size_t n = 0;
  for (; *s; s++)
    if (((unsigned char)*s & 0xC0) != 0x80) n++;
  return n;
}

static int type_ok(const char *type, const json_t *v) {
  if (!type) return 1;
  if (strcmp(type, "string") == 0) return json_is_string(v);
  if (strcmp(type, "integer") == 0) return json_is_integer(v);
  if (strcmp(type, "number") == 0) return json_is_number(v);
  if (strcmp(type, "boolean") == 0) return json_is_boolean(v);
  if (strcmp(type, "array") == 0) return json_is_array(v);
  if (strcmp(type, "object") == 0) return json_is_object(v);
  if (strcmp(type, "null") == 0) return json_is_null(v);
  return 1; /* unknown type keyword: not ours to refuse */
}

static const char *article(const char *type) {
  return (type[0] == 'a' || type[0] == 'i' || type[0] == 'o') ? "an" : "a";
}

/* Check one value against its property schema; 0 or AGD_EVALIDATION with msg. */
static int check_value(const json_t *ps, const json_t *v, char *msg, size_t cap) {
  if (!json_is_object(ps)) return 0;
  const char *type = json_string_value(json_object_get(ps, "type"));
  if (!type_ok(type, v)) {
    snprintf(msg, cap, "must be %s %s", article(type), type);
    return AGD_EVALIDATION;
  }
  const json_t *en = json_object_get(ps, "enum");
  if (json_is_array(en)) {
    size_t i;
    const json_t *e;
    int found = 0;
    json_array_foreach(en, i, e) if (json_equal((json_t *)e, (json_t *)v)) found = 1;
    if (!found) {
      size_t o = (size_t)snprintf(msg, cap, "must be one of:");
      json_array_foreach(en, i, e) {
        if (o >= cap) break;
        char *s = json_dumps(e, JSON_ENCODE_ANY | JSON_COMPACT);
        o += (size_t)snprintf(msg + o, cap - o, "%s %s", i ? "," : "", s ? s : "?");
        free(s);
      }
      return AGD_EVALIDATION;
    }
  }
  if (json_is_number(v)) {
    double x = json_number_value(v);
    const json_t *mn = json_object_get(ps, "minimum"), *mx = json_object_get(ps, "maximum");
    if (json_is_number(mn) && x < json_number_value(mn)) {
      snprintf(msg, cap, "must be >= %g", json_number_value(mn));
      return AGD_EVALIDATION;
    }
    if (json_is_number(mx) && x > json_number_value(mx)) {
      snprintf(msg, cap, "must be <= %g", json_number_value(mx));
      return AGD_EVALIDATION;
    }
  }
  if (json_is_string(v)) {
    size_t chars = utf8_chars(json_string_value(v));
    const json_t *mn = json_object_get(ps, "minLength"), *mx = json_object_get(ps, "maxLength");
    if (json_is_integer(mn) && (long long)chars < json_integer_value(mn)) {
      if (json_integer_value(mn) == 1) snprintf(msg, cap, "must not be empty");
      else snprintf(msg, cap, "must be at least %lld characters", (long long)json_integer_value(mn));
      return AGD_EVALIDATION;
    }
    if (json_is_integer(mx) && (long long)chars > json_integer_value(mx)) {
      snprintf(msg, cap, "must be at most %lld characters", (long long)json_integer_value(mx));
      return AGD_EVALIDATION;
    }
  }
  if (json_is_array(v)) {
    const json_t *items = json_object_get(ps, "items");
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e) {
      char sub[200];
      if (check_value(items, e, sub, sizeof(sub)) != 0) {
        snprintf(msg, cap, "item %zu %s", i, sub);
        return AGD_EVALIDATION;
      }
    }
  }
  return 0;
}

int tool_validate(const tool_t *t, const json_t *args, const char **field, char *msgbuf, size_t msgcap) {
  static const char args_field[] = "arguments";
  const char *dummy_field;
  char dummy_msg[8];
  if (!field) field = &dummy_field;
  if (!msgbuf || msgcap == 0) {
    msgbuf = dummy_msg;
    msgcap = sizeof(dummy_msg);
  }
  *field = NULL;
  msgbuf[0] = '\0';
  json_t *schema = tool_schema(t);
  if (!json_is_object(args)) {
    *field = args_field;
    snprintf(msgbuf, msgcap, "must be an object");
    return AGD_EVALIDATION;
  }
  if (!schema) return 0;
  const json_t *props = json_object_get(schema, "properties");
  const json_t *req = json_object_get(schema, "required");
  size_t i;
  const json_t *r;
  json_array_foreach(req, i, r) {
    const char *name = json_string_value(r);
    if (name && !json_object_get(args, name)) {
      *field = name;
      snprintf(msgbuf, msgcap, "is required");
      return AGD_EVALIDATION;
    }
  }
  const json_t *addl = json_object_get(schema, "additionalProperties");
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)args, key, v) {
    const json_t *ps = json_is_object(props) ? json_object_get(props, key) : NULL;
    if (!ps) {
      if (json_is_false(addl)) {
        *field = key;
        snprintf(msgbuf, msgcap, "is not a known argument");
        return AGD_EVALIDATION;
      }
      continue;
    }
    if (check_value(ps, v, msgbuf, msgcap) != 0) {
      /* Point into the schema's copy of the key: it outlives args. */
      *field = json_object_iter_key(json_object_iter_at((json_t *)props, key));
      return AGD_EVALIDATION;
    }
  }
  return 0;
}

int tool_call(const tool_t *t, const tool_call_ctx_t *ctx, const json_t *args, json_t **result) {
  *result = NULL;
  const char *field;
  char msg[256];
  if (tool_validate(t, args, &field, msg, sizeof(msg)) != 0) {
    *result = json_pack("{s:s++}", "error", field ? field : "arguments", " ", msg);
    return AGD_EVALIDATION;
  }
  if (tool_call_cancelled(ctx)) {
    *result = json_pack("{s:s}", "error", "cancelled");
    return AGD_ECANCELLED;
  }
  int rc = t->call(ctx, args, result);
  if (rc == 0 && !*result) *result = json_object();
  return rc;
}
