/* api/approvals_api.h — the user's decisions on a model's tool calls (SPEC §11,
 * human in the loop): POST/GET /api/runs/{id}/approvals and the WebSocket frame
 * approve_tool.  Loop thread; the store work goes to the worker pool. */
#ifndef AGD_API_APPROVALS_API_H
#define AGD_API_APPROVALS_API_H

/* Register the routes and the approve_tool frame (api/ws_frames).  Main thread, at start. */
void api_approvals_register(void);

#endif
