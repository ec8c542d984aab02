// parse.mjs BASE_URL MODEL MESSAGE — one streamed chat completion through the
// official `openai` npm client, printed as one JSON object on stdout:
//   {"text","reasoning","tool_calls":[{"id","name","arguments"}],"finish","error",
//    "prompt_tokens","completion_tokens"}
// the same shape agentd's C probe (build-test/llm_probe) prints, so
// tests/e2e/test_standin.py can compare the two on every stand-in scenario.
//
// - arguments: the joined fragments parsed as JSON, or the raw string when they do not parse;
// - error: null, or the HTTP status as a string ("429") for an API error, else the error's message;
//   text/reasoning/tool_calls keep what arrived before the error;
// - the client's own retries: maxRetries is PARSE_MAX_RETRIES (default 0), so an error status
//   reaches the caller at once; agentd's retries are agentd's business (see README.md).
import OpenAI from "openai";

const [baseURL, model, message] = process.argv.slice(2);
if (!baseURL || !model || message === undefined) {
  process.stderr.write("usage: node parse.mjs BASE_URL MODEL MESSAGE\n");
  process.exit(2);
}

const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "The current weather in a city.",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  },
  {
    type: "function",
    function: {
      name: "weather_forecast",
      description: "The forecast for the next days.",
      parameters: { type: "object", properties: { days: { type: "integer" } } },
    },
  },
];

const out = {
  text: "",
  reasoning: "",
  tool_calls: [],
  finish: null,
  error: null,
  prompt_tokens: null,
  completion_tokens: null,
};
const calls = []; // by index, as openai-node's docs accumulate streamed tool calls

const client = new OpenAI({
  baseURL,
  apiKey: process.env.OPENAI_API_KEY || "sk-test",
  maxRetries: Number(process.env.PARSE_MAX_RETRIES || 0),
  timeout: 120 * 1000,
});

try {
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: message }],
    tools,
    stream: true,
    stream_options: { include_usage: true },
  });
  for await (const chunk of stream) {
    if (chunk.usage) {
      out.prompt_tokens = chunk.usage.prompt_tokens;
      out.completion_tokens = chunk.usage.completion_tokens;
    }
    const choice = chunk.choices?.[0];
    if (!choice) continue;
    const delta = choice.delta || {};
    if (typeof delta.content === "string") out.text += delta.content;
    // Not in the typed API: vLLM sends delta.reasoning, llama.cpp delta.reasoning_content.
    const r = delta.reasoning_content ?? delta.reasoning;
    if (typeof r === "string") out.reasoning += r;
    for (const tc of delta.tool_calls || []) {
      const c = (calls[tc.index] ??= { id: "", name: "", arguments: "" });
      if (tc.id) c.id = tc.id;
      if (tc.function?.name) c.name += tc.function.name;
      if (tc.function?.arguments) c.arguments += tc.function.arguments;
    }
    if (choice.finish_reason) out.finish = choice.finish_reason;
  }
} catch (err) {
  out.error = err instanceof OpenAI.APIError && err.status ? String(err.status) : String(err?.message || err);
}

out.tool_calls = calls.filter(Boolean).map((c) => {
  let args = c.arguments;
  try {
    args = JSON.parse(c.arguments);
  } catch {
    /* keep the raw string */
  }
  return { id: c.id, name: c.name, arguments: args };
});
process.stdout.write(JSON.stringify(out) + "\n");
