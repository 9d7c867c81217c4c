// The tenant console (/console) in real headless Chromium against the real local runner: sign-in with a
// session cookie, sites (create, train with live progress, embed switch and snippet copy, the widget's
// live preview, prompt versions with diff and rollback), usage charts after chats, credits, phone,
// webhooks, settings and keys, the operator's tenants; a viewer without write controls (and 403 when it
// calls them anyway); axe-core on every page; screenshots of every page in ja and en, desktop and 360 px.
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { launch, loopbackOnly } from "../support/browser.mjs";
import { startPeer } from "../support/peer.mjs";
import { startRunner } from "../support/runner.mjs";

const require = createRequire(import.meta.url);
const AXE = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const ARTIFACTS = path.resolve(import.meta.dirname, "../../../artifacts/console");
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 360, height: 740 };
const NUMBER = "+15005550006";

let peer;
let runner;
let site; // the loopback site the console trains on
let hook; // a loopback webhook receiver
let browser;
let tenant;
let ownerKey;
let viewerKey;
const offenders = [];
const cspViolations = [];
const state = {};

/** A small site on loopback whose pages answer slowly, so a training job is seen while it runs. */
async function startSlowSite() {
  const pages = {
    "/shop/": `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Hinoki Ryokan</title></head><body><main>
<h1>Hinoki Ryokan</h1><p>Hinoki Ryokan is a hot spring inn in Hakone with eight rooms.</p>
<p><a href="/shop/rooms.html">Rooms</a> <a href="/shop/access.html">Access</a> <a href="/shop/bath.html">Bath</a></p></main></body></html>`,
    "/shop/rooms.html": `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Rooms</title></head><body><main>
<h1>Rooms</h1><p>Every room has a private open-air bath. Check-in is from 15:00 and check-out until 10:00.</p></main></body></html>`,
    "/shop/access.html": `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Access</title></head><body><main>
<h1>Access</h1><p>The inn is a ten minute walk from Hakone-Yumoto station. Free parking for twelve cars.</p></main></body></html>`,
    "/shop/bath.html": `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Bath</title></head><body><main>
<h1>Bath</h1><p>The large bath is open from 6:00 to 24:00. Towels are provided in every room.</p></main></body></html>`,
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://site");
    if (url.pathname === "/robots.txt") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("User-agent: *\nAllow: /\n");
      return;
    }
    const page = pages[url.pathname];
    if (!page) {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
      return;
    }
    // sleep-ok: a slow web server, so the job's progress is visible while it crawls.
    setTimeout(() => {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(page);
    }, 700);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

/** A webhook receiver on loopback that answers 200 to everything and keeps what it got. */
async function startReceiver() {
  const got = [];
  const server = http.createServer(async (req, res) => {
    let body = "";
    for await (const c of req) body += c;
    got.push({ headers: req.headers, body });
    res.writeHead(200, { "content-type": "application/json" });
    res.end("{}");
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}/hooks`, got, close: () => new Promise((r) => server.close(r)) };
}

const STRIPE = process.env.KOTOBA_TEST_STRIPE_BASE;
const STRIPE_KEY = "sk_test_kotoba_console_0123456789";
const STRIPE_WEBHOOK_SECRET = "whsec_kotoba_console_test";

/** A form POST to localstripe with the test secret key. */
async function stripe(path, form) {
  const res = await fetch(STRIPE + path, {
    method: "POST",
    headers: { authorization: `Bearer ${STRIPE_KEY}`, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(form).toString(),
  });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error(`localstripe ${path} → ${res.status}: ${JSON.stringify(body)}`);
  return body;
}

/**
 * Stripe's API as the runner sees it: localstripe, and for the hosted pages localstripe lacks
 * (Checkout and Billing Portal sessions) answers shaped as Stripe's, with what was asked kept.
 */
async function startStripeFront(upstream) {
  const hosted = [];
  const server = http.createServer(async (req, res) => {
    let body = "";
    for await (const c of req) body += c;
    const reply = (status, json) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(json));
    };
    if (req.method === "POST" && req.url === "/v1/checkout/sessions") {
      hosted.push({ path: req.url, form: Object.fromEntries(new URLSearchParams(body)) });
      return reply(200, { id: "cs_test_console", object: "checkout.session", url: "https://checkout.stripe.com/c/pay/cs_test_console" });
    }
    if (req.method === "POST" && req.url === "/v1/billing_portal/sessions") {
      hosted.push({ path: req.url, form: Object.fromEntries(new URLSearchParams(body)) });
      return reply(200, { id: "bps_console", object: "billing_portal.session", url: "https://billing.stripe.com/p/session/bps_console" });
    }
    const headers = {};
    for (const h of ["authorization", "content-type", "idempotency-key", "stripe-version"]) {
      if (req.headers[h]) headers[h] = req.headers[h];
    }
    const forwarded = await fetch(upstream + req.url, {
      method: req.method,
      headers,
      body: ["GET", "HEAD"].includes(req.method) ? undefined : body,
    });
    res.writeHead(forwarded.status, { "content-type": forwarded.headers.get("content-type") || "application/json" });
    res.end(Buffer.from(await forwarded.arrayBuffer()));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, hosted, close: () => new Promise((r) => server.close(r)) };
}
let stripeFront;

before(async () => {
  peer = await startPeer({ delayMs: 5 });
  site = await startSlowSite();
  hook = await startReceiver();
  let env = {};
  if (STRIPE) {
    const plan = `kotoba-console-pro-${Date.now()}`;
    await stripe("/v1/plans", { id: plan, amount: "4980", currency: "jpy", interval: "month", "product[name]": "Pro" });
    const enterprise = `kotoba-console-enterprise-${Date.now()}`;
    await stripe("/v1/plans", { id: enterprise, amount: "49800", currency: "jpy", interval: "month", "product[name]": "Enterprise" });
    stripeFront = await startStripeFront(STRIPE);
    env = {
      KOTOBA_STRIPE_JS_URL: `${STRIPE}/js.stripe.com/v3/`,
      STRIPE_API_BASE: stripeFront.url,
      STRIPE_SECRET_KEY: STRIPE_KEY,
      STRIPE_WEBHOOK_SECRET,
      STRIPE_PRICE_PRO: plan,
      STRIPE_PRICE_ENTERPRISE: enterprise,
      STRIPE_PUBLISHABLE_KEY: "pk_test_kotoba_console",
    };
  }
  runner = await startRunner({
    modelBaseUrl: peer.url,
    // A model the price book knows, so chats cost something and draw credits.
    chatModel: "gpt-4o-mini",
    env,
  });
  if (STRIPE) {
    const form = new URLSearchParams({ url: `${runner.base}/api/webhooks/stripe`, secret: STRIPE_WEBHOOK_SECRET });
    const res = await fetch(`${STRIPE}/_config/webhooks/console-${Date.now()}`, { method: "POST", body: form });
    assert.ok(res.ok, `registering the webhook: ${res.status}`);
  }
  const created = await runner.call("POST", "/api/admin/tenants", { body: { name: "Hinoki Ryokan KK", plan: "pro" } });
  await runner.call("PUT", `/api/admin/tenants/${created.tenant_id}/subscription`, { body: { status: "active" } });
  tenant = created.tenant_id;
  ownerKey = created.api_key;
  viewerKey = (await runner.call("POST", "/api/keys", { key: ownerKey, body: { role: "viewer", name: "front desk" } }))
    .api_key;
  // A package on sale, priced in yen; a number in the operator's pool.
  await runner.call("POST", "/api/admin/credits/packages", {
    body: { display_name: "Starter pack", credits: 5000, price: 4800, currency: "JPY" },
  });
  await runner.call("POST", "/api/admin/phone-numbers", { body: { number: NUMBER } });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await runner?.close();
  await site?.close();
  await hook?.close();
  await stripeFront?.close();
  await peer?.close();
  assert.deepEqual(offenders, [], "no request left loopback");
  assert.deepEqual(cspViolations, [], "nothing the console does is refused by its own policy");
});

async function newPage({ viewport = DESKTOP, lang = "en" } = {}) {
  const context = await browser.newContext({ viewport, locale: lang === "ja" ? "ja-JP" : "en-US", reducedMotion: "reduce" });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: runner.base });
  await context.addInitScript((l) => localStorage.setItem("kotoba.console.lang", l), lang);
  await loopbackOnly(context, offenders);
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  return { page, context, errors, close: () => context.close() };
}

async function signIn(page, key) {
  await page.goto(`${runner.base}/console`);
  await page.locator("#api-key").fill(key);
  await page.locator("form button[type=submit]").click();
  await page.locator("nav#nav").waitFor({ state: "attached" });
  await page.locator("main h1").first().waitFor();
}

/** Loads a console URL directly (the function serves the page for every app route) and waits for its view. */
async function open(page, route) {
  await page.goto(`${runner.base}/console${route}`);
  await page.locator("main h1").first().waitFor();
  await page.locator(".loading").first().waitFor({ state: "detached" });
}

async function axe(page, name) {
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
  });
  assert.deepEqual(violations, [], `axe-core on ${name}`);
}

async function shoot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** The session's CSRF token, as the page itself reads it. */
const csrf = (page) =>
  page.evaluate(async () => (await (await fetch("/api/console/session")).json()).csrf_token);

describe("the console function", () => {
  test("serves the page and its files with ETags, cache headers and a strict policy", async () => {
    const res = await fetch(`${runner.base}/console/sites/anything`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(res.headers.get("cache-control"), "no-cache");
    const csp = res.headers.get("content-security-policy");
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    const page = await res.text();
    assert.doesNotMatch(page, /<script(?![^>]*\bsrc=)/, "no inline script");
    const etag = res.headers.get("etag");
    const again = await fetch(`${runner.base}/console`, { headers: { "if-none-match": etag } });
    assert.equal(again.status, 304);
    const js = page.match(/src="(\/console\/assets\/app-[^"]+\.js)"/)[1];
    const asset = await fetch(runner.base + js);
    assert.equal(asset.status, 200);
    assert.equal(asset.headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.match(asset.headers.get("cache-control"), /immutable/);
    assert.equal(asset.headers.get("content-encoding"), "gzip", "the bundle travels gzipped");
    assert.match(await asset.text(), /\S/, "and decodes");
    const missing = await fetch(`${runner.base}/console/assets/app-NOPE.js`);
    assert.equal(missing.status, 404);
    if (process.env.KOTOBA_TEST_STRIPE_BASE) {
      assert.ok(csp.includes(`script-src 'self' ${process.env.KOTOBA_TEST_STRIPE_BASE};`), csp);
    }
  });
});

describe("an owner", () => {
  test("signs in with a session cookie (no key kept in the page) and signs out for good", async () => {
    const { page, context, close, errors } = await newPage();
    await page.goto(`${runner.base}/console`);
    // A wrong key is refused readably, with the request id.
    await page.locator("#api-key").fill("kt_not_a_real_key_000000000000");
    await page.locator("form button[type=submit]").click();
    const error = page.locator(".error[role=alert]");
    await error.waitFor();
    assert.match(await error.textContent(), /not valid/);
    assert.match(await error.locator(".request-id").textContent(), /Request ID: \S+/);

    await page.locator("#api-key").fill(ownerKey);
    await page.locator("form button[type=submit]").click();
    await page.locator("[data-testid=plan]").waitFor();
    assert.equal(await page.locator("[data-testid=plan]").textContent(), "Pro");
    assert.match(await page.locator("[data-testid=credit-balance]").textContent(), /10,000 credits/);
    assert.equal(await page.locator(".gauge").count(), 3, "a gauge per quota");
    const cookie = (await context.cookies()).find((c) => c.name === "kotoba_session");
    assert.ok(cookie && cookie.httpOnly && cookie.secure && cookie.sameSite === "Strict", JSON.stringify(cookie));
    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
    assert.ok(!stored.includes(ownerKey) && !stored.includes("kt_"), "no key in browser storage");
    assert.ok(!(await page.content()).includes(ownerKey), "no key left in the page");

    await page.locator("button.signout").click();
    await page.locator("#api-key").waitFor();
    const after = await fetch(`${runner.base}/api/console/session`, {
      headers: { cookie: `kotoba_session=${cookie.value}` },
    });
    assert.equal(after.status, 401, "the session is dead after sign-out");
    assert.deepEqual(errors, []);
    await close();
  });

  test("is sent back to sign-in, told why, when the session ends in another tab", async () => {
    const { page, context, close } = await newPage();
    await signIn(page, ownerKey);
    const other = await context.newPage();
    await other.goto(`${runner.base}/console/usage`);
    await other.locator("button.signout").click();
    await other.locator("#api-key").waitFor();
    await page.locator("nav a", { hasText: "Sites" }).click();
    await page.locator("#api-key").waitFor();
    assert.match(await page.locator(".error[role=alert]").textContent(), /Your session has ended/);
    await close();
  });

  test("creates a site, trains it on a loopback site and watches the job reach ready", async () => {
    const { page, close, errors } = await newPage();
    await signIn(page, ownerKey);
    await page.locator("nav a", { hasText: "Sites" }).click();
    await page.locator("#new-site-name").fill("Hinoki Ryokan");
    await page.locator("#new-site-domains").fill("127.0.0.1, localhost");
    await page.locator("form button[type=submit]", { hasText: "Create site" }).click();
    await page.locator("#train-url").waitFor();
    state.siteId = page.url().split("/").pop();
    assert.match(state.siteId, /^site_/);
    assert.ok(await page.locator("button", { hasText: /^Copy$/ }).isDisabled(), "no snippet to copy before training");

    // A URL the crawler may not fetch: a readable error with the request id.
    await page.locator("#train-url").fill("http://10.1.2.3/");
    await page.locator("button", { hasText: /^Train$/ }).click();
    const refused = page.locator("#train-h ~ form .error[role=alert]");
    await refused.waitFor();
    assert.match(await refused.textContent(), /cannot be fetched/);
    assert.match(await refused.locator(".request-id").textContent(), /Request ID: \S+/);

    await page.locator("#train-url").fill(`${site.url}/shop/`);
    await page.locator("#train-max").fill("20");
    await page.locator("button", { hasText: /^Train$/ }).click();
    const job = page.locator("[data-testid=job]");
    await job.waitFor();
    // Live progress: the job is seen running with pages counted before it finishes.
    const seen = new Set();
    let crawledWhileRunning = 0;
    for (let i = 0; i < 600; i++) {
      const status = await job.getAttribute("data-status");
      seen.add(status);
      if (status === "running") {
        crawledWhileRunning = Math.max(crawledWhileRunning, Number(await page.locator("[data-testid=pages-crawled]").textContent()));
      }
      if (status === "succeeded" || status === "failed") break;
      await page.waitForTimeout(100); // poll: the job's status attribute, until it finishes
    }
    assert.ok(seen.has("running"), `the job was seen running: ${[...seen]}`);
    assert.ok(seen.has("succeeded"), `the job succeeded: ${[...seen]}`);
    assert.ok(crawledWhileRunning >= 1, "pages were counted while it ran");
    assert.equal(await page.locator("[data-testid=pages-crawled]").textContent(), "4");
    assert.ok(Number(await page.locator("[data-testid=chunks]").textContent()) >= 4);
    await page.locator("main .pill[data-status=ready]").first().waitFor();
    assert.deepEqual(errors, []);
    await close();
  });

  test("switches the widget on and copies the snippet, which then loads", async () => {
    const { page, close } = await newPage();
    await signIn(page, ownerKey);
    await open(page, `/sites/${state.siteId}`);
    const toggle = page.locator("#embed-switch");
    const copy = page.locator("button", { hasText: /^Copy$/ });
    assert.equal(await toggle.getAttribute("aria-checked"), "false");
    assert.ok(await copy.isDisabled(), "copy waits for the widget to be on");
    await toggle.click();
    await page.locator("#embed-switch[aria-checked=true]").waitFor();
    await page.locator("[role=status]", { hasText: "The widget is on." }).waitFor();
    await copy.click();
    await page.locator("[role=status]", { hasText: "Copied to the clipboard." }).waitFor();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    assert.equal(copied, `<script src="${runner.base}/api/embed/script?site_id=${state.siteId}" async></script>`);
    const src = copied.match(/src="([^"]+)"/)[1];
    const script = await fetch(src);
    assert.equal(script.status, 200, "the copied tag loads the widget");
    await close();
  });

  test("previews the real widget as its settings are typed, and saves them", async () => {
    const { page, close } = await newPage();
    await signIn(page, ownerKey);
    await open(page, `/sites/${state.siteId}`);
    const frame = page.frameLocator("iframe.preview");
    await frame.locator("kotoba-chat").waitFor({ state: "attached" });
    const primary = () =>
      page
        .frame({ url: /preview\.html/ })
        .evaluate(() =>
          [...document.querySelector("kotoba-chat").shadowRoot.querySelectorAll("*")]
            .map((e) => e.style.getPropertyValue("--primary"))
            .find(Boolean),
        );
    await page.locator("#w-color").fill("#b91c1c");
    for (let i = 0; i < 100 && (await primary()) !== "#b91c1c"; i++) await page.waitForTimeout(50); // poll: the frame re-mounts the widget
    assert.equal(await primary(), "#b91c1c", "the preview follows the colour as it is picked");
    await page.locator("#w-welcome").fill("Welcome to Hinoki Ryokan!");
    await frame.locator("kotoba-chat .bubble").click();
    await frame.locator("kotoba-chat").getByText("Welcome to Hinoki Ryokan!").waitFor();
    await page.locator("button", { hasText: "Save appearance" }).click();
    await page.locator("#widget-h ~ div [role=status]", { hasText: "Saved." }).waitFor();
    const saved = await runner.call("GET", `/api/sites/${state.siteId}`, { key: ownerKey });
    assert.equal(saved.widget.color_primary, "#b91c1c");
    assert.equal(saved.widget.welcome_message, "Welcome to Hinoki Ryokan!");
    await close();
  });

  test("changes the prompt, compares versions and rolls back", async () => {
    const { page, close } = await newPage();
    await signIn(page, ownerKey);
    await open(page, `/sites/${state.siteId}`);
    const text = page.locator("#prompt-text");
    const original = await text.inputValue();
    await text.fill(original + "\nAlways mention the open-air baths.");
    await page.locator("button", { hasText: "Save as a new version" }).click();
    await page.locator("#prompt-h ~ p", { hasText: "Version 2 is in force." }).waitFor();
    const diff = page.locator("[data-testid=diff]");
    await diff.waitFor();
    assert.equal(await diff.locator("ins").count(), 1);
    assert.match(await diff.locator("ins").textContent(), /Always mention the open-air baths\./);
    assert.equal(await diff.locator("del").count(), 0);
    // Compared the other way round, the line is a deletion.
    await page.locator("#diff-from").selectOption("2");
    await page.locator("#diff-to").selectOption("1");
    await diff.locator("del").first().waitFor();
    assert.match(await diff.locator("del").textContent(), /Always mention/);

    await page.locator("button", { hasText: "Roll back to v1" }).click();
    await page.locator("#prompt-h ~ p", { hasText: "Version 3 is in force." }).waitFor();
    // The editor takes the rolled-back text once the site is read again.
    await page.waitForFunction((o) => document.querySelector("#prompt-text").value === o, original);
    const versions = await runner.call("GET", `/api/sites/${state.siteId}/prompt/versions`, { key: ownerKey });
    assert.equal(versions.versions.length, 3);
    await close();
  });

  test("reads the usage charts after chats and exports them as CSV", async () => {
    for (const message of ["When is check-in?", "Is there parking?", "When does the bath open?"]) {
      await runner.call("POST", "/api/chat", { key: ownerKey, body: { site_id: state.siteId, message } });
    }
    const { page, close } = await newPage();
    await signIn(page, ownerKey);
    await page.locator("nav a", { hasText: "Usage" }).click();
    await page.locator("[data-testid=total-chats]").waitFor();
    assert.equal(await page.locator("[data-testid=total-chats]").textContent(), "3");
    assert.equal(await page.locator("figure.chart canvas").count() >= 3, true, "three charts drawn");
    const today = new Date().toISOString().slice(0, 10);
    const chats = page.locator("figure.chart").first();
    await chats.locator("summary").click();
    assert.equal(await chats.locator(`tr:has(th:text-is("${today}")) td`).textContent(), "3");
    const csvOf = async (button) => {
      const download = page.waitForEvent("download");
      await page.getByRole("button", { name: button, exact: true }).click();
      return fs.readFileSync(await (await download).path(), "utf8");
    };
    const csv = await csvOf("Download CSV");
    assert.match(csv, /^date,chats,embedding_tokens,cost_usd\n/);
    assert.match(csv, new RegExp(`^${today},3,`, "m"));
    // The month by site (named) and by model, as the API counts them.
    const report = await runner.call("GET", "/api/usage", { key: ownerKey });
    const siteRow = page.locator(`[data-testid=by-site] tr[data-site="${state.siteId}"]`);
    assert.equal(await siteRow.locator("th").textContent(), "Hinoki Ryokan");
    assert.equal(await siteRow.locator("td").first().textContent(), "3");
    const model = report.models.find((m) => m.model === "gpt-4o-mini");
    assert.ok(model && model.requests >= 3 && model.cost_usd > 0, JSON.stringify(report.models));
    const modelRow = page.locator('[data-testid=by-model] tr[data-model="gpt-4o-mini"]');
    assert.equal(await modelRow.locator("td").first().textContent(), model.requests.toLocaleString("en-US"));
    assert.match(await csvOf("Download CSV by site"), new RegExp(`^${state.siteId},Hinoki Ryokan,3,`, "m"));
    assert.match(
      await csvOf("Download CSV by model"),
      new RegExp(`^gpt-4o-mini,${model.requests},${model.input_tokens},${model.output_tokens},0,${model.cost_usd}\n`, "m"),
    );
    // Another month: its own (empty) numbers.
    const d = new Date();
    const previous = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 1, 1)).toISOString().slice(0, 7);
    await page.locator("#usage-month").fill(previous);
    await page.locator("main h2", { hasText: new Date(previous + "-01T00:00:00Z").toLocaleString("en-US", { month: "long", timeZone: "UTC" }) }).waitFor();
    assert.equal(await page.locator("[data-testid=total-chats]").textContent(), "0");
    await close();
  });

  test("sees credits: balance, usage by function, ledger and packages in yen", async () => {
    const { page, close } = await newPage();
    await signIn(page, ownerKey);
    await page.locator("nav a", { hasText: "Credits" }).click();
    await page.locator("[data-testid=credits-balance]").waitFor();
    const balance = await runner.call("GET", "/api/credits/balance", { key: ownerKey });
    assert.equal(
      await page.locator("[data-testid=credits-balance]").textContent(),
      `${balance.balance.toLocaleString("en-US")} credits`,
    );
    await page.locator("table.by-function th", { hasText: "Chat" }).waitFor();
    await page.locator("tr[data-type=monthly_grant]").waitFor();
    await page.locator("tr[data-type=usage]").first().waitFor();
    // This month's analysis, as the API reports it.
    const analytics = await runner.call("GET", "/api/credits/analytics", { key: ownerKey });
    await page.locator("[data-testid=projected]").waitFor();
    assert.equal(
      await page.locator("[data-testid=projected]").textContent(),
      `${analytics.projected_month.projected_credits.toLocaleString("en-US")} credits`,
    );
    await page.locator('#analytics-h ~ div tr[data-function="chat"]').waitFor();
    assert.match(await page.locator("[data-package]").textContent(), /¥4,800/);
    assert.doesNotMatch(await page.locator("[data-package]").textContent(), /4,800\.00/);
    await close();
  });

  test(
    "sets a low-balance threshold with automatic top-up, and the package's credits arrive through Stripe's webhook",
    { skip: !STRIPE && "needs localstripe (run under infra/dev/with-localstripe)" },
    async () => {
      // A subscription paid with a card: the card saved for off-session top-ups.
      const card = await stripe("/v1/payment_methods", {
        type: "card",
        "card[number]": "4242424242424242",
        "card[exp_month]": "12",
        "card[exp_year]": "2034",
        "card[cvc]": "123",
      });
      await runner.call("POST", "/api/billing/subscribe", { key: ownerKey, body: { plan: "pro", payment_method: card.id } });
      const { page, close } = await newPage();
      await signIn(page, ownerKey);
      await page.locator("nav a", { hasText: "Credits" }).click();
      await page.locator("#topup-threshold").waitFor();
      const before = await runner.call("GET", "/api/credits/balance", { key: ownerKey });
      await page.locator("#topup-switch").click();
      await page.locator("#topup-threshold").fill(String(before.balance + 1000));
      await page.locator("#topup-package").selectOption({ index: 0 });
      await page.locator("#topup-cap").fill("1");
      await page.locator("button", { hasText: "Save top-up settings" }).click();
      await page.locator("#topup-h ~ form [role=status]", { hasText: "Saved." }).waitFor();
      const saved = (await runner.call("GET", "/api/credits/balance", { key: ownerKey })).auto_top_up;
      assert.equal(saved.enabled, true);
      assert.equal(saved.threshold, before.balance + 1000);
      assert.equal(saved.monthly_cap, 1);
      // The next AI action settles below the threshold: one top-up starts, paid off-session; the
      // credits come only with payment_intent.succeeded.
      await runner.call("POST", "/api/chat", { key: ownerKey, body: { site_id: state.siteId, message: "Parking?" } });
      let paid = "0";
      for (let i = 0; i < 150 && paid !== "5,000"; i++) {
        await page.reload();
        await page.locator("[data-testid=credits-paid]").waitFor();
        paid = await page.locator("[data-testid=credits-paid]").textContent();
        if (paid !== "5,000") await page.waitForTimeout(200); // poll: until the webhook has credited the purchase
      }
      assert.equal(paid, "5,000", "the package's credits arrived");
      await page.locator("tr[data-type=purchase]").waitFor();
      assert.match(await page.locator("tr[data-type=purchase]").textContent(), /\+5,000/);
      await close();
    },
  );

  test(
    "buys a package with the saved card and sees the balance change once Stripe's webhook credits it",
    { skip: !STRIPE && "needs localstripe (run under infra/dev/with-localstripe)" },
    async () => {
      // The card saved with the subscription in the previous test pays.
      const before = await runner.call("GET", "/api/credits/balance", { key: ownerKey });
      const { page, close } = await newPage();
      await signIn(page, ownerKey);
      await page.locator("nav a", { hasText: "Credits" }).click();
      await page.locator("[data-buy]").first().click();
      await page.locator("button", { hasText: "Pay now" }).click();
      await page.locator(".buy [role=status]", { hasText: "credits added." }).waitFor({ timeout: 60_000 });
      const after = await runner.call("GET", "/api/credits/balance", { key: ownerKey });
      const bought = after.paid - before.paid;
      assert.ok(bought > 0, "paid credits went up");
      assert.equal(after.total_purchased - before.total_purchased, bought);
      await page.locator("[data-testid=credits-paid]", { hasText: after.paid.toLocaleString("en-US") }).waitFor();
      await close();
    },
  );

  test(
    "buys a package with a new card entered in Stripe.js's card element (localstripe's Stripe.js)",
    { skip: !STRIPE && "needs localstripe (run under infra/dev/with-localstripe)" },
    async () => {
      const before = await runner.call("GET", "/api/credits/balance", { key: ownerKey });
      const { page, close, errors } = await newPage();
      const seen = [];
      page.on("request", (r) => seen.push(r.url()));
      await signIn(page, ownerKey);
      await page.locator("nav a", { hasText: "Credits" }).click();
      await page.locator("[data-buy-new]").first().click();
      // The card element Stripe.js mounts (localstripe's: five plain inputs).
      const field = (name) => page.locator(`[data-testid=card-element] input[placeholder=${name}]`);
      await field("number").waitFor();
      await field("number").fill("4242424242424242");
      await field("exp_month").fill("12");
      await field("exp_year").fill("34");
      await field("cvc").fill("123");
      await field("postal_code").fill("15000");
      await page.getByRole("button", { name: /^Pay ¥/ }).click();
      await page.locator(".buy [role=status]", { hasText: "credits added." }).waitFor({ timeout: 60_000 });
      const after = await runner.call("GET", "/api/credits/balance", { key: ownerKey });
      assert.ok(after.paid > before.paid, "paid credits went up");
      // The card number went to Stripe, never to Kotoba.
      const toKotoba = seen.filter((u) => u.startsWith(runner.base));
      assert.ok(toKotoba.some((u) => u.endsWith("/api/billing/card-setup")), toKotoba.join("\n"));
      assert.ok(seen.some((u) => u.startsWith(STRIPE) && /\/v1\/setup_intents\/seti_\w+\/confirm$/.test(u)), seen.join("\n"));
      assert.deepEqual(errors, []);
      await close();
    },
  );

  test(
    "compares the plans and upgrades through Stripe Checkout, and is told when Stripe sends it back",
    { skip: !STRIPE && "needs localstripe (run under infra/dev/with-localstripe)" },
    async () => {
      const { page, close } = await newPage();
      await signIn(page, ownerKey);
      await page.locator("nav a", { hasText: "Plans" }).click();
      await page.locator('th[data-plan="pro"][aria-current="true"]').waitFor();
      const sites = await page.locator("table.plans tr", { hasText: "Sites" }).locator("td").allTextContents();
      assert.deepEqual(sites, ["3", "20", "200"], "the plans' site limits, from the API");
      assert.equal(await page.locator("button", { hasText: "Switch to Starter" }).count(), 0, "starter is not sold here");
      // Stripe's hosted page is not on loopback: the test answers for it and checks the browser went there.
      await page.route(
        (url) => url.origin !== runner.base,
        (route) => route.fulfill({ status: 200, contentType: "text/html", body: "<title>Checkout</title>" }),
      );
      await page.locator("button", { hasText: "Switch to Enterprise" }).click();
      // The session URL Stripe answered (the front's), which the API handed to the page.
      await page.waitForURL("https://checkout.stripe.com/c/pay/cs_test_console");
      const asked = stripeFront.hosted.find((h) => h.path === "/v1/checkout/sessions");
      assert.ok(asked, "a Checkout session was created");
      assert.match(JSON.stringify(asked.form), /kotoba-console-enterprise-/, "for the enterprise price");
      assert.match(asked.form.success_url, /\/console\/billing\?checkout=success/, "Stripe sends the browser back to the console");
      await page.goto(`${runner.base}/console/billing?checkout=success`);
      await page.locator(".banner", { hasText: "Your plan changes as soon as Stripe confirms the payment." }).waitFor();
      await close();
    },
  );

  test("takes a phone number, versions the greeting and reads a call's transcript", async () => {
    runner.insertCallLog({
      call_sid: "CA0123456789abcdef0123456789abcdef",
      tenant_id: tenant,
      from: "+819012345678",
      to: NUMBER,
      started_at: new Date(Date.now() - 3600_000).toISOString(),
      ended_at: new Date(Date.now() - 3480_000).toISOString(),
      duration_seconds: 120,
      end_reason: "caller_disconnected",
      transcript: [
        { offset_ms: 0, speaker: "assistant", text: "Hello, Hinoki Ryokan." },
        { offset_ms: 4200, speaker: "caller", text: "Do you have a room tonight?" },
      ],
      summary: "A caller asked about a room for tonight.",
      summary_source: "model",
      model: "gpt-realtime",
      usage: { input_text_tokens: 10, input_audio_tokens: 200, output_text_tokens: 20, output_audio_tokens: 300, responses: 2 },
      cost_micros: 120000,
      metrics: { frames_in: 6000, frames_out: 5000, barge_ins: 0 },
    });
    const { page, close } = await newPage();
    await signIn(page, ownerKey);
    await page.locator("nav a", { hasText: "Phone" }).click();
    await page.locator("button", { hasText: "Take this number" }).click();
    await page.locator("[role=status]", { hasText: `${NUMBER} now answers for you.` }).waitFor();
    await page.locator("ul.numbers .number", { hasText: NUMBER }).waitFor();

    await page.locator("#v-greeting").fill("Thank you for calling Hinoki Ryokan.");
    await page.locator("#recept-h ~ form button[type=submit]").click();
    await page.locator("#recept-h ~ p", { hasText: "Version 2 is in force." }).waitFor();
    await page.locator("button", { hasText: "Roll back to v1" }).click();
    await page.locator("#recept-h ~ p", { hasText: "Version 3 is in force." }).waitFor();
    assert.match(await page.locator("#v-greeting").inputValue(), /^Hello, this is AiLuna/);

    await page.locator("#calls-h ~ div a").first().click();
    await page.locator("[data-testid=call-summary]").waitFor();
    assert.equal(await page.locator("[data-testid=call-summary]").textContent(), "A caller asked about a room for tonight.");
    assert.equal(await page.locator(".transcript li").count(), 2);
    assert.match(await page.locator(".transcript li.caller").textContent(), /Do you have a room tonight\?/);
    state.callSid = "CA0123456789abcdef0123456789abcdef";
    await close();
  });

  test("adds a webhook endpoint, sends a test and replays the delivery", async () => {
    const { page, close } = await newPage();
    await signIn(page, ownerKey);
    await page.locator("nav a", { hasText: "Webhooks" }).click();
    await page.locator("#wh-url").fill(hook.url);
    await page.locator("button", { hasText: "Add endpoint" }).click();
    const secret = page.locator("#wh-secret");
    await secret.waitFor();
    assert.match(await secret.inputValue(), /^whsec_/);
    const endpoint = page.locator("li[data-webhook]");
    await endpoint.locator("button", { hasText: "Send a test" }).click();
    for (let i = 0; i < 300 && hook.got.length === 0; i++) await page.waitForTimeout(100); // poll: the worker delivers
    assert.equal(hook.got.length, 1, "the test event arrived");
    await endpoint.locator("button", { hasText: "Deliveries" }).click();
    const row = endpoint.locator("tr[data-delivery]");
    await row.first().waitFor();
    for (let i = 0; i < 100 && (await row.first().getAttribute("data-status")) !== "delivered"; i++) {
      await endpoint.locator("button", { hasText: "Deliveries" }).click();
      await endpoint.locator("button", { hasText: "Deliveries" }).click();
      await row.first().waitFor(); // poll: reopened until the log says delivered
    }
    assert.equal(await row.first().getAttribute("data-status"), "delivered");
    await row.first().locator("button", { hasText: "Replay" }).click();
    await endpoint.locator("[role=status]", { hasText: "The delivery is queued again." }).waitFor();
    for (let i = 0; i < 300 && hook.got.length < 2; i++) await page.waitForTimeout(100); // poll: the replay arrives
    assert.equal(hook.got.length, 2, "the replay arrived");
    assert.equal(hook.got[0].headers["webhook-id"], hook.got[1].headers["webhook-id"], "same message id");
    await close();
  });

  test("edits the profile and issues a key with a role, shown once", async () => {
    const { page, close } = await newPage();
    await signIn(page, ownerKey);
    await page.locator("nav a", { hasText: "Settings" }).click();
    await page.locator("#p-tz").fill("Asia/Tokyo");
    await page.locator("#p-lang").selectOption("ja");
    await page.locator("#profile-h ~ form button[type=submit]").click();
    await page.locator("#profile-h ~ form [role=status]", { hasText: "Saved." }).waitFor();
    const profile = await runner.call("GET", "/api/tenant", { key: ownerKey });
    assert.equal(profile.timezone, "Asia/Tokyo");
    assert.equal(profile.language, "ja");

    await page.locator("#key-name").fill("night manager");
    await page.locator("#key-role").selectOption("manager");
    await page.locator("button", { hasText: "Issue key" }).click();
    const issued = page.locator("[data-testid=issued-key]");
    await issued.waitFor();
    const key = await issued.inputValue();
    assert.match(key, /^kt_/);
    await page.locator("tr[data-key]", { hasText: "night manager" }).waitFor();
    const keys = await runner.call("GET", "/api/keys", { key: ownerKey });
    assert.equal(keys.keys.find((k) => k.name === "night manager").role, "manager");
    await close();
  });
});

describe("the overview", () => {
  for (const [status, banner] of [
    ["past_due", "Your last payment failed."],
    ["trialing", "You are on a trial."],
    ["canceled", "Your subscription is not active"],
  ]) {
    test(`shows a ${status} subscription's banner`, async () => {
      const other = await runner.call("POST", "/api/admin/tenants", { body: { name: `Banner ${status}`, plan: "starter" } });
      await runner.call("PUT", `/api/admin/tenants/${other.tenant_id}/subscription`, { body: { status } });
      const { page, close } = await newPage();
      await signIn(page, other.api_key);
      const shown = page.locator(".banner", { hasText: banner });
      await shown.waitFor();
      assert.equal(await shown.getAttribute("role"), status === "trialing" ? "status" : "alert");
      assert.equal(await page.locator("[data-testid=plan]").textContent(), "Starter");
      await close();
    });
  }
});

describe("a viewer", () => {
  test("sees no write controls, and is refused with 403 when it calls them anyway", async () => {
    const { page, close } = await newPage();
    await signIn(page, viewerKey);
    assert.equal(await page.locator(".role").textContent(), "Viewer");
    await page.locator("nav a", { hasText: "Sites" }).click();
    await page.locator("table a", { hasText: "Hinoki Ryokan" }).click();
    await page.locator("#prompt-text").waitFor();
    await page.locator(".loading").first().waitFor({ state: "detached" });
    for (const control of ["#train-url", "#embed-switch", "[role=switch]", "button[type=submit]", "button:has-text('Roll back')"]) {
      assert.equal(await page.locator(`main ${control}`).count(), 0, `no ${control}`);
    }
    assert.ok(await page.locator("#prompt-text").isDisabled(), "the prompt is read-only");
    for (const route of ["/sites", "/phone", "/webhooks", "/settings", "/billing"]) {
      await open(page, route);
      assert.equal(await page.locator("main button[type=submit]").count(), 0, `no submit on ${route}`);
      assert.equal(await page.locator("main button.danger").count(), 0, `no destructive button on ${route}`);
      assert.equal(await page.locator("main button.primary").count(), 0, `no primary action on ${route}`);
    }
    assert.equal(await page.locator("#keys-h").count(), 0, "no keys for a viewer");

    const token = await csrf(page);
    const refused = await page.evaluate(
      async ({ token, siteId }) => {
        const r = await fetch(`/api/sites/${siteId}`, {
          method: "PATCH",
          headers: { "content-type": "application/json", "x-csrf-token": token },
          body: JSON.stringify({ is_embed_enabled: false }),
        });
        return { status: r.status, body: await r.json() };
      },
      { token, siteId: state.siteId },
    );
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error.code, "forbidden_role");
    // Without the CSRF token the cookie alone changes nothing either.
    const noCsrf = await page.evaluate(async () => (await fetch("/api/sites", { method: "POST", body: "{}" })).status);
    assert.equal(noCsrf, 403);
    await close();
  });
});

describe("the operator", () => {
  test("signs in with the admin key and sees every tenant's month", async () => {
    const { page, close } = await newPage();
    await signIn(page, runner.adminKey);
    await page.locator(`tr[data-tenant="${tenant}"]`).waitFor();
    const row = await page.locator(`tr[data-tenant="${tenant}"]`).textContent();
    assert.match(row, /Hinoki Ryokan KK/);
    assert.match(row, /Pro/);
    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
    assert.ok(!stored.includes(runner.adminKey), "the admin key is not stored");

    // A new tenant: its owner key shown once, and it signs in.
    await page.locator("#tenant-name").fill("Sakura Clinic");
    await page.locator("#tenant-plan").selectOption("enterprise");
    await page.locator("button", { hasText: "Create tenant" }).click();
    const key = await page.locator("[data-testid=tenant-key]").inputValue();
    assert.match(key, /^kt_/);
    const signedIn = await fetch(`${runner.base}/api/console/session`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ api_key: key }),
    });
    assert.equal(signedIn.status, 201);
    const created = (await signedIn.json()).tenant_id;
    const clinic = page.locator(`tr[data-tenant="${created}"]`);
    await clinic.waitFor();
    assert.match(await clinic.textContent(), /Sakura Clinic[\s\S]*Enterprise/);
    // Its subscription, set by hand until Stripe owns it.
    await clinic.locator("select").selectOption("past_due");
    await clinic.locator("button", { hasText: "Save" }).click();
    await page.locator(`tr[data-tenant="${created}"] td`, { hasText: "Payment overdue" }).waitFor();
    const profile = await runner.call("GET", "/api/tenant", { key });
    assert.equal(profile.subscription_status, "past_due");

    // The credit packages: the whole catalogue, and a new one priced in dollars (typed in dollars,
    // sent in cents), on sale at once for tenants.
    await page.locator("nav a", { hasText: "Packages" }).click();
    await page.locator("[data-package-row]").first().waitFor();
    await page.locator("#package-name").fill("Clinic pack");
    await page.locator("#package-credits").fill("2000");
    await page.locator("#package-currency").selectOption("USD");
    await page.locator("#package-price").fill("19.99");
    await page.locator("button", { hasText: "Create package" }).click();
    const pack = page.locator("tr[data-package-row]", { hasText: "Clinic pack" });
    await pack.waitFor();
    assert.match(await pack.textContent(), /2,000[\s\S]*\$19\.99[\s\S]*On sale/);
    await axe(page, "packages (en, desktop)");
    const onSale = await runner.call("GET", "/api/credits/packages", { key });
    const clinicPack = onSale.packages.find((p) => p.display_name === "Clinic pack");
    assert.equal(clinicPack.price, 1999);
    assert.equal(clinicPack.currency, "USD");
    await close();
  });
});

describe("every page", () => {
  const TENANT_PAGES = () => [
    ["overview", "/"],
    ["sites", "/sites"],
    ["site", `/sites/${state.siteId}`],
    ["usage", "/usage"],
    ["credits", "/credits"],
    ["phone", "/phone"],
    ["call", `/phone/calls/${state.callSid}`],
    ["webhooks", "/webhooks"],
    ["plans", "/billing"],
    ["settings", "/settings"],
  ];

  for (const lang of ["en", "ja"]) {
    for (const [size, viewport] of [
      ["desktop", DESKTOP],
      ["360", PHONE],
    ]) {
      test(`is axe-clean and fits, ${lang} at ${size}; screenshots saved`, async () => {
        const { page, close, errors } = await newPage({ viewport, lang });
        await page.goto(`${runner.base}/console`);
        await page.locator("#api-key").waitFor();
        await axe(page, `sign-in (${lang}, ${size})`);
        await shoot(page, `signin-${lang}-${size}`);
        await signIn(page, ownerKey);
        for (const [name, route] of TENANT_PAGES()) {
          await open(page, route);
          if (name === "usage") await page.locator("figure.chart canvas").first().waitFor();
          if (name === "site") await page.frameLocator("iframe.preview").locator("kotoba-chat").waitFor({ state: "attached" });
          await axe(page, `${name} (${lang}, ${size})`);
          const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
          assert.ok(overflow <= 0, `${name} (${lang}, ${size}) scrolls sideways by ${overflow}px`);
          if (lang === "ja") {
            assert.equal(await page.evaluate(() => document.documentElement.lang), "ja");
            assert.ok(
              /[\u3040-\u30ff\u4e00-\u9fff]/.test(await page.locator("nav").textContent()),
              "the navigation is in Japanese",
            );
          }
          await shoot(page, `${name}-${lang}-${size}`);
        }
        // The operator's page, in the same language and size.
        await page.locator("button.signout").click();
        await signIn(page, runner.adminKey);
        await page.locator(`tr[data-tenant]`).first().waitFor();
        await axe(page, `tenants (${lang}, ${size})`);
        await shoot(page, `tenants-${lang}-${size}`);
        assert.deepEqual(errors, []);
        await close();
      });
    }
  }

  test("works by keyboard, and on a phone through the menu button", async () => {
    const { page, close } = await newPage({ viewport: PHONE });
    await signIn(page, ownerKey);
    await page.reload();
    await page.locator("main h1").waitFor();
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
    await page.keyboard.press("Enter");
    assert.equal(await page.evaluate(() => document.activeElement.id), "main", "the skip link moves focus to the content");
    // At 360 px the navigation sits behind the menu button.
    assert.ok(!(await page.locator("nav#nav").isVisible()));
    const toggle = page.locator("button.menu-toggle");
    await toggle.focus();
    await page.keyboard.press("Enter");
    assert.equal(await toggle.getAttribute("aria-expanded"), "true");
    await page.locator("nav a", { hasText: "Usage" }).focus();
    await page.keyboard.press("Enter");
    await page.locator("main h1", { hasText: "Usage" }).waitFor();
    assert.equal(
      await page.evaluate(() => `${document.activeElement.tagName}:${document.activeElement.textContent}`),
      "H1:Usage",
      "focus moves to the new view's heading",
    );
    assert.equal(await toggle.getAttribute("aria-expanded"), "false", "the menu closes after navigating");
    // The embed switch works from the keyboard too.
    await open(page, `/sites/${state.siteId}`);
    const toggleEmbed = page.locator("#embed-switch");
    const was = await toggleEmbed.getAttribute("aria-checked");
    await toggleEmbed.focus();
    await page.keyboard.press("Space");
    await page.locator(`#embed-switch[aria-checked="${was === "true" ? "false" : "true"}"]`).waitFor();
    await page.keyboard.press("Space");
    await page.locator(`#embed-switch[aria-checked="${was}"]`).waitFor();
    await close();
  });

  test("switches between Japanese, Korean and English, with dates and money per locale", async () => {
    const { page, close } = await newPage();
    await signIn(page, ownerKey);
    await open(page, "/credits");
    await page.locator("header select").selectOption("ja");
    await page.locator("main h1", { hasText: "クレジット" }).waitFor();
    assert.match(await page.locator("[data-testid=credits-balance]").textContent(), /クレジット$/);
    assert.match(await page.locator("[data-package]", { hasText: "Starter pack" }).textContent(), /[¥￥]4,800/);
    // The operator's dollar package: cents shown as dollars, with decimals.
    assert.match(await page.locator("[data-package]", { hasText: "Clinic pack" }).textContent(), /\$19\.99/);
    await page.locator("header select").selectOption("ko");
    await page.locator("main h1", { hasText: "크레딧" }).waitFor();
    assert.equal(await page.evaluate(() => document.documentElement.lang), "ko");
    assert.match(await page.locator("nav").textContent(), /개요/);
    await page.locator("header select").selectOption("en");
    await page.locator("main h1", { hasText: "Credits" }).waitFor();
    await close();
  });
});
