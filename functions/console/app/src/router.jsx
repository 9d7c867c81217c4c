// History routing under /console: every view has a URL (the console function answers any path under
// /console with the page), links are real links, and Back works.
import { useEffect, useState } from "preact/hooks";

export const BASE = "/console";
const listeners = new Set();

export function navigate(to, { replace = false } = {}) {
  const url = BASE + (to === "/" ? "" : to);
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  listeners.forEach((f) => f());
}

window.addEventListener("popstate", () => listeners.forEach((f) => f()));

/** The path below /console ("/" for the console's start). */
export function currentPath() {
  const p = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : "/";
  return p === "" ? "/" : p.replace(/\/+$/, "") || "/";
}

export function useRoute() {
  const [path, setPath] = useState(currentPath());
  useEffect(() => {
    const f = () => setPath(currentPath());
    listeners.add(f);
    return () => listeners.delete(f);
  }, []);
  return path;
}

/** An in-app link: a real href (open in new tab works), navigated without a reload. */
export function Link({ to, children, ...rest }) {
  const href = BASE + (to === "/" ? "" : to);
  return (
    <a
      href={href}
      onClick={(e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(to);
      }}
      {...rest}
    >
      {children}
    </a>
  );
}
