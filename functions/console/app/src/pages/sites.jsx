// Sites: the list and creation; a site's training (live job progress), embedding (switch, snippet,
// copy), widget settings with a live preview of the real widget, prompt versions (diff, rollback) and
// the re-train interval.
import { useEffect, useRef, useState } from "preact/hooks";
import { allows, get, patch, post } from "../api.js";
import { t } from "../i18n.js";
import { fmtDateTime, fmtNumber, fmtUsd } from "../format.js";
import { diffLines } from "../diff.js";
import { Link, navigate } from "../router.jsx";
import { ErrorBox, Loading, Outcome, PageTitle, Switch, useAction, useLoad, VersionTable } from "../ui.jsx";

const domains = (text) =>
  text
    .split(/[\s,]+/)
    .map((d) => d.trim())
    .filter(Boolean);

function StatusPill({ status }) {
  return (
    <span class={"pill status-" + status} data-status={status}>
      {t("site.status." + status)}
    </span>
  );
}

export function Sites({ session }) {
  const list = useLoad(() => get("/api/sites"));
  const canWrite = allows(session.role, "manager");
  return (
    <section>
      <PageTitle>{t("sites.title")}</PageTitle>
      <ErrorBox error={list.error} />
      {list.loading && !list.data ? <Loading /> : null}
      {list.data ? (
        list.data.sites.length ? (
          <div class="table-wrap" tabIndex={0}>
            <table>
              <caption class="visually-hidden">{t("sites.title")}</caption>
              <thead>
                <tr>
                  <th scope="col">{t("sites.name")}</th>
                  <th scope="col">{t("sites.status")}</th>
                  <th scope="col">{t("sites.embed")}</th>
                  <th scope="col">{t("sites.trained")}</th>
                </tr>
              </thead>
              <tbody>
                {list.data.sites.map((s) => (
                  <tr>
                    <th scope="row">
                      <Link to={`/sites/${s.site_id}`}>{s.name}</Link>
                    </th>
                    <td>
                      <StatusPill status={s.status} />
                    </td>
                    <td>{s.is_embed_enabled ? t("on") : t("off")}</td>
                    <td>{fmtDateTime(s.last_trained_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : (
          <p>{t("sites.none")}</p>
        )
      ) : null}
      {canWrite ? <CreateSite /> : null}
    </section>
  );
}

function CreateSite() {
  const [name, setName] = useState("");
  const [allowed, setAllowed] = useState("");
  const action = useAction();
  async function submit(e) {
    e.preventDefault();
    const site = await action.run(() => post("/api/sites", { name: name.trim(), allowed_domains: domains(allowed) }));
    if (site) navigate(`/sites/${site.site_id}`);
  }
  return (
    <form class="panel" onSubmit={submit}>
      <h2>{t("sites.create")}</h2>
      <label for="new-site-name">{t("sites.name")}</label>
      <input id="new-site-name" required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />
      <label for="new-site-domains">{t("sites.domains")}</label>
      <input
        id="new-site-domains"
        aria-describedby="new-site-domains-hint"
        value={allowed}
        onInput={(e) => setAllowed(e.currentTarget.value)}
      />
      <p class="hint" id="new-site-domains-hint">
        {t("sites.domains_hint")}
      </p>
      <button type="submit" class="primary" disabled={action.busy}>
        {t("sites.create_button")}
      </button>
      <Outcome action={action} />
    </form>
  );
}

export function SiteDetail({ session, siteId }) {
  const site = useLoad(() => get(`/api/sites/${siteId}`), [siteId]);
  const canWrite = allows(session.role, "manager");
  const s = site.data;
  return (
    <section>
      <p>
        <Link to="/sites">{t("sites.back")}</Link>
      </p>
      {s ? (
        <PageTitle>{s.name}</PageTitle>
      ) : (
        <h1>{t("sites.title")}</h1>
      )}
      <ErrorBox error={site.error} />
      {site.loading && !s ? <Loading /> : null}
      {s ? (
        <>
          <p>
            {t("sites.status")}: <StatusPill status={s.status} /> · {t("sites.trained")}: {fmtDateTime(s.last_trained_at)}
            {s.index_version ? ` · ${t("sites.index_version", { n: s.index_version })}` : ""}
          </p>
          {s.last_training_error ? (
            <p class="banner warn">{t("sites.last_error", { error: s.last_training_error })}</p>
          ) : null}
          <Training site={s} canWrite={canWrite} onDone={site.reload} />
          <Embed site={s} canWrite={canWrite} onChange={site.reload} />
          <Widget site={s} canWrite={canWrite} onSaved={site.reload} />
          <Prompt site={s} canWrite={canWrite} onSaved={site.reload} />
          <Retrain site={s} canWrite={canWrite} onSaved={site.reload} />
        </>
      ) : null}
    </section>
  );
}

const JOB_KEY = (siteId) => "kotoba.console.job." + siteId;

function Training({ site, canWrite, onDone }) {
  const [url, setUrl] = useState("");
  const [maxPages, setMaxPages] = useState(50);
  const [jobId, setJobId] = useState(() => sessionStorage.getItem(JOB_KEY(site.site_id)));
  const [job, setJob] = useState(null);
  const [pollError, setPollError] = useState(null);
  const action = useAction();

  useEffect(() => {
    if (!jobId) return undefined;
    let stop = false;
    let timer;
    async function poll() {
      try {
        const j = await get(`/api/train/jobs/${jobId}`);
        if (stop) return;
        setJob(j);
        setPollError(null);
        if (j.status === "succeeded" || j.status === "failed") {
          sessionStorage.removeItem(JOB_KEY(site.site_id));
          onDone();
          return;
        }
      } catch (e) {
        if (stop) return;
        setPollError(e);
        if (e.status === 404) {
          sessionStorage.removeItem(JOB_KEY(site.site_id));
          return;
        }
      }
      timer = setTimeout(poll, 1000);
    }
    poll();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, [jobId]);

  function follow(id) {
    sessionStorage.setItem(JOB_KEY(site.site_id), id);
    setJob(null);
    setJobId(id);
  }

  async function submit(e) {
    e.preventDefault();
    const queued = await action.run(() =>
      post("/api/train/url", { site_id: site.site_id, url: url.trim(), max_pages: Number(maxPages) }),
    );
    if (queued) follow(queued.job_id);
  }
  // A job already running for the site (409) is followed instead.
  const running = action.error?.status === 409 && action.error.details?.job_id;

  const active = job && (job.status === "queued" || job.status === "running");
  return (
    <section class="panel" aria-labelledby="train-h">
      <h2 id="train-h">{t("train.title")}</h2>
      {canWrite ? (
        <form onSubmit={submit}>
          <label for="train-url">{t("train.url")}</label>
          <input
            id="train-url"
            type="url"
            required
            placeholder="https://www.example.com/"
            value={url}
            onInput={(e) => setUrl(e.currentTarget.value)}
          />
          <label for="train-max">{t("train.max_pages")}</label>
          <input
            id="train-max"
            type="number"
            min="1"
            max="10000"
            value={maxPages}
            onInput={(e) => setMaxPages(e.currentTarget.value)}
          />
          <button type="submit" class="primary" disabled={action.busy || active}>
            {t("train.start")}
          </button>
          <Outcome action={action} />
          {running ? (
            <button type="button" onClick={() => follow(running)}>
              {t("train.follow")}
            </button>
          ) : null}
        </form>
      ) : null}
      <ErrorBox error={pollError} />
      {job ? <JobProgress job={job} /> : null}
    </section>
  );
}

function JobProgress({ job }) {
  const done = job.status === "succeeded" || job.status === "failed";
  return (
    <div class="job" data-testid="job" data-status={job.status}>
      <p role="status" aria-live="polite">
        {t("train.job_status", { status: t("job." + job.status) })}
      </p>
      <progress
        max={job.max_pages || 1}
        value={done ? job.max_pages || 1 : job.pages_crawled}
        aria-label={t("train.progress")}
      />
      <dl class="facts">
        <dt>{t("train.pages_crawled")}</dt>
        <dd data-testid="pages-crawled">{fmtNumber(job.pages_crawled)}</dd>
        <dt>{t("train.pages_changed")}</dt>
        <dd>{fmtNumber(job.pages_changed)}</dd>
        <dt>{t("train.chunks")}</dt>
        <dd data-testid="chunks">{fmtNumber(job.chunks)}</dd>
        <dt>{t("train.cost")}</dt>
        <dd>{fmtUsd(job.estimated_cost_usd)}</dd>
      </dl>
      {job.error ? <p class="banner warn">{job.error}</p> : null}
    </div>
  );
}

function Embed({ site, canWrite, onChange }) {
  const action = useAction();
  const copy = useAction();
  const [allowed, setAllowed] = useState(site.allowed_domains.join(", "));
  const snippet = `<script src="${location.origin}/api/embed/script?site_id=${site.site_id}" async></script>`;
  const ready = site.status === "ready" && !!site.index_version;
  async function toggle(on) {
    const r = await action.run(() => patch(`/api/sites/${site.site_id}`, { is_embed_enabled: on }), on ? t("embed.enabled") : t("embed.disabled"));
    if (r) onChange();
  }
  async function saveDomains(e) {
    e.preventDefault();
    const r = await action.run(() => patch(`/api/sites/${site.site_id}`, { allowed_domains: domains(allowed) }), t("saved"));
    if (r) onChange();
  }
  return (
    <section class="panel" aria-labelledby="embed-h">
      <h2 id="embed-h">{t("embed.title")}</h2>
      {canWrite ? (
        <Switch checked={site.is_embed_enabled} onChange={toggle} busy={action.busy} label={t("embed.switch")} id="embed-switch" />
      ) : (
        <p>
          {t("embed.switch")}: {site.is_embed_enabled ? t("on") : t("off")}
        </p>
      )}
      <label for="embed-snippet">{t("embed.snippet")}</label>
      <textarea id="embed-snippet" readOnly rows={2} value={snippet} />
      <button
        type="button"
        disabled={!ready || !site.is_embed_enabled || copy.busy}
        aria-describedby="embed-copy-hint"
        onClick={() => copy.run(() => navigator.clipboard.writeText(snippet), t("embed.copied"))}
      >
        {t("embed.copy")}
      </button>
      <p class="hint" id="embed-copy-hint">
        {ready ? (site.is_embed_enabled ? t("embed.ready") : t("embed.off_hint")) : t("embed.not_ready")}
      </p>
      <Outcome action={copy} />
      {canWrite ? (
        <form onSubmit={saveDomains}>
          <label for="embed-domains">{t("sites.domains")}</label>
          <input id="embed-domains" value={allowed} onInput={(e) => setAllowed(e.currentTarget.value)} />
          <button type="submit" disabled={action.busy}>
            {t("embed.save_domains")}
          </button>
        </form>
      ) : (
        <p>
          {t("sites.domains")}: {site.allowed_domains.join(", ")}
        </p>
      )}
      <Outcome action={action} />
    </section>
  );
}

function Widget({ site, canWrite, onSaved }) {
  const [w, setW] = useState({ ...site.widget });
  const frame = useRef(null);
  const action = useAction();
  const set = (k) => (e) => {
    const v = e.currentTarget.value;
    setW((old) => ({ ...old, [k]: k === "radius" ? Number(v) : v }));
  };
  // The preview frame runs the real widget; it is sent the settings as they are typed.
  function send() {
    frame.current?.contentWindow?.postMessage(
      { kind: "kotoba-preview", site_id: site.site_id, widget: w },
      location.origin,
    );
  }
  useEffect(send, [w]);
  async function save(e) {
    e.preventDefault();
    const { bubble_icon_url, ...rest } = w;
    const body = { ...rest, bubble_icon_url: bubble_icon_url ? bubble_icon_url : null };
    const r = await action.run(() => patch(`/api/sites/${site.site_id}`, { widget: body }), t("saved"));
    if (r) onSaved();
  }
  return (
    <section class="panel" aria-labelledby="widget-h">
      <h2 id="widget-h">{t("widget.title")}</h2>
      <div class="widget-grid">
        <form onSubmit={save}>
          <fieldset disabled={!canWrite}>
            <legend class="visually-hidden">{t("widget.title")}</legend>
            <label for="w-theme">{t("widget.theme")}</label>
            <select id="w-theme" value={w.theme} onChange={set("theme")}>
              <option value="light">{t("widget.light")}</option>
              <option value="dark">{t("widget.dark")}</option>
            </select>
            <label for="w-color">{t("widget.color")}</label>
            <input id="w-color" type="color" value={w.color_primary} onInput={set("color_primary")} />
            <label for="w-position">{t("widget.position")}</label>
            <select id="w-position" value={w.position} onChange={set("position")}>
              <option value="bottom-right">{t("widget.right")}</option>
              <option value="bottom-left">{t("widget.left")}</option>
            </select>
            <label for="w-radius">{t("widget.radius")}</label>
            <input id="w-radius" type="number" min="0" max="32" value={w.radius} onInput={set("radius")} />
            <label for="w-welcome">{t("widget.welcome")}</label>
            <textarea id="w-welcome" rows={2} maxLength={500} value={w.welcome_message} onInput={set("welcome_message")} />
            <label for="w-icon">{t("widget.icon")}</label>
            <input id="w-icon" type="url" placeholder="https://" value={w.bubble_icon_url || ""} onInput={set("bubble_icon_url")} />
          </fieldset>
          {canWrite ? (
            <button type="submit" class="primary" disabled={action.busy}>
              {t("widget.save")}
            </button>
          ) : null}
          <Outcome action={action} />
        </form>
        <iframe
          ref={frame}
          class="preview"
          title={t("widget.preview")}
          src="/console/preview.html"
          onLoad={send}
        />
      </div>
    </section>
  );
}

function Prompt({ site, canWrite, onSaved }) {
  const [text, setText] = useState(site.prompt.system_prompt);
  const [temperature, setTemperature] = useState(site.prompt.temperature);
  const [maxTokens, setMaxTokens] = useState(site.prompt.max_tokens);
  const versions = useLoad(() => get(`/api/sites/${site.site_id}/prompt/versions`), [site.prompt.version]);
  const action = useAction();
  // A choice of versions to compare belongs to the list it was made in: when the list is read again (after a
  // save or a rollback) the comparison goes back to newest-against-previous in the same render, never showing a
  // stale pair for a frame.
  const [picked, setPicked] = useState({ of: null, from: null, to: null });
  useEffect(() => {
    setText(site.prompt.system_prompt);
    setTemperature(site.prompt.temperature);
    setMaxTokens(site.prompt.max_tokens);
  }, [site.prompt.version]);
  const list = versions.data?.versions || [];
  const current = picked.of === versions.data ? picked : null;
  const from = current?.from ?? list[Math.min(1, list.length - 1)]?.version;
  const to = current?.to ?? list[0]?.version;
  const pick = (which, version) => setPicked({ of: versions.data, from, to, [which]: version });

  async function save(e) {
    e.preventDefault();
    const r = await action.run(
      () =>
        patch(`/api/sites/${site.site_id}`, {
          prompt: { system_prompt: text, temperature: Number(temperature), max_tokens: Number(maxTokens) },
        }),
      t("prompt.saved"),
    );
    if (r) onSaved();
  }
  async function rollback(version) {
    const r = await action.run(
      () => post(`/api/sites/${site.site_id}/prompt/rollback`, { version }),
      t("prompt.rolled_back", { n: version }),
    );
    if (r) onSaved();
  }
  const a = list.find((v) => v.version === Number(from));
  const b = list.find((v) => v.version === Number(to));
  return (
    <section class="panel" aria-labelledby="prompt-h">
      <h2 id="prompt-h">{t("prompt.title")}</h2>
      <p>{t("prompt.current", { n: site.prompt.version })}</p>
      <form onSubmit={save}>
        <fieldset disabled={!canWrite}>
          <legend class="visually-hidden">{t("prompt.title")}</legend>
          <label for="prompt-text">{t("prompt.system")}</label>
          <textarea id="prompt-text" rows={6} value={text} onInput={(e) => setText(e.currentTarget.value)} />
          <div class="row">
            <div>
              <label for="prompt-temp">{t("prompt.temperature")}</label>
              <input
                id="prompt-temp"
                type="number"
                step="0.1"
                min="0"
                max="2"
                value={temperature}
                onInput={(e) => setTemperature(e.currentTarget.value)}
              />
            </div>
            <div>
              <label for="prompt-max">{t("prompt.max_tokens")}</label>
              <input
                id="prompt-max"
                type="number"
                min="1"
                value={maxTokens}
                onInput={(e) => setMaxTokens(e.currentTarget.value)}
              />
            </div>
          </div>
        </fieldset>
        {canWrite ? (
          <button type="submit" class="primary" disabled={action.busy}>
            {t("prompt.save")}
          </button>
        ) : null}
      </form>
      <Outcome action={action} />
      <h3>{t("prompt.versions")}</h3>
      <ErrorBox error={versions.error} />
      <VersionTable
        versions={list}
        current={site.prompt.version}
        excerptLabel={t("prompt.excerpt")}
        excerpt={(v) => v.system_prompt.slice(0, 80)}
        created={(v) => fmtDateTime(v.created_at)}
        canWrite={canWrite}
        busy={action.busy}
        onRollback={rollback}
      />
      {list.length > 1 ? (
        <div class="diff-box">
          <h3>{t("prompt.diff")}</h3>
          <div class="row">
            <div>
              <label for="diff-from">{t("prompt.from")}</label>
              <select id="diff-from" value={from} onChange={(e) => pick("from", Number(e.currentTarget.value))}>
                {list.map((v) => (
                  <option value={v.version}>v{v.version}</option>
                ))}
              </select>
            </div>
            <div>
              <label for="diff-to">{t("prompt.to")}</label>
              <select id="diff-to" value={to} onChange={(e) => pick("to", Number(e.currentTarget.value))}>
                {list.map((v) => (
                  <option value={v.version}>v{v.version}</option>
                ))}
              </select>
            </div>
          </div>
          {a && b ? <Diff a={a} b={b} /> : null}
        </div>
      ) : null}
    </section>
  );
}

function Diff({ a, b }) {
  const lines = diffLines(a.system_prompt, b.system_prompt);
  const settings = [];
  if (a.temperature !== b.temperature) settings.push(`${t("prompt.temperature")}: ${a.temperature} → ${b.temperature}`);
  if (a.max_tokens !== b.max_tokens) settings.push(`${t("prompt.max_tokens")}: ${a.max_tokens} → ${b.max_tokens}`);
  return (
    <div class="diff" data-testid="diff">
      <p class="visually-hidden">{t("prompt.diff_legend")}</p>
      <ol>
        {lines.map((l) =>
          l.op === "add" ? (
            <li class="add">
              <ins>
                <span aria-hidden="true">+ </span>
                {l.text}
              </ins>
            </li>
          ) : l.op === "del" ? (
            <li class="del">
              <del>
                <span aria-hidden="true">− </span>
                {l.text}
              </del>
            </li>
          ) : (
            <li class="same">
              <span aria-hidden="true">{"  "}</span>
              {l.text}
            </li>
          ),
        )}
      </ol>
      {settings.map((s) => (
        <p>{s}</p>
      ))}
      {!lines.some((l) => l.op !== "same") && !settings.length ? <p>{t("prompt.same")}</p> : null}
    </div>
  );
}

function Retrain({ site, canWrite, onSaved }) {
  const [days, setDays] = useState(site.retrain_interval_days ?? 7);
  const action = useAction();
  async function save(e) {
    e.preventDefault();
    const r = await action.run(() => patch(`/api/sites/${site.site_id}`, { retrain_interval_days: Number(days) }), t("saved"));
    if (r) onSaved();
  }
  return (
    <section class="panel" aria-labelledby="retrain-h">
      <h2 id="retrain-h">{t("retrain.title")}</h2>
      <form onSubmit={save}>
        <label for="retrain-days">{t("retrain.days")}</label>
        <input
          id="retrain-days"
          type="number"
          min="0"
          max="365"
          readOnly={!canWrite}
          aria-describedby="retrain-hint"
          value={days}
          onInput={(e) => setDays(e.currentTarget.value)}
        />
        <p class="hint" id="retrain-hint">
          {t("retrain.hint")}
        </p>
        {canWrite ? (
          <button type="submit" disabled={action.busy}>
            {t("retrain.save")}
          </button>
        ) : null}
        <Outcome action={action} />
      </form>
    </section>
  );
}
