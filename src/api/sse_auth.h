/* api/sse_auth.h — SSE streams end with their token (SPEC §2/§4; issue 13,
 * defect 10), as WebSockets do (closed 1008).
 *
 * A stream opened with an access token is watched: once the token is revoked
 * (its jti or its login session's family: logout, refresh-token reuse, or any
 * revocation the revocation backend reports) or expired (exp + leeway, the
 * rule of core/auth's auth_token_ended), the stream gets one final frame
 *   event: error
 *   data: {"code":"AUTH_INVALID","error_code":"AUTH_INVALID","message":"token revoked"|"token expired"}
 * and ends (the chunked body is terminated, the connection closed).  Logout
 * ends the streams of its token at once (api_sse_auth_revoke); everything else
 * is found by a sweep once a second.
 * Loop thread only.  Holds connection ids, never pointers: a stream that went
 * away is simply forgotten at the next sweep.
 */
#ifndef AGD_API_SSE_AUTH_H
#define AGD_API_SSE_AUTH_H

#include <uv.h>

#include "api/router.h"
#include "net/net.h"

/* Watch the SSE stream about to start on r's connection, authenticated by
 * ctx's access token (the router's hook filled ctx).  Call right before
 * sse_start(r).  A request without a token identity is not watched. */
void api_sse_auth_watch(http_req_t *r, const route_ctx_t *ctx);

/* End now the watched streams of token jti, or of the login session family
 * (either may be NULL or ""). */
void api_sse_auth_revoke(const char *jti, const char *family);

/* The sweep timer (unref'd, runs only while a stream is watched) and the table.
 * start: before the loop serves; stop: at shutdown (frees everything). */
void api_sse_auth_start(uv_loop_t *loop);
void api_sse_auth_stop(void);

#endif
