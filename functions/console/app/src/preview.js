// The widget preview frame (/console/preview.html): the real chat widget (functions/embed-script's
// widget.js, bundled), re-mounted with the settings the console sends as they are typed. Only messages
// from the console's own origin are taken.
import mountWidget from "kotoba-widget";
import "./preview.css";

const KEY = Symbol.for("kotoba.widget");

window.addEventListener("message", (event) => {
  if (event.origin !== location.origin || event.source !== window.parent) return;
  const data = event.data;
  if (!data || data.kind !== "kotoba-preview" || typeof data.site_id !== "string") return;
  document.querySelectorAll("kotoba-chat").forEach((el) => el.remove());
  window[KEY]?.delete(data.site_id);
  // The widget finds its API from its own <script> element; this one is never run (a data block).
  let me = document.querySelector("script[data-preview]");
  if (!me) {
    me = document.createElement("script");
    me.type = "application/json";
    me.dataset.preview = "";
    document.head.append(me);
  }
  me.src = `${location.origin}/api/embed/script?site_id=${encodeURIComponent(data.site_id)}`;
  mountWidget({ ...data.widget, site_id: data.site_id });
  document.querySelector("kotoba-chat")?.setAttribute("data-preview", "");
});
