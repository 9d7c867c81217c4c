// Everything a browser test needs on loopback: the API (serving the embed script and the embed chat),
// the model peer, two trained sites and the host pages.
import { startFakeApi } from "./fake-api.mjs";
import { startHost } from "./host.mjs";

export async function startEnv() {
  const api = await startFakeApi();
  const host = await startHost({ apiBase: () => api.base });
  return {
    apiBase: api.base,
    sites: api.sites,
    host,
    feedbackFor: (id) => api.feedbackFor(id),
    async close() {
      await host.close();
      await api.close();
    },
  };
}
