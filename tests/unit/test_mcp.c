/* tests/unit/test_mcp.c — mcp/mcp.h: the client-side provider plug. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "mcp/mcp.h"

static size_t two_servers(void *arg, mcp_server_status_t *out, size_t cap) {
  int *calls = arg;
  (*calls)++;
  const char *names[] = {"files", "everything"};
  for (size_t i = 0; i < 2 && i < cap; i++) {
    memset(&out[i], 0, sizeof(out[i]));
    snprintf(out[i].name, sizeof(out[i].name), "%s", names[i]);
    out[i].transport = i ? "http" : "stdio";
    out[i].status = "connected";
    out[i].tools = i + 3;
  }
  return 2;
}

Test(mcp, no_provider_means_no_servers) {
  mcp_client_provide(NULL);
  mcp_server_status_t s[4];
  cr_assert_eq(mcp_client_servers(s, 4), 0);
}

Test(mcp, provider_answers_and_may_report_more_than_cap) {
  int calls = 0;
  mcp_client_provide(&(mcp_client_provider_t){.servers = two_servers, .arg = &calls});
  mcp_server_status_t s[1];
  cr_assert_eq(mcp_client_servers(s, 1), 2); /* the caller learns it needs more room */
  cr_assert_str_eq(s[0].name, "files");
  mcp_server_status_t all[2];
  cr_assert_eq(mcp_client_servers(all, 2), 2);
  cr_assert_str_eq(all[1].transport, "http");
  cr_assert_eq(all[1].tools, 4);
  cr_assert_eq(calls, 2);
  mcp_client_provide(NULL);
  cr_assert_eq(mcp_client_servers(all, 2), 0);
}

Test(mcp, source_name) {
  char b[64];
  mcp_source_name(b, sizeof(b), "files");
  cr_assert_str_eq(b, "mcp:files");
}
