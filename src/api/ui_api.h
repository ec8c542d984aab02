/* api/ui_api.h — the web UI (SPEC §14): the files of src/web/, embedded into
 * the binary at build time (scripts/embed.py → web_files[]), served at `/`
 * (index.html) and `/assets/<name>` with their Content-Type, a strong ETag
 * (If-None-Match → 304) and Cache-Control: no-cache.  The CSP comes from
 * net/http.c for every text/html answer.  Loop thread. */
#ifndef AGD_API_UI_API_H
#define AGD_API_UI_API_H

#include "store/embedded.h"

/* The embedded files (generated, ends with a {0} entry). */
extern const embedded_file_t web_files[];

void api_ui_register(void);

#endif
