// The console's languages: Japanese, English and Korean. The choice is kept in localStorage (a UI
// preference, never API data); the first visit follows the browser's language.
import { STRINGS } from "./strings.js";

export const LANGS = ["ja", "en", "ko"];
const STORE = "kotoba.console.lang";

function initial() {
  try {
    const saved = localStorage.getItem(STORE);
    if (LANGS.includes(saved)) return saved;
  } catch {
    /* storage off */
  }
  const nav = (navigator.language || "en").slice(0, 2);
  return LANGS.includes(nav) ? nav : "en";
}

let current = initial();
const listeners = new Set();

export const lang = () => current;

export function setLang(next) {
  if (!LANGS.includes(next)) return;
  current = next;
  try {
    localStorage.setItem(STORE, next);
  } catch {
    /* storage off */
  }
  document.documentElement.lang = next;
  listeners.forEach((f) => f(next));
}

export function onLang(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

/** The text for `key` in the current language, with `{name}` placeholders filled from `vars`. */
export function t(key, vars) {
  const text = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return vars ? text.replace(/\{(\w+)\}/g, (_, k) => (vars[k] ?? "").toString()) : text;
}

/** Whether a key exists (error codes fall back to the API's own message). */
export const has = (key) => key in STRINGS[current];

document.documentElement.lang = current;
