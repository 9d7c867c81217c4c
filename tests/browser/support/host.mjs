// The "customer's website" on loopback: host pages that embed the widget, and the small site the
// tests train the assistant on (including pages carrying HTML and script payloads as markup and as text).
import http from "node:http";

export const HOSTILE_CSS = `
* { font-family: "Comic Sans MS", cursive !important; font-size: 31px !important; color: red !important;
    background: yellow !important; line-height: 3 !important; letter-spacing: 4px !important;
    text-transform: uppercase !important; box-sizing: content-box !important; margin: 7px !important;
    padding: 9px !important; border: 3px dashed green !important; opacity: .9 !important; }
div { display: none !important; position: static !important; width: 10px !important; height: 10px !important; }
button { all: unset !important; background: black !important; color: lime !important; width: 300px !important;
    height: 12px !important; border-radius: 0 !important; }
textarea, svg, h2, ul, li, a, form, header, span, img, p { display: inline !important; width: 5px !important; }
kotoba-chat { display: none !important; transform: scale(.3) !important; position: absolute !important; }
body > * { filter: blur(3px) !important; z-index: 0 !important; }
`;

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** A host page embedding the widget from `src`, optionally with CSS that restyles everything. */
export function hostPage({ src, hostile = false }) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Host page</title>${hostile ? `<style>${HOSTILE_CSS}</style>` : ""}</head>
<body><h1>Welcome to Sakura Shop</h1><div class="content"><p>Our shop sells tea.</p><button>Host button</button></div>
<script src="${esc(src)}" async></script></body></html>`;
}

/** The sites the assistant is trained on: `/site/` a small shop, `/xss/` pages that carry markup
 * payloads (which a crawler must drop) and the same payloads as visible text (which end up in the
 * index, the sources and the model's prompt). */
export const SITE_PAGES = {
  "/site/": `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sakura Shop</title></head><body>
<main><h1>Sakura Shop</h1><p>Sakura Shop sells green tea from Shizuoka and Uji, shipped worldwide.</p>
<p><a href="/site/pricing.html">Pricing</a> <a href="/site/shipping.html">Shipping</a></p></main></body></html>`,
  "/site/pricing.html": `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Pricing plans</title></head><body>
<main><h1>Pricing plans</h1><p>The Pro plan costs 4,980 yen per month and includes 10,000 chats and priority support.
The Starter plan costs 980 yen per month.</p><p><a href="/site/">Home</a></p></main></body></html>`,
  "/site/shipping.html": `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shipping</title></head><body>
<main><h1>Shipping</h1><p>Orders ship within two business days. Shipping to Korea takes three days.</p></main></body></html>`,
  "/xss/": `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Tea notes</title></head><body>
<main><h1>Tea notes</h1><p>Notes about matcha and sencha.</p><p><a href="/xss/payload.html">Matcha notes</a></p>
<img src=x onerror="window.__kotobaPwned='index-img'"></main></body></html>`,
  "/xss/payload.html": `<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>&lt;img src=x onerror="window.__kotobaPwned='title'"&gt; Matcha notes</title></head><body>
<main><h1>Matcha notes &lt;script&gt;window.__kotobaPwned='heading'&lt;/script&gt;</h1>
<p>Matcha whisking guide: use 80 degree water. &lt;img src=x onerror="window.__kotobaPwned='text-img'"&gt;
&lt;script&gt;window.__kotobaPwned='text-script'&lt;/script&gt; &lt;a href="javascript:window.__kotobaPwned='text-link'"&gt;more&lt;/a&gt;</p>
<img src=x onerror="window.__kotobaPwned='markup-img'"><script>window.__kotobaPwned='markup-script'</script>
<p>Matcha keeps for two months in the fridge.</p></main></body></html>`,
};

export async function startHost({ apiBase = () => "" } = {}) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://host");
    requests.push(url.pathname);
    if (url.pathname === "/host.html") {
      const src =
        url.searchParams.get("src") || `${apiBase()}/api/embed/script?site_id=${url.searchParams.get("site")}`;
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(hostPage({ src, hostile: url.searchParams.get("css") === "hostile" }));
      return;
    }
    const page = SITE_PAGES[url.pathname];
    if (page) {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(page);
      return;
    }
    if (url.pathname === "/robots.txt") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("User-agent: *\nAllow: /\n");
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found");
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const port = server.address().port;
  return {
    port,
    /** Allowed by the test sites: host 127.0.0.1. */
    allowed: `http://127.0.0.1:${port}`,
    /** Same server, a host the sites do not allow. */
    other: `http://localhost:${port}`,
    requests,
    close: () => new Promise((r) => server.close(r)),
  };
}
