/* mcp/rpc.c — JSON-RPC 2.0 framing for the MCP client (client_int.h).
 *
 * The loop reads every line a stdio server writes; most are answers to
 * tools/call whose result may be up to 1 MiB.  Parsing those on the loop
 * would cost it milliseconds each, so the loop only scans the top level of a
 * line (is it an object, does it have "method", what is its integer "id") and
 * hands the text of an answer to the thread that waits for it, which parses
 * it (mcp_rpc_tool_result).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build_info.h"
#include "mcp/client_int.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/xalloc.h"

static size_t skip_ws(const char *p, size_t n, size_t i) {
  while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')) i++;
  return i;
}

/* Past a string starting at p[i] == '"': the index after its closing quote, or n. */
static size_t skip_string(const char *p, size_t n, size_t i) {
  for (i++; i < n; i++) {
    if (p[i] == '\\') i++;
    else if (p[i] == '"') return i + 1;
  }
  return n;
}

/* Past one value starting at p[i]: nested containers are counted, strings skipped. */
static size_t skip_value(const char *p, size_t n, size_t i) {
  if (i >= n) return n;
  if (p[i] == '"') return skip_string(p, n, i);
  if (p[i] == '{' || p[i] == '[') {
    size_t depth = 0;
    for (; i < n; i++) {
      char c = p[i];
      if (c == '"') {
        i = skip_string(p, n, i) - 1;
      } else if (c == '{' || c == '[') {
        depth++;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
    }
    return n;
  }
  while (i < n && p[i] != ',' && p[i] != '}' && p[i] != ']' && p[i] != ' ' && p[i] != '\t' && p[i] != '\r' &&
         p[i] != '\n')
    i++;
  return i;
}

static int parse_int(const char *p, size_t n, long long *out) {
  char tmp[24];
  size_t k = 0;
  if (k < n && p[k] == '-') k++;
  size_t d0 = k;
  while (k < n && isdigit((unsigned char)p[k])) k++;
  if (k == d0 || k - d0 > 18) return -1;
  if (k < n && (p[k] == '.' || p[k] == 'e' || p[k] == 'E')) return -1;
  memcpy(tmp, p, k);
  tmp[k] = '\0';
  *out = strtoll(tmp, NULL, 10);
  return 0;
}

void mcp_rpc_scan(const char *p, size_t n, mcp_scan_t *out) {
  memset(out, 0, sizeof(*out));
  size_t i = skip_ws(p, n, 0);
  if (i >= n || p[i] != '{') return;
  out->is_object = 1;
  i = skip_ws(p, n, i + 1);
  if (i < n && p[i] == '}') {
    out->complete = 1;
    return;
  }
  while (i < n) {
    if (p[i] != '"') return;
    size_t k0 = i + 1, k1 = skip_string(p, n, i);
    if (k1 >= n) return;
    size_t klen = k1 - 1 - k0;
    i = skip_ws(p, n, k1);
    if (i >= n || p[i] != ':') return;
    i = skip_ws(p, n, i + 1);
    if (i >= n) return;
    if (klen == 6 && memcmp(p + k0, "method", 6) == 0) out->has_method = 1;
    if (klen == 2 && memcmp(p + k0, "id", 2) == 0 && parse_int(p + i, n - i, &out->id) == 0) out->has_id = 1;
    i = skip_ws(p, n, skip_value(p, n, i));
    if (i >= n) return;
    if (p[i] == '}') {
      out->complete = 1;
      return;
    }
    if (p[i] != ',') return;
    i = skip_ws(p, n, i + 1);
  }
}

int mcp_rpc_tail_id(const char *p, size_t n, long long *id) {
  size_t i = n;
  while (i > 0 && isspace((unsigned char)p[i - 1])) i--;
  if (i == 0 || p[i - 1] != '}') return -1;
  i--;
  while (i > 0 && isspace((unsigned char)p[i - 1])) i--;
  size_t end = i;
  while (i > 0 && isdigit((unsigned char)p[i - 1])) i--;
  if (i == end) return -1;
  if (i > 0 && p[i - 1] == '-') i--;
  size_t start = i;
  while (i > 0 && isspace((unsigned char)p[i - 1])) i--;
  if (i == 0 || p[i - 1] != ':') return -1;
  i--;
  while (i > 0 && isspace((unsigned char)p[i - 1])) i--;
  if (i < 4 || memcmp(p + i - 4, "\"id\"", 4) != 0) return -1;
  i -= 4;
  while (i > 0 && isspace((unsigned char)p[i - 1])) i--;
  if (i == 0 || (p[i - 1] != ',' && p[i - 1] != '{')) return -1;
  return parse_int(p + start, end - start, id);
}

int mcp_rpc_version_ok(const char *v) {
  return v && (strcmp(v, "2025-11-25") == 0 || strcmp(v, "2025-06-18") == 0 || strcmp(v, "2025-03-26") == 0);
}

static char *line_of(buf_t *b, size_t *len) {
  buf_append(b, "\n", 1);
  size_t n = 0;
  char *s = buf_steal(b, &n);
  if (len) *len = n;
  return s;
}

char *mcp_rpc_request(long long id, const char *method, const char *params, size_t *len) {
  buf_t b;
  buf_init(&b, 0);
  buf_appendf(&b, "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"method\":\"%s\"", id, method);
  if (params) buf_appendf(&b, ",\"params\":%s", params);
  buf_append(&b, "}", 1);
  return line_of(&b, len);
}

char *mcp_rpc_notification(const char *method, const char *params, size_t *len) {
  buf_t b;
  buf_init(&b, 0);
  buf_appendf(&b, "{\"jsonrpc\":\"2.0\",\"method\":\"%s\"", method);
  if (params) buf_appendf(&b, ",\"params\":%s", params);
  buf_append(&b, "}", 1);
  return line_of(&b, len);
}

char *mcp_rpc_initialize_params(void) {
  json_t *p = json_pack("{s:s,s:{},s:{s:s,s:s}}", "protocolVersion", MCP_PROTOCOL_VERSION, "capabilities",
                        "clientInfo", "name", "agentd", "version", AGENTD_VERSION);
  char *s = json_dumps(p, JSON_COMPACT);
  json_decref(p);
  if (!s) abort();
  return s;
}

static json_t *err_result(const char *fmt, const char *server, const char *tool, const char *what) {
  char msg[512];
  snprintf(msg, sizeof(msg), fmt, server, tool, what ? what : "");
  return json_pack("{s:s}", "error", msg);
}

/* The text items of a content array joined with "\n"; *other = 1 when some item is not text. */
static char *join_text(const json_t *content, int *other) {
  buf_t b;
  buf_init(&b, 0);
  size_t i;
  json_t *it;
  *other = 0;
  json_array_foreach(content, i, it) {
    const char *type = json_string_value(json_object_get(it, "type"));
    json_t *text = json_object_get(it, "text");
    if (type && strcmp(type, "text") == 0 && json_is_string(text)) {
      if (b.len) buf_append(&b, "\n", 1);
      buf_append(&b, json_string_value(text), json_string_length(text));
    } else {
      *other = 1;
    }
  }
  buf_append(&b, "", 1); /* the NUL */
  char *s = buf_steal(&b, NULL);
  return s;
}

int mcp_rpc_tool_result(const char *raw, size_t n, const char *server, const char *tool, json_t **result) {
  json_error_t jerr;
  json_t *msg = json_loadb(raw, n, 0, &jerr);
  *result = NULL;
  if (!json_is_object(msg)) {
    json_decref(msg);
    *result = err_result("mcp server '%s' answered tools/call of '%s' with invalid JSON%s", server, tool, NULL);
    return AGD_EUNAVAILABLE;
  }
  json_t *err = json_object_get(msg, "error");
  json_t *res = json_object_get(msg, "result");
  int rc = 0;
  if (json_is_object(err)) {
    const char *m = json_string_value(json_object_get(err, "message"));
    json_int_t code = json_integer_value(json_object_get(err, "code"));
    char what[300];
    snprintf(what, sizeof(what), "%.200s (code %lld)", m ? m : "error", (long long)code);
    *result = err_result("mcp server '%s' refused tools/call of '%s': %s", server, tool, what);
    rc = code == -32602 ? AGD_EVALIDATION : AGD_EUNAVAILABLE;
  } else if (!json_is_object(res)) {
    *result = err_result("mcp server '%s' answered tools/call of '%s' without a result%s", server, tool, NULL);
    rc = AGD_EUNAVAILABLE;
  } else {
    json_t *content = json_object_get(res, "content");
    json_t *structured = json_object_get(res, "structuredContent");
    int other = 0;
    char *text = json_is_array(content) ? join_text(content, &other) : xstrdup("");
    if (json_is_true(json_object_get(res, "isError"))) {
      *result = json_pack("{s:s}", "error", *text ? text : "the tool reported an error");
      rc = AGD_EVALIDATION;
    } else if (structured && !json_is_null(structured)) {
      *result = json_incref(structured);
    } else {
      *result = json_pack("{s:s}", "text", text);
      if (other) json_object_set(*result, "content", content);
    }
    free(text);
  }
  json_decref(msg);
  if (!*result) { /* json_pack refuses text that is not UTF-8 */
    *result = json_pack("{s:s}", "error", "the answer's text is not valid UTF-8");
    rc = AGD_EUNAVAILABLE;
  }
  return rc;
}
