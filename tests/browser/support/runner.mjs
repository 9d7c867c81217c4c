// The real local runner (`kotoba-local`, built by `infra/dev/browser-test`) as a child process on a
// free loopback port, with its own temporary data directory, pointed at the local model peer.
import { spawn, execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

function runnerBinary() {
  if (process.env.KOTOBA_RUNNER_BIN) return process.env.KOTOBA_RUNNER_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), ".cache/kotoba-target");
  return path.join(target, "debug/kotoba-local");
}

export async function startRunner({ modelBaseUrl, chatModel = "peer-chat-model", env = {} }) {
  const bin = runnerBinary();
  if (!fs.existsSync(bin)) {
    throw new Error(`${bin} is missing: run infra/dev/browser-test (it builds the runner), or set KOTOBA_RUNNER_BIN`);
  }
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "kotoba-browser-"));
  const adminKey = "browser-admin-" + crypto.randomBytes(12).toString("hex");
  const log = path.join(dataDir, "runner.log");
  const out = fs.openSync(log, "a");
  const child = spawn(bin, [], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      RUST_LOG: process.env.RUST_LOG || "info",
      NO_COLOR: "1",
      KOTOBA_LISTEN: "127.0.0.1:0",
      KOTOBA_DATA_DIR: dataDir,
      KOTOBA_ADMIN_KEY: adminKey,
      KOTOBA_FETCH_ALLOW_LOOPBACK: "true",
      OPENAI_BASE_URL: modelBaseUrl,
      OPENAI_API_KEY: "sk-browser-test-peer",
      KOTOBA_CHAT_MODEL: chatModel,
      ...env,
    },
    stdio: ["ignore", "pipe", out],
  });
  let seen = "";
  child.stdout.on("data", (chunk) => {
    fs.appendFileSync(log, chunk);
    if (seen !== null) seen += chunk;
  });
  const { base, demo } = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the runner did not start in time; log: ${log}`)), 60_000);
    const onData = () => {
      // The banner: base URL first, the data directory last.
      const m = seen.match(/Kotoba is running at (http:\/\/127\.0\.0\.1:\d+)[\s\S]*data dir:/);
      if (m) {
        clearTimeout(timer);
        child.stdout.off("data", onData);
        const demo = {
          siteId: seen.match(/demo site:\s+(\S+)/)?.[1],
          apiKey: seen.match(/demo key:\s+(\S+)/)?.[1],
        };
        seen = null;
        resolve({ base: m[1], demo });
      }
    };
    child.stdout.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the runner exited with ${code}:\n${fs.readFileSync(log, "utf8").slice(-4000)}`));
    });
  });

  async function call(method, route, { key = adminKey, body } = {}) {
    const res = await fetch(base + route, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    if (res.status === 404 && json?.error?.message === "no such route") {
      throw new Error(
        `${method} ${route}: this runner does not serve the route yet (the chat and training issues land it)`,
      );
    }
    if (!res.ok) throw new Error(`${method} ${route} → ${res.status}: ${text}`);
    return json;
  }

  return {
    base,
    /** The seeded demo tenant's site and key, from the banner. */
    demo,
    adminKey,
    dataDir,
    log,
    call,
    /** The stored log entry of an answer (the embedded store, read-only), to see feedback land. */
    messageRecord(messageId) {
      const script = `
import json, sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
row = db.execute("SELECT attributes FROM items WHERE pk = ?", ("MSG#" + sys.argv[2],)).fetchone()
print(row[0] if row else "null")`;
      const out = execFileSync("python3", ["-c", script, path.join(dataDir, "kotoba.sqlite3"), messageId], {
        encoding: "utf8",
      });
      return JSON.parse(out);
    },
    /** Writes a call log as the call bridge stores it (the bridge itself needs Twilio and a realtime model). */
    insertCallLog(log) {
      const script = `
import json, sqlite3, sys
log = json.loads(sys.argv[2])
db = sqlite3.connect(sys.argv[1])
db.execute(
    "INSERT INTO items (pk, sk, attributes, by_tenant_pk, by_tenant_sk) VALUES (?, 'CALL', ?, ?, ?)",
    ("CALL#" + log["call_sid"], json.dumps(log), "TENANT#" + log["tenant_id"], "CALL#" + log["started_at"] + "#" + log["call_sid"]),
)
db.commit()`;
      execFileSync("python3", ["-c", script, path.join(dataDir, "kotoba.sqlite3"), JSON.stringify(log)]);
    },
    async close() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGINT");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null) child.kill("SIGKILL");
      }
      if (!process.env.KOTOBA_KEEP_DATA) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
