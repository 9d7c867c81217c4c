// A local OpenAI-compatible model peer: `POST /v1/chat/completions` streams SSE chunks (with a final
// usage chunk), slowly enough that a test can watch the answer grow. In `echo` mode it answers with
// HTML and script payloads plus everything the platform put in the prompt (the retrieved page text),
// as a compromised or prompt-injected model would.
import http from "node:http";

export const ANSWER_CHUNKS = [
  "Our **Pro plan** costs ",
  "4,980 yen per month.\n\n",
  "It includes:\n- 10,000 chats\n",
  "- priority support\n\n",
  "See [the pricing page](https://example.com/pricing) for details.",
];

export const HTML_ECHO =
  "<img src=x onerror=\"window.__kotobaPwned='model-img'\">" +
  "<script>window.__kotobaPwned='model-script'</script>" +
  "<a href=\"javascript:window.__kotobaPwned='model-link'\">click</a> " +
  "[md link](javascript:window.__kotobaPwned='model-md') " +
  '<iframe srcdoc="<script>parent.__kotobaPwned=1</script>"></iframe>';

export async function startPeer({ mode = "answer", delayMs = 120 } = {}) {
  const requests = [];
  const server = http.createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    if (req.method !== "POST" || !req.url.endsWith("/chat/completions")) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "not found" } }));
      return;
    }
    let request = {};
    try {
      request = JSON.parse(body);
    } catch {
      /* answered below */
    }
    requests.push(request);
    const prompt = (request.messages || []).map((m) => (typeof m.content === "string" ? m.content : "")).join("\n");
    const chunks = server.mode === "echo" ? [HTML_ECHO, "\n\n", prompt.slice(-4000)] : ANSWER_CHUNKS;
    const model = request.model || "peer-model";
    const chunk = (delta, finish) => ({
      id: "chatcmpl-peer",
      object: "chat.completion.chunk",
      created: Math.floor(Date.now() / 1000),
      model,
      choices: [{ index: 0, delta, finish_reason: finish || null }],
    });
    if (!request.stream) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          id: "chatcmpl-peer",
          object: "chat.completion",
          model,
          choices: [{ index: 0, message: { role: "assistant", content: chunks.join("") }, finish_reason: "stop" }],
          usage: { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 },
        }),
      );
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const send = (value) => res.write(`data: ${JSON.stringify(value)}\n\n`);
    send(chunk({ role: "assistant", content: "" }));
    for (const text of chunks) {
      await new Promise((r) => setTimeout(r, server.delayMs));
      if (res.destroyed) return;
      send(chunk({ content: text }));
    }
    send(chunk({}, "stop"));
    send({
      id: "chatcmpl-peer",
      object: "chat.completion.chunk",
      model,
      choices: [],
      usage: { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 },
    });
    res.end("data: [DONE]\n\n");
  });
  server.mode = mode;
  server.delayMs = delayMs;
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${server.address().port}/v1`;
  return {
    url,
    requests,
    setMode(m) {
      server.mode = m;
    },
    close: () => new Promise((r) => server.close(r)),
  };
}
