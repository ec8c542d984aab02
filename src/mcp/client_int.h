/* mcp/client_int.h — what the MCP client's files share (client.c, stdio.c,
 * http.c, rpc.c).  Not a public contract: mcp/client.h is.
 *
 * Locking: one mutex (g_mcp.mu) guards every server's status fields, the
 * bridge queues and each bridge call's outcome.  Fields marked "loop" are
 * touched by the loop thread only; "config" fields never change after
 * mcp_client_load().
 */
#ifndef AGD_MCP_CLIENT_INT_H
#define AGD_MCP_CLIENT_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mcp/client.h"

typedef enum { MCP_T_STDIO = 0, MCP_T_HTTP } mcp_transport_t;
/* As mcp/mcp.h names them: connecting, connected, restarting, failed, stopped. */
typedef enum { MCP_S_CONNECTING = 0, MCP_S_READY, MCP_S_RESTARTING, MCP_S_FAILED, MCP_S_STOPPED } mcp_state_t;

typedef struct mcp_server mcp_server_t;

/* One tools/call handed from a calling thread to the loop (stdio servers).
 * Reference counted: the caller holds one, the loop one while the call is
 * queued or in flight, the cancel queue one while it is queued there. */
typedef struct mcp_call {
  atomic_int refs;
  mcp_server_t *srv;
  char *params; /* the JSON-RPC params, serialised by the caller */
  /* guarded by g_mcp.mu */
  pthread_cond_t cond;
  int done;      /* the outcome below is set */
  int rc;        /* 0: raw holds the answer line */
  char *raw;     /* the server's whole answer (a JSON-RPC response), parsed by the caller */
  size_t raw_len;
  char errmsg[256];
  int abandoned; /* the caller left (cancel, timeout): the loop sends notifications/cancelled */
  struct mcp_call *qnext, *cnext;
  /* loop */
  long long id;
} mcp_call_t;

struct mcp_server {
  /* config */
  char name[MCP_SERVER_NAME_MAX + 1];
  char source[MCP_SERVER_NAME_MAX + 8]; /* "mcp:<name>" */
  mcp_transport_t transport;
  char **argv;    /* stdio: NULL-terminated */
  char **env;     /* stdio: the child's environment (inherited + the config's), NULL-terminated */
  char *cwd;      /* stdio: its working directory, NULL: agentd's */
  char *url;      /* http */
  char **headers; /* http: "Name: value", NULL-terminated */
  /* guarded by g_mcp.mu */
  mcp_state_t state;
  size_t ntools;
  char last_error[256];
  char proto[32], sname[128], sver[64];
  unsigned restarts;
  double connected_at;
  unsigned long long garbage, dropped, stderr_lines, calls, call_errors;
  mcp_call_t *sub_head, *sub_tail; /* submitted calls, for the loop */
  mcp_call_t *can_head;            /* abandoned calls, for the loop */
  /* transport state (stdio: loop; http: its thread) */
  void *impl;
};

typedef struct mcp_client {
  pthread_mutex_t mu;
  mcp_server_t *servers;
  size_t n;
  double timeout_s;   /* --mcp-timeout */
  uv_loop_t *loop;    /* NULL until started */
  uv_thread_t loop_thread;
  uv_async_t async;   /* wakes the loop for queued calls */
  uv_timer_t tick;    /* deadlines of the servers' own requests */
  int accepting;      /* guarded by mu: calls may be queued, async may be sent */
  int started, stopping;
  int curl_init;      /* curl_global_init was called (an HTTP server is configured) */
} mcp_client_t;

extern mcp_client_t g_mcp;

/* ---- client.c, for the transports ---- */
/* Set a server's state (and last error when err is non-NULL; "" clears). Locks mu. */
void mcp__set_state(mcp_server_t *s, mcp_state_t st, const char *err);
void mcp__set_error(mcp_server_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Record initialize's answer (protocol version, serverInfo) and the time. Locks mu. */
void mcp__set_info(mcp_server_t *s, const char *proto, const json_t *server_info);
/* One more restart (shown in the status). Locks mu. */
void mcp__count_restart(mcp_server_t *s);
/* Bump a counter under mu. */
void mcp__count(mcp_server_t *s, unsigned long long *field);
/* Finish a bridge call: the outcome is set and the caller woken.  raw (owned)
 * is the answer line for rc 0.  The loop's reference is NOT dropped. */
void mcp__complete(mcp_call_t *c, int rc, char *raw, size_t raw_len, const char *errmsg);
void mcp__call_unref(mcp_call_t *c);
/* Replace the server's tools with those of a tools/list result (an array of
 * MCP tool objects, borrowed).  Tools the registry refuses are skipped and
 * logged.  Returns how many were registered. */
size_t mcp__register_tools(mcp_server_t *s, const json_t *tools);

/* ---- rpc.c: JSON-RPC framing helpers (pure; any thread) ---- */
typedef struct mcp_scan {
  int is_object;     /* the text starts (after blanks) with '{' */
  int has_method;    /* a top-level "method" key */
  int has_id;        /* a top-level "id" whose value is an integer */
  long long id;
  int complete;      /* the scan reached the object's closing brace */
} mcp_scan_t;
/* Look at the top level of a JSON object's text without parsing it whole:
 * whether it is an object, has "method", and its integer "id".  Works on a
 * prefix too (complete = 0).  Never reads past n. */
void mcp_rpc_scan(const char *p, size_t n, mcp_scan_t *out);
/* The integer id at the very end of an object's text (`..."id":42}`), for an
 * over-long line of which only the tail was kept: 0 and *id, or -1. */
int mcp_rpc_tail_id(const char *p, size_t n, long long *id);
/* 1 for a protocol version agentd accepts (2025-11-25, 2025-06-18, 2025-03-26). */
int mcp_rpc_version_ok(const char *v);
/* A request / notification as one line (with the final "\n"), malloc'd. params
 * is JSON text or NULL. */
char *mcp_rpc_request(long long id, const char *method, const char *params, size_t *len);
char *mcp_rpc_notification(const char *method, const char *params, size_t *len);
/* The params of initialize (agentd's clientInfo, protocol version): JSON text, malloc'd. */
char *mcp_rpc_initialize_params(void);
/* Map a tools/call answer (the whole JSON-RPC response text) to agentd's
 * result as mcp_client_call() documents.  server/tool name the call in messages. */
int mcp_rpc_tool_result(const char *raw, size_t n, const char *server, const char *tool, json_t **result);

/* ---- stdio.c (loop thread) ---- */
int mcp_stdio_start(mcp_server_t *s, uv_loop_t *loop);
void mcp_stdio_submit(mcp_server_t *s, mcp_call_t *c); /* takes the loop's reference */
void mcp_stdio_cancel(mcp_server_t *s, mcp_call_t *c); /* drops the cancel queue's reference */
void mcp_stdio_tick(mcp_server_t *s, uint64_t now_ms);
void mcp_stdio_stop(mcp_server_t *s);
void mcp_stdio_free(mcp_server_t *s);

/* ---- http.c (its own thread per server; calls on the caller's thread) ---- */
int mcp_http_start(mcp_server_t *s);
/* POST one tools/call (params: JSON text) and wait for its answer; as bridge calls answer. */
int mcp_http_call(mcp_server_t *s, const char *params, const tool_call_ctx_t *ctx, uint64_t deadline_ms,
                  char **raw, size_t *raw_len, char *errmsg, size_t errcap);
void mcp_http_stop(mcp_server_t *s);
void mcp_http_free(mcp_server_t *s);

#endif
