// Everything a browser test needs, on loopback only: the model peer, the real local runner (serving the
// embed script and the embed chat and feedback routes), two sites trained through the API on pages the
// host server serves, and the host pages that embed the widget.
import { startHost } from "./host.mjs";
import { startPeer } from "./peer.mjs";
import { startRunner } from "./runner.mjs";

const WIDGETS = {
  main: {
    theme: "light",
    color_primary: "#0f766e",
    position: "bottom-right",
    radius: 14,
    welcome_message: "Hello! Ask me about Sakura Shop.",
  },
  // Tenant text is untrusted too: the welcome message carries a payload of its own.
  xss: {
    theme: "dark",
    color_primary: "#7c3aed",
    position: "bottom-left",
    radius: 8,
    welcome_message: "</script><img src=x onerror=\"window.__kotobaPwned='welcome'\"> Ask about matcha.",
  },
};

export async function startEnv() {
  const peer = await startPeer();
  let runner;
  const host = await startHost({ apiBase: () => runner.base });
  try {
    runner = await startRunner({ modelBaseUrl: peer.url });
    const tenant = await runner.call("POST", "/api/admin/tenants", { body: { name: "Sakura Shop KK", plan: "pro" } });
    await runner.call("PUT", `/api/admin/tenants/${tenant.tenant_id}/subscription`, { body: { status: "active" } });
    const key = tenant.api_key;
    const sites = {};
    for (const [name, start] of [
      ["main", "/site/"],
      ["xss", "/xss/"],
    ]) {
      const site = await runner.call("POST", "/api/sites", {
        key,
        body: { name: `Browser ${name}`, allowed_domains: ["127.0.0.1"] },
      });
      await runner.call("PATCH", `/api/sites/${site.site_id}`, {
        key,
        body: { is_embed_enabled: true, widget: WIDGETS[name] },
      });
      await train(runner, key, site.site_id, host.allowed + start);
      sites[name] = site.site_id;
    }
    // The runner's seeded demo site needs nothing: the runner trained it on its sample site at start.
    return {
      apiBase: runner.base,
      sites,
      host,
      peer,
      runner,
      async feedbackFor(messageId) {
        const record = runner.messageRecord(messageId);
        return record && record.feedback ? record.feedback : null;
      },
      async close() {
        await runner.close();
        await host.close();
        await peer.close();
      },
    };
  } catch (e) {
    await runner?.close();
    await host.close();
    await peer.close();
    throw e;
  }
}

/** Trains a site through the API and waits for the job to finish. */
async function train(runner, key, siteId, url) {
  const job = await runner.call("POST", "/api/train/url", { key, body: { site_id: siteId, url, max_pages: 20 } });
  for (let i = 0; i < 300; i++) {
    const state = await runner.call("GET", `/api/train/jobs/${job.job_id}`, { key });
    if (state.status === "succeeded") return state;
    if (state.status === "failed") throw new Error(`training ${url} failed: ${JSON.stringify(state)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`training ${url} did not finish in 30 s`);
}
