// TEMPORARY stand-in for the embed endpoints of the chat function (issue 4), speaking the contract of
// ARCHITECTURE.md §5, so the widget can be developed before the real routes land on main. The final
// tests run against the real local runner; this file goes away then.
import fs from "node:fs";
import http from "node:http";
import { ANSWER_CHUNKS, HTML_ECHO } from "./peer.mjs";
import { SITE_PAGES } from "./host.mjs";

const WIDGET = new URL("../../../functions/embed-script/widget/widget.js", import.meta.url);

export async function startFakeApi({ allowedHost = "127.0.0.1" } = {}) {
  const feedback = [];
  const sites = {
    main: { site_id: "site_fakemain0001", theme: "light", color_primary: "#0f766e", position: "bottom-right", radius: 14, font: "system-ui, sans-serif", welcome_message: "Hello! Ask me about Sakura Shop.", bubble_icon_url: null },
    xss: { site_id: "site_fakexss0001", theme: "dark", color_primary: "#7c3aed", position: "bottom-left", radius: 8, font: "system-ui, sans-serif", welcome_message: "</script><img src=x onerror=\"window.__kotobaPwned='welcome'\">", bubble_icon_url: null },
  };
  let base = "";
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, "http://api");
    const origin = req.headers.origin;
    const cors = origin ? { "access-control-allow-origin": origin, "access-control-expose-headers": "retry-after", vary: "Origin" } : {};
    let body = "";
    for await (const c of req) body += c;
    const site = Object.values(sites).find((s) => s.site_id === (url.searchParams.get("site_id") || safeJson(body).site_id));
    if (url.pathname === "/api/embed/script") {
      if (!site) {
        res.writeHead(404, { "content-type": "application/javascript; charset=utf-8" });
        return res.end("/* Kotoba chat widget: no such site */\n");
      }
      const json = JSON.stringify(site).replace(/[<>&\u2028\u2029]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
      const widget = fs.readFileSync(WIDGET, "utf8").trimEnd().replace(/;$/, "");
      res.writeHead(200, { "content-type": "application/javascript; charset=utf-8" });
      return res.end(`/*! Kotoba chat widget */\n(${widget})(${json});\n`);
    }
    const allowed = origin && new URL(origin).hostname === allowedHost;
    if (req.method === "POST" && (url.pathname === "/api/embed/chat" || url.pathname === "/api/embed/feedback")) {
      if (!site || !allowed) {
        res.writeHead(site ? 403 : 404, { "content-type": "application/json", ...cors });
        return res.end(JSON.stringify({ error: { code: site ? "forbidden" : "not_found", message: "origin not allowed" } }));
      }
      const q = safeJson(body);
      if (url.pathname === "/api/embed/feedback") {
        feedback.push(q);
        res.writeHead(200, { "content-type": "application/json", ...cors });
        return res.end(JSON.stringify({ status: "recorded", message_id: q.message_id }));
      }
      const xss = site === sites.xss;
      const chunks = xss ? [HTML_ECHO, "\n\n", SITE_PAGES["/xss/payload.html"]] : ANSWER_CHUNKS;
      const answer = {
        answer: chunks.join(""),
        sources: xss
          ? [{ url: `${base}/xss/payload.html`, title: "<img src=x onerror=\"window.__kotobaPwned='source'\">", snippet: "<script>x</script>", score: 1 }, { url: "javascript:window.__kotobaPwned='source-url'", title: "bad", snippet: "", score: 0.5 }]
          : [{ url: "http://127.0.0.1/site/pricing.html", title: "Pricing plans", snippet: "The Pro plan costs", score: 0.9 }],
        model_used: "peer-model",
        tokens_consumed: { embedding: 0, chat: 120 },
        cost_usd: 0.0001,
        session_id: q.session_id || "sess_fake000000000000001",
        message_id: "msg_fake" + Date.now(),
      };
      res.writeHead(200, { "content-type": "text/event-stream", ...cors });
      for (const text of chunks) {
        res.write(`event: delta\ndata: ${JSON.stringify({ text })}\n\n`);
        await new Promise((r) => setTimeout(r, 120));
      }
      res.end(`event: done\ndata: ${JSON.stringify(answer)}\n\n`);
      return;
    }
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { code: "not_found", message: "no such route" } }));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${server.address().port}`;
  return {
    base,
    sites: { main: sites.main.site_id, xss: sites.xss.site_id },
    async feedbackFor(messageId) {
      return feedback.find((f) => f.message_id === messageId) || null;
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

function safeJson(s) {
  try {
    return JSON.parse(s) || {};
  } catch {
    return {};
  }
}
