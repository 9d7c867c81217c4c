// Debian's Chromium driven by playwright-core (never a downloaded browser), headless, with every
// background service that could reach the network turned off. Tests only ever talk to loopback.
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.KOTOBA_CHROMIUM || "/usr/bin/chromium";

export const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-quic",
  "--no-first-run",
  "--disable-component-update",
  "--disable-sync",
  "--disable-default-apps",
  "--disable-extensions",
];

/** A fresh browser: playwright gives every launch its own temporary `--user-data-dir`. */
export function launch() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
}

/** Fails the test on any request that leaves loopback. */
export async function loopbackOnly(context, offenders) {
  await context.route(
    (url) => !["127.0.0.1", "localhost", "[::1]"].includes(url.hostname) && url.protocol !== "data:",
    (route) => {
      offenders.push(route.request().url());
      return route.abort();
    },
  );
}
