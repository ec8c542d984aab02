/* api/agents_api.h — the agent and tool listings and direct tool calls over
 * REST (SPEC §4 GET /api/agents, SPEC §7 /api/tools*).  Loop thread; tool
 * calls run on the worker pool (api/job.h).
 */
#ifndef AGD_API_AGENTS_API_H
#define AGD_API_AGENTS_API_H

/* Register GET /api/agents, GET /api/tools(/list), POST /api/tools/execute and
 * POST /api/execute/tool (main thread, before the loop runs). */
void api_agents_register(void);

#endif
