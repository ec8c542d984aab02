// tests/mcp/sdk_client.mjs — the official MCP TypeScript SDK's Client over
// StreamableHTTPClientTransport against agentd's /mcp (tests/e2e/test_mcp_sdk.py).
// Usage: node sdk_client.mjs URL TOKEN
// Initializes, lists every tool (following nextCursor), calls calculator, a
// schema-failing call and an unknown tool, pings, sets the log level, ends the
// session, and prints one JSON line with what it saw.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: token ? { Authorization: `Bearer ${token}` } : {} },
});
const client = new Client({ name: "agentd-interop", version: "1.0.0" });
const out = {};
await client.connect(transport);
out.sessionId = transport.sessionId;
out.protocolVersion = transport.protocolVersion;
out.serverVersion = client.getServerVersion();
out.capabilities = client.getServerCapabilities();
const names = [];
let cursor, pages = 0;
do {
  const page = await client.listTools(cursor ? { cursor } : {});
  pages++;
  for (const t of page.tools) names.push(t.name);
  cursor = page.nextCursor;
} while (cursor);
out.tools = names;
out.pages = pages;
out.calc = await client.callTool({ name: "calculator", arguments: { expression: "6*7" } });
out.badArgs = await client.callTool({ name: "calculator", arguments: { expression: "" } });
try {
  await client.callTool({ name: "no_such_tool", arguments: {} });
  out.unknown = "no error";
} catch (e) {
  out.unknown = { code: e.code, message: String(e.message) };
}
out.ping = await client.ping();
out.setLevel = await client.setLoggingLevel("warning");
await transport.terminateSession();
await client.close();
console.log(JSON.stringify(out));
