/* Kotoba chat widget. The embed-script function serves this file followed by `(<site config JSON>);`,
   so the whole file is one function expression called with the site's widget config.
   Plain modern JS: no dependencies, no third-party requests, nothing added to the host page but one
   <kotoba-chat> element whose shadow root holds the UI. Model output and page content are only ever
   rendered as text nodes (a tiny markdown subset is built with DOM APIs, never through innerHTML). */
(config) => {
  "use strict";

  const KEY = Symbol.for("kotoba.widget");
  const loaded = (window[KEY] = window[KEY] || new Set());
  if (!config || typeof config.site_id !== "string" || loaded.has(config.site_id)) return;
  loaded.add(config.site_id);
  const siteId = config.site_id;

  // The API lives where this script came from: `<base>/api/embed/script?site_id=…` (base may carry a
  // path prefix, e.g. an API Gateway stage). `currentScript` is null only when run from a callback.
  const ROUTE = "/api/embed/script";
  const me =
    document.currentScript ||
    Array.from(document.scripts).find((s) => s.src.includes(ROUTE) && s.src.includes(siteId));
  if (!me || !me.src) return;
  const src = new URL(me.src, location.href);
  const at = src.pathname.lastIndexOf(ROUTE);
  const api = src.origin + (at > 0 ? src.pathname.slice(0, at) : "");
  // Deployed, answers stream from their own endpoint (the API in front of the script buffers them). It
  // takes only signed requests, so the widget sends the body's SHA-256 for CloudFront to sign with; that
  // needs WebCrypto (secure pages), and without it the widget asks the API, whose answer comes whole.
  const streamBase =
    typeof config.stream_url === "string" && /^https:\/\/[^/]+/.test(config.stream_url) && typeof crypto === "object" && crypto.subtle
      ? config.stream_url.replace(/\/+$/, "")
      : null;

  const STRINGS = {
    en: {
      title: "Chat",
      open: "Open chat",
      close: "Close chat",
      log: "Conversation",
      input: "Your question",
      placeholder: "Type your question…",
      send: "Send",
      you: "You:",
      bot: "Assistant:",
      sources: "Sources",
      newTab: "(opens in a new tab)",
      up: "Helpful",
      down: "Not helpful",
      thanks: "Thanks for your feedback!",
      feedbackFailed: "Your feedback could not be sent.",
      thinking: "Thinking…",
      retry: "Retry",
      network: "Could not reach the assistant. Check your connection and try again.",
      forbidden: "The assistant is not available on this website.",
      quota: "The assistant has reached its usage limit. Please try again later.",
      rate: "Too many questions. Please wait {s} seconds and try again.",
      rateSoon: "Too many questions. Please wait a moment and try again.",
      failed: "Something went wrong. Please try again.",
    },
    ja: {
      title: "チャット",
      open: "チャットを開く",
      close: "チャットを閉じる",
      log: "会話",
      input: "ご質問",
      placeholder: "ご質問を入力してください…",
      send: "送信",
      you: "あなた：",
      bot: "アシスタント：",
      sources: "参考ページ",
      newTab: "（新しいタブで開きます）",
      up: "役に立った",
      down: "役に立たなかった",
      thanks: "フィードバックありがとうございます。",
      feedbackFailed: "フィードバックを送信できませんでした。",
      thinking: "回答を作成しています…",
      retry: "再試行",
      network: "アシスタントに接続できませんでした。通信環境をご確認のうえ、もう一度お試しください。",
      forbidden: "このウェブサイトではアシスタントをご利用いただけません。",
      quota: "アシスタントの利用上限に達しました。しばらくしてからもう一度お試しください。",
      rate: "質問が多すぎます。{s}秒ほど待ってから、もう一度お試しください。",
      rateSoon: "質問が多すぎます。少し待ってから、もう一度お試しください。",
      failed: "エラーが発生しました。もう一度お試しください。",
    },
    ko: {
      title: "채팅",
      open: "채팅 열기",
      close: "채팅 닫기",
      log: "대화",
      input: "질문",
      placeholder: "질문을 입력하세요…",
      send: "보내기",
      you: "나:",
      bot: "어시스턴트:",
      sources: "참고 페이지",
      newTab: "(새 탭에서 열림)",
      up: "도움이 됨",
      down: "도움이 안 됨",
      thanks: "의견을 보내 주셔서 감사합니다!",
      feedbackFailed: "의견을 보내지 못했습니다.",
      thinking: "답변을 작성하고 있습니다…",
      retry: "다시 시도",
      network: "어시스턴트에 연결할 수 없습니다. 네트워크 연결을 확인한 후 다시 시도해 주세요.",
      forbidden: "이 웹사이트에서는 어시스턴트를 사용할 수 없습니다.",
      quota: "어시스턴트 사용 한도에 도달했습니다. 나중에 다시 시도해 주세요.",
      rate: "질문이 너무 많습니다. {s}초 후에 다시 시도해 주세요.",
      rateSoon: "질문이 너무 많습니다. 잠시 후 다시 시도해 주세요.",
      failed: "문제가 발생했습니다. 다시 시도해 주세요.",
    },
  };
  const language = String(
    (navigator.languages && navigator.languages[0]) || navigator.language || "en",
  ).toLowerCase();
  const lang = language.startsWith("ja") ? "ja" : language.startsWith("ko") ? "ko" : "en";
  const T = STRINGS[lang];

  // Session id per site and tab; storage can throw (sandboxed frames, disabled storage): then memory only.
  const SESSION_KEY = "kotoba.session." + siteId;
  let memorySession = null;
  const session = {
    get() {
      try {
        return sessionStorage.getItem(SESSION_KEY) || memorySession;
      } catch {
        return memorySession;
      }
    },
    set(id) {
      memorySession = id || null;
      try {
        if (id) sessionStorage.setItem(SESSION_KEY, id);
        else sessionStorage.removeItem(SESSION_KEY);
      } catch {
        /* memory only */
      }
    },
  };

  // ---- DOM helpers: attributes through setAttribute, content as text nodes only ----
  const SVG_NS = "http://www.w3.org/2000/svg";
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false || v == null) continue;
      el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c != null) el.append(c);
    return el;
  }
  // Icons: Material Icons paths (Apache-2.0), drawn from fixed strings.
  const ICONS = {
    chat: "M20 2H4c-1.1 0-2 .9-2 2v18l4-4h14c1.1 0 2-.9 2-2V4c0-1.1-.9-2-2-2zM6 9h12v2H6V9zm8 5H6v-2h8v2zm4-6H6V6h12v2z",
    close:
      "M19 6.41 17.59 5 12 10.59 6.41 5 5 6.41 10.59 12 5 17.59 6.41 19 12 13.41 17.59 19 19 17.59 13.41 12z",
    send: "M2.01 21 23 12 2.01 3 2 10l15 2-15 2z",
    thumb:
      "M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 7.59 7.59C7.22 7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-2z",
  };
  function icon(name, flip) {
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    if (flip) svg.setAttribute("class", "flip");
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", ICONS[name]);
    svg.append(path);
    return svg;
  }
  const httpUrl = (raw, base) => {
    try {
      const u = new URL(String(raw), base);
      return u.protocol === "http:" || u.protocol === "https:" ? u : null;
    } catch {
      return null;
    }
  };
  function link(href, text) {
    const u = httpUrl(href);
    if (!u) return document.createTextNode(text);
    return h(
      "a",
      { href: u.href, target: "_blank", rel: "noopener noreferrer" },
      text,
      h("span", { class: "sr" }, " " + T.newTab),
    );
  }

  // ---- the safe markdown subset: paragraphs, line breaks, **bold**, lists, http(s) links ----
  const INLINE =
    /\*\*([^*\n]+)\*\*|\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)|(https?:\/\/[^\s<>()]*[^\s<>().,;:!?'"、。）」])/g;
  function inline(parent, text) {
    let at = 0;
    for (const m of text.matchAll(INLINE)) {
      if (m.index > at) parent.append(text.slice(at, m.index));
      if (m[1] !== undefined) parent.append(h("strong", null, m[1]));
      else if (m[2] !== undefined) parent.append(link(m[3], m[2]));
      else parent.append(link(m[4], m[4]));
      at = m.index + m[0].length;
    }
    if (at < text.length) parent.append(text.slice(at));
  }
  const ITEM = /^\s*(?:([-*•])|(\d{1,3})[.)])\s+(.*)$/;
  function markdown(container, text) {
    const out = [];
    let para = null;
    let list = null;
    for (const line of String(text).replace(/\r\n?/g, "\n").split("\n")) {
      const item = line.match(ITEM);
      if (!line.trim()) {
        para = list = null;
      } else if (item) {
        para = null;
        const ordered = item[2] !== undefined;
        if (!list || (list.tagName === "OL") !== ordered) {
          list = h(ordered ? "ol" : "ul");
          out.push(list);
        }
        const li = h("li");
        inline(li, item[3]);
        list.append(li);
      } else {
        list = null;
        if (para) para.append(h("br"));
        else out.push((para = h("p")));
        inline(para, line);
      }
    }
    container.replaceChildren(...out);
  }

  // ---- styles: host reset first, so host CSS (`*`, `div`, `button` …) cannot reach in or leak out ----
  const hex = (c) => (/^#[0-9a-f]{6}$/i.test(c || "") ? c : "#2563eb");
  const primary = hex(config.color_primary);
  const rgb = [1, 3, 5].map((i) => parseInt(primary.slice(i, i + 2), 16) / 255);
  const lum = rgb.map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
  const onPrimary = 0.2126 * lum[0] + 0.7152 * lum[1] + 0.0722 * lum[2] > 0.4 ? "#111827" : "#ffffff";
  const radius = Number.isInteger(config.radius) ? Math.max(0, Math.min(32, config.radius)) : 12;
  const dark = config.theme === "dark";
  const left = config.position === "bottom-left";

  const CSS = `
:host{all:initial!important;display:block!important;position:fixed!important;z-index:2147483647!important;
 inset:auto!important;width:0!important;height:0!important;margin:0!important;padding:0!important;
 border:0!important;transform:none!important;visibility:visible!important;opacity:1!important;}
.root{--bg:#ffffff;--fg:#111827;--muted:#4b5563;--line:#e5e7eb;--bot:#f3f4f6;
 font-family:var(--font,system-ui,sans-serif);font-size:15px;line-height:1.5;color:var(--fg);
 letter-spacing:normal;text-align:start;-webkit-text-size-adjust:100%;}
.root.dark{--bg:#111827;--fg:#f9fafb;--muted:#d1d5db;--line:#374151;--bot:#1f2937;}
*,*::before,*::after{box-sizing:border-box;}
button,textarea{font:inherit;color:inherit;margin:0;}
button{cursor:pointer;}
:focus-visible{outline:3px solid var(--primary);outline-offset:2px;}
.sr{position:absolute;width:1px;height:1px;margin:-1px;padding:0;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap;border:0;}
svg{width:24px;height:24px;fill:currentColor;display:block;}
svg.flip{transform:rotate(180deg);}
.bubble{position:fixed;bottom:20px;right:20px;width:60px;height:60px;border:0;border-radius:50%;padding:0;
 background:var(--primary);color:var(--on-primary);box-shadow:0 4px 14px rgba(0,0,0,.25);
 display:flex;align-items:center;justify-content:center;overflow:hidden;}
.bubble svg{width:28px;height:28px;}
.bubble img{width:100%;height:100%;object-fit:cover;display:block;}
.panel{position:fixed;bottom:92px;right:20px;width:380px;height:600px;
 max-width:calc(100vw - 24px);max-height:calc(100vh - 112px);max-height:calc(100dvh - 112px);
 display:flex;flex-direction:column;background:var(--bg);color:var(--fg);border:1px solid var(--line);
 border-radius:var(--radius);box-shadow:0 10px 40px rgba(0,0,0,.3);overflow:hidden;}
.panel[hidden]{display:none;}
.left .bubble{left:20px;right:auto;}
.left .panel{left:20px;right:auto;}
header{display:flex;align-items:center;gap:8px;padding:12px 12px 12px 16px;
 background:var(--primary);color:var(--on-primary);}
h2{flex:1;margin:0;font-size:16px;font-weight:600;line-height:1.3;}
.icon{background:transparent;border:0;border-radius:8px;padding:6px;color:inherit;display:flex;}
.log{flex:1;overflow-y:auto;padding:14px;display:flex;flex-direction:column;gap:10px;}
.msg{max-width:88%;padding:9px 12px;border-radius:min(var(--radius),16px);overflow-wrap:anywhere;}
.msg p,.msg ul,.msg ol{margin:0 0 8px;}
.msg ul,.msg ol{padding-left:20px;}
.msg > :last-child,.body > :last-child{margin-bottom:0;}
.bot{align-self:flex-start;background:var(--bot);}
.user{align-self:flex-end;background:var(--primary);color:var(--on-primary);white-space:pre-wrap;}
.pending{color:var(--muted);font-style:italic;}
a{color:inherit;text-decoration:underline;}
.sources{margin-top:8px;padding-top:6px;border-top:1px solid var(--line);font-size:13px;}
.sources h3{margin:0 0 4px;font-size:13px;font-weight:600;color:var(--muted);}
.sources ul{margin:0;padding-left:18px;}
.fb{display:flex;gap:4px;margin-top:6px;align-items:center;font-size:13px;color:var(--muted);}
.fb button{background:transparent;border:1px solid var(--line);border-radius:8px;padding:4px;color:var(--muted);}
.fb button svg{width:18px;height:18px;}
.fb button[aria-pressed=true]{background:var(--primary);color:var(--on-primary);border-color:var(--primary);}
.fb button:disabled{cursor:default;}
.error{margin:0 14px 10px;padding:10px 12px;border-radius:8px;background:#fef2f2;color:#991b1b;
 border:1px solid #fecaca;display:flex;gap:10px;align-items:center;font-size:14px;}
.error[hidden]{display:none;}
.error span{flex:1;}
.error button{background:#991b1b;color:#fff;border:0;border-radius:6px;padding:6px 12px;}
form{display:flex;gap:8px;padding:10px;border-top:1px solid var(--line);align-items:flex-end;}
textarea{flex:1;resize:none;min-height:42px;max-height:120px;padding:9px 10px;border:1px solid var(--line);
 border-radius:min(var(--radius),12px);background:var(--bg);line-height:1.4;}
textarea::placeholder{color:var(--muted);opacity:1;}
.send{width:42px;height:42px;border:0;border-radius:min(var(--radius),12px);background:var(--primary);
 color:var(--on-primary);display:flex;align-items:center;justify-content:center;padding:0;}
.send:disabled{opacity:.6;cursor:default;}
@media (max-width:480px){
 .panel,.left .panel{left:8px;right:8px;width:auto;bottom:84px;max-width:none;
  max-height:calc(100vh - 96px);max-height:calc(100dvh - 96px);}
 .bubble{bottom:14px;right:14px;} .left .bubble{left:14px;}
}
@media (prefers-reduced-motion:no-preference){.bubble{transition:transform .15s;}.bubble:hover{transform:scale(1.05);}}
`;

  // ---- the UI ----
  function mount() {
    const host = document.createElement("kotoba-chat");
    host.setAttribute("data-site-id", siteId);
    // Open, not closed: a closed root protects nothing from scripts on the same page (they can patch
    // attachShadow before we run), while an open one lets tests, assistive tooling and the host's
    // developers inspect the widget. Isolation from host CSS comes from the shadow boundary either way.
    const shadow = host.attachShadow({ mode: "open" });
    const root = h("div", { class: "root" + (dark ? " dark" : "") + (left ? " left" : ""), lang });
    root.style.setProperty("--primary", primary);
    root.style.setProperty("--on-primary", onPrimary);
    root.style.setProperty("--radius", radius + "px");
    if (typeof config.font === "string") root.style.setProperty("--font", config.font);

    const iconUrl = config.bubble_icon_url && httpUrl(config.bubble_icon_url);
    const bubble = h(
      "button",
      {
        type: "button",
        class: "bubble",
        "aria-label": T.open,
        "aria-expanded": "false",
        "aria-controls": "kotoba-panel",
      },
      iconUrl && iconUrl.protocol === "https:" ? h("img", { src: iconUrl.href, alt: "" }) : icon("chat"),
    );
    const closeButton = h("button", { type: "button", class: "icon", "aria-label": T.close }, icon("close"));
    const log = h("div", {
      class: "log",
      role: "log",
      "aria-live": "polite",
      "aria-label": T.log,
      tabindex: "0",
    });
    const status = h("div", { class: "sr", role: "status", "aria-live": "polite" });
    const errorText = h("span");
    const retryButton = h("button", { type: "button" }, T.retry);
    const errorBox = h("div", { class: "error", role: "alert", hidden: true }, errorText, retryButton);
    const input = h("textarea", {
      id: "kotoba-input",
      rows: "1",
      maxlength: "2000",
      placeholder: T.placeholder,
      autocomplete: "off",
      enterkeyhint: "send",
    });
    const sendButton = h("button", { type: "submit", class: "send", "aria-label": T.send }, icon("send"));
    const form = h(
      "form",
      null,
      h("label", { for: "kotoba-input", class: "sr" }, T.input),
      input,
      sendButton,
    );
    const panel = h(
      "div",
      { id: "kotoba-panel", class: "panel", role: "dialog", "aria-labelledby": "kotoba-title", hidden: true },
      h("header", null, h("h2", { id: "kotoba-title" }, T.title), closeButton),
      log,
      errorBox,
      status,
      form,
    );
    if (config.welcome_message) {
      const welcome = h("div", { class: "msg bot" });
      markdown(welcome, config.welcome_message);
      log.append(welcome);
    }
    root.append(bubble, panel);
    shadow.append(h("style", null, CSS), root);
    document.body.append(host);

    const isOpen = () => !panel.hidden;
    function open() {
      panel.hidden = false;
      bubble.setAttribute("aria-expanded", "true");
      bubble.setAttribute("aria-label", T.close);
      log.scrollTop = log.scrollHeight;
      input.focus();
    }
    function close() {
      panel.hidden = true;
      bubble.setAttribute("aria-expanded", "false");
      bubble.setAttribute("aria-label", T.open);
      bubble.focus();
    }
    bubble.addEventListener("click", () => (isOpen() ? close() : open()));
    closeButton.addEventListener("click", close);
    root.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && isOpen()) {
        e.preventDefault();
        e.stopPropagation();
        close();
      }
    });

    // ---- asking ----
    let busy = false;
    let lastQuestion = null;
    let failedAnswer = null;

    function showError(message) {
      errorText.textContent = message;
      errorBox.hidden = false;
    }
    function clearError() {
      errorBox.hidden = true;
      errorText.textContent = "";
    }
    function addUser(text) {
      log.append(h("div", { class: "msg user" }, h("span", { class: "sr" }, T.you + " "), text));
    }
    function scroll() {
      log.scrollTop = log.scrollHeight;
    }

    async function ask(question, isRetry) {
      if (busy) return;
      busy = true;
      sendButton.disabled = true;
      clearError();
      if (!isRetry) addUser(question);
      lastQuestion = question;
      if (failedAnswer) failedAnswer.remove();
      const msg = h(
        "div",
        { class: "msg bot", "aria-busy": "true" },
        h("span", { class: "sr" }, T.bot + " "),
      );
      const body = h("div", { class: "body" }, h("p", { class: "pending" }, T.thinking));
      msg.append(body);
      log.append(msg);
      scroll();
      status.textContent = T.thinking;
      let text = "";
      let frame = 0;
      const render = () => {
        frame = 0;
        markdown(body, text);
        scroll();
      };
      const onDelta = (delta) => {
        text += delta;
        if (!frame) frame = requestAnimationFrame(render);
      };
      try {
        const answer = await chat(question, onDelta);
        if (frame) cancelAnimationFrame(frame);
        text = typeof answer.answer === "string" && answer.answer ? answer.answer : text;
        render();
        if (typeof answer.session_id === "string") session.set(answer.session_id);
        addSources(msg, answer.sources);
        if (typeof answer.message_id === "string") addFeedback(msg, answer.message_id);
        msg.setAttribute("aria-busy", "false");
        failedAnswer = null;
        status.textContent = "";
        scroll();
      } catch (err) {
        if (frame) cancelAnimationFrame(frame);
        msg.setAttribute("aria-busy", "false");
        failedAnswer = msg;
        if (!text) msg.remove();
        status.textContent = "";
        showError(describe(err));
      } finally {
        busy = false;
        sendButton.disabled = false;
      }
    }

    retryButton.addEventListener("click", () => {
      if (lastQuestion) ask(lastQuestion, true);
      input.focus();
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const q = input.value.trim();
      if (!q || busy) return;
      input.value = "";
      ask(q, false);
    });
    input.addEventListener("keydown", (e) => {
      // Enter sends; Shift+Enter is a new line; never while an IME is composing (Japanese, Korean).
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        form.requestSubmit();
      }
    });

    function addSources(msg, sources) {
      if (!Array.isArray(sources) || !sources.length) return;
      const list = h("ul");
      const seen = new Set();
      for (const s of sources) {
        const u = s && httpUrl(s.url);
        if (!u || seen.has(u.href)) continue;
        seen.add(u.href);
        const title = typeof s.title === "string" && s.title.trim() ? s.title.trim() : u.host + u.pathname;
        list.append(h("li", null, link(u.href, title)));
      }
      if (list.childElementCount) msg.append(h("div", { class: "sources" }, h("h3", null, T.sources), list));
    }

    function addFeedback(msg, messageId) {
      const up = h(
        "button",
        { type: "button", "aria-pressed": "false", "aria-label": T.up, "data-rating": "up" },
        icon("thumb"),
      );
      const down = h(
        "button",
        { type: "button", "aria-pressed": "false", "aria-label": T.down, "data-rating": "down" },
        icon("thumb", true),
      );
      const note = h("span", { role: "status" });
      const send = async (button, rating) => {
        up.disabled = down.disabled = true;
        button.setAttribute("aria-pressed", "true");
        try {
          const res = await post("/api/embed/feedback", {
            site_id: siteId,
            session_id: session.get(),
            message_id: messageId,
            rating,
          });
          if (!res.ok) throw new Error("status " + res.status);
          note.textContent = T.thanks;
        } catch {
          button.setAttribute("aria-pressed", "false");
          up.disabled = down.disabled = false;
          note.textContent = T.feedbackFailed;
        }
      };
      up.addEventListener("click", () => send(up, "up"));
      down.addEventListener("click", () => send(down, "down"));
      msg.append(h("div", { class: "fb" }, up, down, note));
    }

    // ---- the API ----
    const CODE_STATUS = { quota_exceeded: 402, forbidden: 403, rate_limited: 429 };
    class ApiError extends Error {
      constructor(status, error, retryAfter) {
        super((error && error.message) || "HTTP " + status);
        this.status = status || CODE_STATUS[error && error.code] || 500;
        this.error = error || {};
        this.retryAfter = retryAfter;
      }
    }
    function describe(err) {
      if (!(err instanceof ApiError)) return T.network;
      if (err.status === 402) return T.quota;
      if (err.status === 403) return T.forbidden;
      if (err.status === 429) {
        const s = Math.ceil(Number(err.retryAfter || err.error.retry_after_seconds));
        return s > 0 && s < 86400 ? T.rate.replace("{s}", String(s)) : T.rateSoon;
      }
      return T.failed;
    }

    // JSON sent as text/plain keeps the request "simple" (no CORS preflight); the API reads it as JSON.
    function post(path, payload, accept) {
      return fetch(api + path + "?site_id=" + encodeURIComponent(siteId), {
        method: "POST",
        mode: "cors",
        credentials: "omit",
        headers: { "Content-Type": "text/plain;charset=UTF-8", Accept: accept || "application/json" },
        body: JSON.stringify(payload),
      });
    }

    // To the streaming endpoint: the same request plus the body's SHA-256 (hex), which the origin's
    // signature covers (one CORS preflight per ten minutes for the extra header).
    async function postStream(path, payload) {
      const body = JSON.stringify(payload);
      const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(body));
      const hash = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
      return fetch(streamBase + path + "?site_id=" + encodeURIComponent(siteId), {
        method: "POST",
        mode: "cors",
        credentials: "omit",
        headers: {
          "Content-Type": "text/plain;charset=UTF-8",
          Accept: "text/event-stream",
          "x-amz-content-sha256": hash,
        },
        body,
      });
    }

    async function failure(res) {
      let error = null;
      try {
        error = (await res.json()).error;
      } catch {
        /* not JSON */
      }
      return new ApiError(res.status, error, res.headers.get("Retry-After"));
    }

    async function chat(message, onDelta, secondTry) {
      const payload = { site_id: siteId, message };
      const sid = session.get();
      if (sid) payload.session_id = sid;
      const res = streamBase
        ? await postStream("/api/embed/chat", payload)
        : await post("/api/embed/chat", payload, "text/event-stream");
      if (!res.ok) {
        const err = await failure(res);
        // A session the server no longer accepts: start a new one, once.
        if (err.status === 400 && err.error.field === "session_id" && !secondTry) {
          session.set(null);
          return chat(message, onDelta, true);
        }
        throw err;
      }
      if (!(res.headers.get("Content-Type") || "").includes("text/event-stream") || !res.body)
        return res.json();
      return readStream(res.body, onDelta);
    }

    // Server-Sent Events over fetch: `delta` events carry {text}, one `done` event the full answer,
    // an `error` event the contract's error object.
    async function readStream(stream, onDelta) {
      const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let event = "";
      let data = [];
      let done = null;
      const dispatch = () => {
        const name = event || "message";
        const raw = data.join("\n");
        event = "";
        data = [];
        if (!raw || raw === "[DONE]") return;
        let value;
        try {
          value = JSON.parse(raw);
        } catch {
          return;
        }
        if (name === "error" || (value && value.error && name !== "done")) {
          const e = value.error || value;
          throw new ApiError(0, e, e.retry_after_seconds);
        }
        if (name === "done" || (name === "message" && value && typeof value.answer === "string"))
          done = value;
        else if (value && typeof value.text === "string") onDelta(value.text);
      };
      try {
        for (;;) {
          const { value, done: end } = await reader.read();
          if (value) buffer += value;
          const lines = buffer.split(/\r\n|\r|\n/);
          buffer = end ? "" : lines.pop();
          for (const line of lines) {
            if (line === "") dispatch();
            else if (line.startsWith(":")) continue;
            else {
              const colon = line.indexOf(":");
              const field = colon < 0 ? line : line.slice(0, colon);
              let val = colon < 0 ? "" : line.slice(colon + 1);
              if (val.startsWith(" ")) val = val.slice(1);
              if (field === "event") event = val;
              else if (field === "data") data.push(val);
            }
          }
          if (end) break;
        }
        if (data.length) dispatch();
      } catch (err) {
        reader.cancel().catch(() => {});
        throw err;
      }
      if (!done) throw new Error("the answer stream ended early");
      return done;
    }
  }

  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount, { once: true });
};
