/* tools/tool.h — the tool registry (SPEC §7): named tools with a JSON schema
 * for their arguments, callable by agents, over REST and over MCP.
 *
 * Built-in tools register at start; MCP servers add and remove theirs at run
 * time (a server connects, dies, sends tools/list_changed).  Every function
 * here may be called from any thread (the loop, workers, run threads) while
 * others register or unregister:
 *   - the table is copy-on-write: a change builds a new list and swaps it in
 *     under a write lock; a lookup or a listing only takes a reference on the
 *     current list under a read lock;
 *   - tools are reference counted: tool_find() returns a tool the caller holds
 *     until tool_unref(), so a run may keep calling a tool that was
 *     unregistered meanwhile; its memory (and user_data) goes at the last unref.
 */
#ifndef AGD_TOOLS_TOOL_H
#define AGD_TOOLS_TOOL_H

#include <jansson.h>
#include <stddef.h>

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

typedef struct tool tool_t;

/* A tool's code.  `self` is the registered tool being called (a proxy reads
 * self->user_data to know which remote tool it is); args are validated and
 * borrowed.  Returns 0 with *result (new reference), or a negative AGD_E* with
 * *result NULL or an {"error": "..."} object. */
typedef int (*tool_call_fn)(const tool_t *self, const tool_call_ctx_t *ctx, const json_t *args, json_t **result);

/* As passed to tool_register: a description the registry copies.  As returned
 * by tool_find / tool_list_get: the registry's own copy (strings owned by it);
 * read-only for everyone. */
struct tool {
  const char *name;              /* unique; 1..256 bytes */
  const char *description;       /* may be NULL */
  const char *input_schema_json; /* JSON Schema as text; NULL: input_schema, else {"type":"object"} */
  json_t *input_schema;          /* alternative to the text (borrowed at registration, copied) */
  const char *source;            /* "builtin" (NULL means it) or "mcp:<server>" */
  int destructive;               /* MCP annotation destructiveHint: true — a model's call of it waits for the
                                    user's approval (SPEC §11) */
  tool_call_fn call;
  /* For `call` only; the registry never reads it.  Once registration succeeds
   * the registry owns it: user_data_free(user_data) runs at the last unref of
   * the tool (on whichever thread drops it).  On failure the caller keeps it. */
  void *user_data;
  void (*user_data_free)(void *user_data);
};

/* Register a tool (copies the description; compiles its schema).  Returns 0;
 * AGD_ECONFLICT when a tool of that name exists (the existing one stays: a
 * duplicate never replaces); AGD_EVALIDATION for a bad name, no `call`, or a
 * schema that is not valid JSON Schema (bad JSON, a pattern that does not
 * compile, a $ref that is not local or loops; logged with the reason). */
int tool_register(const tool_t *desc);
/* Replace the whole group of `source` at once (an MCP server's tools/list):
 * unregisters every tool of that source and registers descs[0..n) in one
 * step, so no listing sees half of it.  All or nothing: errors as
 * tool_register (a name taken by another source is AGD_ECONFLICT), and on an
 * error nothing changed.  Each desc's source is taken to be `source`. */
int tool_replace_source(const char *source, const tool_t *const *descs, size_t n);
/* Unregister by name: 0 or AGD_ENOT_FOUND.  Holders of the tool keep it. */
int tool_unregister(const char *name);
/* Unregister every tool of `source` (e.g. "mcp:foo"); returns how many. */
size_t tool_unregister_source(const char *source);
/* Register the built-in tools (main calls it once). */
void tools_register_builtin(void);
/* Register the MCP conformance suite's fixture tools test_simple_text and
 * test_error_handling (--mcp-test-tools only; tools/conformance.c). */
void tools_register_conformance(void);

/* Look a tool up: a new reference, or NULL.  Release it with tool_unref(). */
const tool_t *tool_find(const char *name);
/* Take / drop a reference.  tool_unref(NULL) is a no-op. */
const tool_t *tool_ref(const tool_t *t);
void tool_unref(const tool_t *t);

/* A consistent snapshot of the registry, in registration order (a replaced
 * group goes to the end).  Its tools stay valid while the list is held; take
 * tool_ref() to keep one longer.  NULL when no tool is registered (size 0). */
typedef struct tool_list tool_list_t;
tool_list_t *tool_list_acquire(void);
size_t tool_list_size(const tool_list_t *l);
const tool_t *tool_list_get(const tool_list_t *l, size_t i);
void tool_list_release(tool_list_t *l); /* NULL: no-op */

/* The parsed input schema (borrowed; valid while t is held; do not change it). */
json_t *tool_schema(const tool_t *t);
/* Validate args against the tool's schema (tools/schema.h).  Returns 0, or
 * AGD_EVALIDATION with the failing value's path in `path` (from "arguments",
 * e.g. "arguments.items[2].name"; "arguments" itself when args is no object)
 * and what is wrong in `msg` (e.g. "must be a string").  Both may be NULL. */
int tool_validate(const tool_t *t, const json_t *args, char *path, size_t pathcap, char *msg, size_t msgcap);
/* Validate then call (the caller holds t).  A validation failure returns
 * AGD_EVALIDATION with *result {"error": "<path below arguments> <msg>"}. */
int tool_call(const tool_t *t, const tool_call_ctx_t *ctx, const json_t *args, json_t **result);
/* Unregister all tools (tests, shutdown). */
void tool_registry_reset(void);

#endif
