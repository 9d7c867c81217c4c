// The chat widget in real headless Chromium: embedding, streaming, sources, feedback, origin refusal,
// XSS resistance, isolation from host CSS, accessibility, languages, small screens and error handling.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import zlib from "node:zlib";

import { launch, loopbackOnly } from "../support/browser.mjs";
import { startEnv } from "../support/env.mjs";

const ARTIFACTS = path.resolve(import.meta.dirname, "../../../artifacts");
const BUDGET_GZIP_BYTES = 15 * 1024;

let env;
let browser;
const offenders = [];

before(async () => {
  env = await startEnv();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await env?.close();
  assert.deepEqual(offenders, [], "no request left loopback");
});

async function newPage({ origin, site, hostile = false, locale = "en-US", viewport = { width: 1280, height: 800 } }) {
  // Reduced motion: the widget's transitions are off, so what a test reads is the settled state.
  const context = await browser.newContext({ locale, viewport, reducedMotion: "reduce" });
  await loopbackOnly(context, offenders);
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  const url = `${origin}/host.html?site=${encodeURIComponent(site)}${hostile ? "&css=hostile" : ""}`;
  await page.goto(url);
  await page.locator("kotoba-chat .bubble").waitFor();
  return { page, context, errors, close: () => context.close() };
}

const w = (page, selector) => page.locator(`kotoba-chat ${selector}`);

async function ask(page, question) {
  await w(page, "textarea").fill(question);
  await w(page, "textarea").press("Enter");
}

describe("embedded on an allowed origin", () => {
  test("opens, streams an answer with sources, and stores thumbs-up feedback", async () => {
    const { page, close, errors } = await newPage({ origin: env.host.allowed, site: env.sites.main });
    const bubble = w(page, ".bubble");
    assert.equal(await bubble.getAttribute("aria-expanded"), "false");
    await bubble.click();
    await w(page, ".panel").waitFor({ state: "visible" });
    assert.equal(await bubble.getAttribute("aria-expanded"), "true");
    assert.equal(
      await page.evaluate(() => document.querySelector("kotoba-chat").shadowRoot.activeElement?.tagName),
      "TEXTAREA",
      "focus moves into the panel",
    );

    const chat = page.waitForResponse((r) => r.url().includes("/api/embed/chat"));
    await ask(page, "How much is the Pro plan?");
    assert.equal((await chat).status(), 200);
    const answer = w(page, ".msg.bot").last();

    // Streaming: text shows up while the message is still busy, then grows to the full answer.
    await page.waitForFunction(() => {
      const m = [...document.querySelector("kotoba-chat").shadowRoot.querySelectorAll(".msg.bot")].at(-1);
      return m && m.getAttribute("aria-busy") === "true" && !m.querySelector(".pending") && m.textContent.length > 10;
    });
    const partial = await answer.locator(".body").textContent();
    await page.waitForFunction(
      () =>
        [...document.querySelector("kotoba-chat").shadowRoot.querySelectorAll(".msg.bot")]
          .at(-1)
          .getAttribute("aria-busy") === "false",
    );
    const full = await answer.locator(".body").textContent();
    assert.ok(full.length > partial.length, `the answer grew while streaming (${partial.length} → ${full.length})`);
    assert.match(full, /4,980 yen/);
    assert.ok(
      env.peer.requests.some((r) => r.stream === true),
      "the answer came from the model peer, streamed",
    );
    assert.equal(await answer.locator("strong").first().textContent(), "Pro plan", "bold from the markdown subset");
    assert.ok((await answer.locator(".body li").count()) >= 2, "a list from the markdown subset");

    // Sources: links that open in a new tab without handing the opener over.
    const links = answer.locator(".sources a");
    assert.ok((await links.count()) >= 1, "at least one source");
    for (const link of await links.all()) {
      assert.equal(await link.getAttribute("rel"), "noopener noreferrer");
      assert.equal(await link.getAttribute("target"), "_blank");
      assert.match(await link.getAttribute("href"), /^https?:\/\//);
    }
    assert.match(await links.first().textContent(), /Pricing/);

    // The session id is kept for the tab.
    const session = await page.evaluate((site) => sessionStorage.getItem("kotoba.session." + site), env.sites.main);
    assert.match(session, /^sess_/);

    // Thumbs up reaches the feedback route and is stored.
    const sent = page.waitForRequest((r) => r.url().includes("/api/embed/feedback"));
    const stored = page.waitForResponse((r) => r.url().includes("/api/embed/feedback"));
    await answer.locator('.fb button[data-rating="up"]').click();
    const payload = JSON.parse((await sent).postData());
    assert.equal((await stored).status(), 200);
    assert.equal(payload.rating, "up");
    assert.equal(payload.session_id, session);
    await answer.locator(".fb [role=status]").filter({ hasText: "Thanks" }).waitFor();
    assert.equal(await answer.locator('.fb button[data-rating="up"]').getAttribute("aria-pressed"), "true");
    const record = await env.feedbackFor(payload.message_id, payload.session_id);
    assert.ok(record, "the feedback is stored");
    assert.equal(record.rating, "up");

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, "widget-open.png") });
    assert.ok(fs.statSync(path.join(ARTIFACTS, "widget-open.png")).size > 1000);
    assert.deepEqual(errors, []);
    await close();
  });

  test("the served script fits the budget: at most 15 KB gzipped", async () => {
    const res = await fetch(`${env.apiBase}/api/embed/script?site_id=${env.sites.main}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/javascript; charset=utf-8");
    const body = Buffer.from(await res.arrayBuffer());
    const gzipped = zlib.gzipSync(body, { level: 9 }).length;
    console.log(`embed script: ${body.length} bytes, ${gzipped} bytes gzipped (budget ${BUDGET_GZIP_BYTES})`);
    assert.ok(gzipped <= BUDGET_GZIP_BYTES, `${gzipped} bytes gzipped is over the budget`);
  });
});

describe("the local runner's demo page", () => {
  test("GET /demo shows the demo site's widget, which answers from the sample site at once", async () => {
    const context = await browser.newContext();
    await loopbackOnly(context, offenders);
    const page = await context.newPage();
    const response = await page.goto(`${env.apiBase}/demo`);
    assert.equal(response.status(), 200);
    assert.equal(await page.locator("kotoba-chat").getAttribute("data-site-id"), env.runner.demo.siteId);
    await w(page, ".bubble").click();
    await ask(page, "What time is check-in?");
    await page.waitForFunction(
      () =>
        [...document.querySelector("kotoba-chat").shadowRoot.querySelectorAll(".msg.bot")]
          .at(-1)
          ?.getAttribute("aria-busy") === "false",
    );
    assert.match(await w(page, ".msg.bot").last().textContent(), /4,980 yen/);
    // The sources are the sample hotel's pages the runner serves and trained the demo site on.
    const sources = await w(page, ".msg.bot")
      .last()
      .locator(".sources a")
      .evaluateAll((links) => links.map((a) => a.getAttribute("href")));
    assert.ok(
      sources.includes(`${env.apiBase}/demo/site/en/checkin.html`),
      `the check-in page is a source: ${sources}`,
    );
    await context.close();
  });
});

describe("embedded on an origin the site does not allow", () => {
  test("shows the refusal message, and the API answered 403", async () => {
    const { page, close } = await newPage({ origin: env.host.other, site: env.sites.main });
    await w(page, ".bubble").click();
    const chat = page.waitForResponse((r) => r.url().includes("/api/embed/chat"));
    await ask(page, "How much is the Pro plan?");
    assert.equal((await chat).status(), 403);
    const alert = w(page, ".error[role=alert]");
    await alert.waitFor({ state: "visible" });
    assert.match(await alert.textContent(), /not available on this website/);
    assert.ok(await w(page, ".error button").isVisible(), "a retry button");
    await close();
  });
});

/** How long a payload gets to run: the negative check waits exactly as long as its control. */
const PAYLOAD_WINDOW_MS = 5000;

describe("untrusted content", () => {
  test("HTML and script payloads from pages and from the model never run", async () => {
    const { page, close, errors } = await newPage({ origin: env.host.allowed, site: env.sites.xss });
    await w(page, ".bubble").click();
    env.peer.setMode("echo"); // the model answers with HTML and everything it was given
    try {
      const chat = page.waitForResponse((r) => r.url().includes("/api/embed/chat"));
      await ask(page, "How do I whisk matcha?");
      assert.equal((await chat).status(), 200);
      await page.waitForFunction(() => {
        const m = [...document.querySelector("kotoba-chat").shadowRoot.querySelectorAll(".msg.bot")].at(-1);
        return m && m.getAttribute("aria-busy") === "false";
      });
    } finally {
      env.peer.setMode("answer");
    }
    // Any injected handler (img onerror) gets the same window the control below needs to fire in.
    const ran = await page
      .waitForFunction(() => window.__kotobaPwned !== undefined, null, { timeout: PAYLOAD_WINDOW_MS })
      .then(
        () => true,
        () => false,
      );
    const flag = await page.evaluate(() => window.__kotobaPwned);
    assert.equal(ran, false, `a payload ran: ${flag}`);
    const shadow = await page.evaluate(() => {
      const root = document.querySelector("kotoba-chat").shadowRoot;
      return {
        injected: root.querySelectorAll("img:not(.bubble img), script, iframe").length,
        text: [...root.querySelectorAll(".msg.bot")].at(-1).textContent,
        hrefs: [...root.querySelectorAll("a")].map((a) => a.getAttribute("href")),
        sources: [...root.querySelectorAll(".sources a")].map((a) => a.getAttribute("href")),
      };
    });
    assert.equal(shadow.injected, 0, "no element came from model or page text");
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, "widget-untrusted-content.png") });
    assert.match(shadow.text, /<img src=x onerror=/, "the model's payload is shown as text");
    assert.ok(
      shadow.sources.some((s) => s.includes("/xss/")),
      `the payload pages were retrieved: ${shadow.sources}`,
    );
    for (const href of shadow.hrefs) assert.match(href, /^https?:\/\//, `link ${href}`);
    assert.deepEqual(errors, []);

    // Control: the very same text parsed as HTML does run, so the checks above could have failed.
    await page.evaluate((html) => {
      const probe = document.createElement("div");
      probe.innerHTML = html;
      document.body.append(probe);
    }, shadow.text);
    await page.waitForFunction(() => window.__kotobaPwned !== undefined, null, { timeout: PAYLOAD_WINDOW_MS });
    await close();
  });
});

describe("isolation from the host page", () => {
  const PROPS = [
    "display",
    "position",
    "font-family",
    "font-size",
    "color",
    "background-color",
    "line-height",
    "letter-spacing",
    "text-transform",
    "box-sizing",
    "margin-top",
    "margin-left",
    "padding-top",
    "padding-left",
    "border-top-width",
    "border-top-style",
    "width",
    "height",
    "opacity",
    "border-radius",
    "filter",
    "transform",
    "visibility",
  ];
  const PARTS = [".bubble", ".panel", "header", "h2", ".log", ".msg.bot", "textarea", ".send", "form"];

  async function styles(hostile) {
    const { page, close } = await newPage({ origin: env.host.allowed, site: env.sites.main, hostile });
    await w(page, ".bubble").click();
    await w(page, ".panel").waitFor({ state: "visible" });
    await page.mouse.move(1, 1); // off the bubble: no hover effect mid-transition
    // Whatever still animates (reduced motion aside) has finished before styles are read.
    await page.evaluate(() =>
      Promise.all(
        [document, document.querySelector("kotoba-chat").shadowRoot]
          .flatMap((root) => root.getAnimations())
          .map((a) => a.finished),
      ),
    );
    const result = await page.evaluate(
      ([parts, props]) => {
        const host = document.querySelector("kotoba-chat");
        const root = host.shadowRoot;
        const out = {
          hostHeading: getComputedStyle(document.querySelector("h1")).color,
          host: Object.fromEntries(
            ["display", "position", "transform", "filter", "z-index"].map((p) => [
              p,
              getComputedStyle(host).getPropertyValue(p),
            ]),
          ),
        };
        for (const sel of parts) {
          const el = root.querySelector(sel);
          const cs = getComputedStyle(el);
          const r = el.getBoundingClientRect();
          out[sel] = {
            ...Object.fromEntries(props.map((p) => [p, cs.getPropertyValue(p)])),
            rect: [r.x, r.y, r.width, r.height].map(Math.round),
          };
        }
        return out;
      },
      [PARTS, PROPS],
    );
    await close();
    return result;
  }

  test("host CSS restyling *, div and button does not change the widget's computed styles", async () => {
    const plain = await styles(false);
    const hostile = await styles(true);
    assert.equal(plain[".bubble"].display, "flex");
    // Control: the hostile CSS is in force on the host page itself.
    assert.notEqual(plain.hostHeading, "rgb(255, 0, 0)");
    assert.equal(hostile.hostHeading, "rgb(255, 0, 0)");
    delete plain.hostHeading;
    delete hostile.hostHeading;
    assert.deepEqual(hostile, plain);
  });
});

describe("accessibility", () => {
  test("labelled controls, live answers, Escape closes and focus returns to the bubble", async () => {
    const { page, close } = await newPage({ origin: env.host.allowed, site: env.sites.main });
    const bubble = w(page, ".bubble");
    assert.equal(await bubble.getAttribute("aria-label"), "Open chat");
    // Keyboard only: Tab reaches the bubble, Enter opens the panel.
    await page.locator("body").click({ position: { x: 5, y: 5 } });
    for (let i = 0; i < 5 && !(await bubble.evaluate((b) => b.getRootNode().activeElement === b)); i++)
      await page.keyboard.press("Tab");
    assert.ok(await bubble.evaluate((b) => b.getRootNode().activeElement === b), "Tab reaches the bubble");
    await page.keyboard.press("Enter");
    await w(page, ".panel").waitFor({ state: "visible" });
    assert.equal(await w(page, ".panel").getAttribute("role"), "dialog");
    assert.ok(await w(page, "#kotoba-title").textContent());
    assert.equal(await w(page, ".log").getAttribute("aria-live"), "polite");
    assert.equal(await w(page, "label[for=kotoba-input]").textContent(), "Your question");
    assert.equal(await w(page, ".send").getAttribute("aria-label"), "Send");
    assert.equal(await w(page, "header button").getAttribute("aria-label"), "Close chat");
    assert.equal(
      await page.evaluate(() => document.querySelector("kotoba-chat").shadowRoot.activeElement?.id),
      "kotoba-input",
    );
    await page.keyboard.press("Escape");
    await w(page, ".panel").waitFor({ state: "hidden" });
    assert.ok(await bubble.evaluate((b) => b.getRootNode().activeElement === b), "focus is back on the bubble");
    assert.equal(await bubble.getAttribute("aria-expanded"), "false");
    await close();
  });

  test("usable on a 360 px wide phone", async () => {
    const { page, close } = await newPage({
      origin: env.host.allowed,
      site: env.sites.main,
      viewport: { width: 360, height: 640 },
    });
    await w(page, ".bubble").click();
    const panel = await w(page, ".panel").boundingBox();
    assert.ok(panel.x >= 0 && panel.x + panel.width <= 360, `panel fits horizontally: ${JSON.stringify(panel)}`);
    assert.ok(panel.y >= 0 && panel.y + panel.height <= 640, `panel fits vertically: ${JSON.stringify(panel)}`);
    assert.ok(panel.width >= 300, "and uses the width");
    const input = await w(page, "textarea").boundingBox();
    const send = await w(page, ".send").boundingBox();
    assert.ok(send.x + send.width <= 360 && input.width > 150, "input and send button are on screen");
    assert.ok(send.width >= 40 && send.height >= 40, "touch-sized send button");
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, "widget-360px.png") });
    await close();
  });

  for (const [locale, open, placeholder] of [
    ["ja-JP", "チャットを開く", "ご質問を入力してください…"],
    ["ko-KR", "채팅 열기", "질문을 입력하세요…"],
    ["en-GB", "Open chat", "Type your question…"],
  ]) {
    test(`UI strings follow the browser language: ${locale}`, async () => {
      const { page, close } = await newPage({ origin: env.host.allowed, site: env.sites.main, locale });
      assert.equal(await w(page, ".bubble").getAttribute("aria-label"), open);
      assert.equal(await w(page, "textarea").getAttribute("placeholder"), placeholder);
      assert.equal(await w(page, ".root").getAttribute("lang"), locale.slice(0, 2));
      await close();
    });
  }
});

describe("errors", () => {
  const cases = [
    ["network failure", (route) => route.abort("connectionrefused"), /Could not reach the assistant/],
    [
      "402 quota",
      (route) =>
        route.fulfill({
          status: 402,
          contentType: "application/json",
          headers: { "access-control-allow-origin": "*" },
          body: JSON.stringify({
            error: { code: "quota_exceeded", message: "quota", plan: "starter", upgrade_hint: "pro" },
          }),
        }),
      /usage limit/,
    ],
    [
      "429 with Retry-After",
      (route) =>
        route.fulfill({
          status: 429,
          contentType: "application/json",
          headers: {
            "retry-after": "17",
            "access-control-allow-origin": "*",
            "access-control-expose-headers": "retry-after",
          },
          body: JSON.stringify({ error: { code: "rate_limited", message: "slow down", retry_after_seconds: 17 } }),
        }),
      /wait 17 seconds/,
    ],
  ];
  cases.push([
    "an error event in the middle of the stream",
    (route) =>
      route.fulfill({
        status: 200,
        contentType: "text/event-stream",
        headers: { "access-control-allow-origin": "*" },
        body:
          'event: delta\ndata: {"text":"Our Pro pl"}\n\n' +
          'event: error\ndata: {"error":{"code":"unavailable","message":"the chat model failed"}}\n\n',
      }),
    /Something went wrong/,
  ]);
  for (const [name, fail, message] of cases) {
    test(`${name}: a clear message, and Retry sends the question again`, async () => {
      const { page, context, close } = await newPage({ origin: env.host.allowed, site: env.sites.main });
      await context.route("**/api/embed/chat*", fail);
      await w(page, ".bubble").click();
      await ask(page, "How much is the Pro plan?");
      const alert = w(page, ".error[role=alert]");
      await alert.waitFor({ state: "visible" });
      assert.match(await alert.textContent(), message);
      assert.equal(await w(page, ".msg.user").count(), 1);
      await context.unroute("**/api/embed/chat*");
      await w(page, ".error button").click();
      await alert.waitFor({ state: "hidden" });
      await page.waitForFunction(
        () =>
          [...document.querySelector("kotoba-chat").shadowRoot.querySelectorAll(".msg.bot")]
            .at(-1)
            ?.getAttribute("aria-busy") === "false",
      );
      assert.match(await w(page, ".msg.bot").last().textContent(), /4,980 yen/);
      assert.equal(await w(page, ".msg.user").count(), 1, "the retry does not repeat the question in the log");
      await close();
    });
  }
});
