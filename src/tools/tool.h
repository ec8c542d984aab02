/* tools/tool.h — the tool registry (SPEC §7): named tools with a JSON schema
 * for their arguments, callable by agents, over REST and (later) over MCP.
 *
 * Built-in tools register at start (main thread); MCP tools join later under
 * "<server>.<tool>".  Lookups and calls may happen on any thread (run threads,
 * workers): the registry is read-only after start, calls are reentrant.
 */
#ifndef AGD_TOOLS_TOOL_H
#define AGD_TOOLS_TOOL_H

#include <jansson.h>

/* Who is calling: tools that read user data use user_id and nothing else. */
typedef struct tool_call_ctx {
  const char *user_id;
  const char *run_id; /* may be NULL (REST) */
  void *store;        /* store_t* for tools that read the caller's data */
  struct llm *llm;    /* provider for tools that classify/write (NULL: builtin) */
  /* Optional cancellation probe (a run's cancel flag / deadline): long tools call
   * tool_call_cancelled() between units of work and stop early. */
  int (*cancelled)(const void *arg);
  const void *cancel_arg;
} tool_call_ctx_t;

/* 1 when ctx has a cancellation probe that says stop. */
int tool_call_cancelled(const tool_call_ctx_t *ctx);

/* A tool.  `call` gets validated args (borrowed) and returns 0 with *result (new
 * reference), or a negative AGD_E* with *result NULL or an {"error": "..."} object. */
typedef struct tool {
  const char *name;
  const char *description;
  const char *input_schema_json; /* JSON Schema (object) as text */
  const char *source;            /* "builtin" or "mcp:<server>" */
  int (*call)(const tool_call_ctx_t *ctx, const json_t *args, json_t **result);
} tool_t;

/* Register (start-up only).  The tool struct must outlive the registry. */
void tool_register(const tool_t *t);
/* Register the built-in tools (main calls it once). */
void tools_register_builtin(void);
const tool_t *tool_find(const char *name);
/* All tools in registration order; *n gets the count. */
const tool_t *const *tool_all(size_t *n);
/* The parsed input schema (cached; borrowed). */
json_t *tool_schema(const tool_t *t);
/* Validate args against the tool's schema (the subset we use: type object,
 * properties with type string|integer|number|boolean|array|object, required,
 * enum, minimum/maximum, minLength/maxLength, additionalProperties false).
 * Returns 0, or AGD_EVALIDATION with field/message (field points into a
 * static or args-owned string, message into `msgbuf`). */
int tool_validate(const tool_t *t, const json_t *args, const char **field, char *msgbuf, size_t msgcap);
/* Validate then call. */
int tool_call(const tool_t *t, const tool_call_ctx_t *ctx, const json_t *args, json_t **result);
/* Forget all tools (tests). */
void tool_registry_reset(void);

#endif
