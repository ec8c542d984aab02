/* api/ui_api.c — serves the embedded web UI (see ui_api.h, docs/ui.md). */
#include "api/ui_api.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api/app.h"
#include "api/router.h"
#include "util/err.h"

#define UI_MAX_FILES 32

/* ETags are computed once, on first use (loop thread only): FNV-1a 64 of the bytes. */
static char etags[UI_MAX_FILES][24];

static const char *content_type_of(const char *name) {
  const char *dot = strrchr(name, '.');
  if (!dot) return "application/octet-stream";
  if (strcmp(dot, ".html") == 0) return "text/html; charset=utf-8";
  if (strcmp(dot, ".js") == 0) return "text/javascript; charset=utf-8";
  if (strcmp(dot, ".css") == 0) return "text/css; charset=utf-8";
  if (strcmp(dot, ".svg") == 0) return "image/svg+xml";
  if (strcmp(dot, ".json") == 0) return "application/json";
  return "application/octet-stream";
}

static int find_file(const char *name) {
  for (int i = 0; web_files[i].name && i < UI_MAX_FILES; i++)
    if (strcmp(web_files[i].name, name) == 0) return i;
  return -1;
}

static const char *etag_of(int i) {
  if (!etags[i][0]) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t k = 0; k < web_files[i].len; k++) {
      h ^= (unsigned char)web_files[i].data[k];
      h *= 1099511628211ULL;
    }
    snprintf(etags[i], sizeof(etags[i]), "\"%016llx\"", (unsigned long long)h);
  }
  return etags[i];
}

/* Does If-None-Match list our tag (or "*")?  The header is a comma list; a
 * weak W/ prefix still matches for GET (RFC 9110 §13.1.2 weak comparison). */
static int not_modified(http_req_t *r, const char *tag) {
  slice_t v;
  if (!http_req_header(r, "if-none-match", &v) || v.n > 1024) return 0;
  size_t tl = strlen(tag);
  for (size_t k = 0; k < v.n; k++) {
    if (v.p[k] == '*') return 1;
    if (v.n - k >= tl && memcmp(v.p + k, tag, tl) == 0) return 1;
  }
  return 0;
}

static void serve(http_req_t *r, const char *name) {
  int i = find_file(name);
  if (i < 0) {
    http_respond_error(r, AGD_ENOT_FOUND, "no such asset", NULL);
    return;
  }
  const char *tag = etag_of(i);
  http_resp_header(r, "ETag", tag);
  /* Asset names are not content-hashed: revalidate every time (a 304 is cheap). */
  http_resp_header(r, "Cache-Control", "no-cache");
  if (not_modified(r, tag)) {
    http_respond(r, 304, NULL, NULL, 0);
    return;
  }
  http_respond(r, 200, content_type_of(name), web_files[i].data, web_files[i].len);
}

static void h_index(http_req_t *r, route_ctx_t *ctx) { serve(r, "index.html"); }

static void h_asset(http_req_t *r, route_ctx_t *ctx) {
  const char *name = route_param(ctx, "name");
  serve(r, name ? name : "");
}

void api_ui_register(void) {
  unsigned pub = ROUTE_PUBLIC | ROUTE_NO_RATELIMIT;
  router_add("/", HTTP_M_GET, h_index, pub);
  router_add("/assets/{name}", HTTP_M_GET, h_asset, pub);
}
