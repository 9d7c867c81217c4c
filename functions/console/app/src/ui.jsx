// Shared pieces: loading data, readable errors (with the request id), gauges, switches, charts.
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { get } from "./api.js";
import { has, t } from "./i18n.js";
import { fmtNumber, locale } from "./format.js";

/** Loads data with `fn`; `reload()` runs it again. Errors are kept for <ErrorBox>. */
export function useLoad(fn, deps = []) {
  const [state, setState] = useState({ loading: true, data: null, error: null });
  const seq = useRef(0);
  const reload = useCallback(() => {
    const n = ++seq.current;
    setState((s) => ({ ...s, loading: true }));
    return fn().then(
      (data) => n === seq.current && setState({ loading: false, data, error: null }),
      (error) => n === seq.current && setState({ loading: false, data: null, error }),
    );
  }, deps);
  useEffect(() => {
    reload();
  }, [reload]);
  return { ...state, reload };
}

/** A listing read page by page: the first page of `path` (a query string without `cursor`), then each
 * `next_cursor` on demand. Returns the first load (for its error, loading flag and reload), every page
 * so far, whether there is more, and `loadMore` with its own busy flag and error. */
export function usePaged(path, deps = []) {
  const [pages, setPages] = useState([]);
  const first = useLoad(() => {
    setPages([]);
    return get(path);
  }, deps);
  const [more, setMore] = useState({ busy: false, error: null });
  const all = first.data ? [first.data, ...pages] : [];
  const cursor = all.length ? all[all.length - 1].next_cursor : null;
  async function loadMore() {
    setMore({ busy: true, error: null });
    try {
      const join = path.includes("?") ? "&" : "?";
      const next = await get(`${path}${join}cursor=${encodeURIComponent(cursor)}`);
      setPages((p) => [...p, next]);
      setMore({ busy: false, error: null });
    } catch (e) {
      setMore({ busy: false, error: e });
    }
  }
  return { first, all, cursor, more, loadMore };
}

/** The "more" button under a `usePaged` listing, while there is a next page. */
export function MoreButton({ paged }) {
  return paged.cursor ? (
    <button type="button" onClick={paged.loadMore} disabled={paged.more.busy}>
      {t("more")}
    </button>
  ) : null;
}

/** An API error as a sentence a person can act on, with the request id for support. */
export function errorText(error) {
  if (!error) return "";
  if (error.code === "network") return t("error.network");
  const key = "error." + error.code;
  return has(key) ? t(key) : error.message || t("error.unknown");
}

export function ErrorBox({ error }) {
  if (!error) return null;
  return (
    <div class="error" role="alert">
      <p class="error-text">{errorText(error)}</p>
      {error.message && has("error." + error.code) ? <p class="error-detail">{error.message}</p> : null}
      {error.requestId ? (
        <p class="request-id">
          {t("error.request_id")} <code>{error.requestId}</code>
        </p>
      ) : null}
    </div>
  );
}

export function Loading({ label }) {
  return (
    <p class="loading" role="status">
      {label || t("loading")}
    </p>
  );
}

/** Runs an action: busy while it runs, its error shown, a status line when it succeeds. */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [done, setDone] = useState("");
  const run = useCallback(async (fn, success) => {
    setBusy(true);
    setError(null);
    setDone("");
    try {
      const r = await fn();
      if (success) setDone(success);
      return r;
    } catch (e) {
      setError(e);
      return undefined;
    } finally {
      setBusy(false);
    }
  }, []);
  return { busy, error, done, run, setDone };
}

export function Outcome({ action }) {
  return (
    <>
      <ErrorBox error={action.error} />
      <p class="status" role="status" aria-live="polite">
        {action.done}
      </p>
    </>
  );
}

/** A quota gauge: used against the limit, as a meter with its numbers written out. */
export function Gauge({ label, used, limit, unit }) {
  const pct = limit > 0 ? Math.min(100, Math.round((used / limit) * 100)) : 0;
  const level = pct >= 90 ? "high" : pct >= 70 ? "mid" : "low";
  const id = "g-" + label.replace(/\W+/g, "-");
  return (
    <div class="gauge">
      <div class="gauge-head">
        <span id={id}>{label}</span>
        <span>
          {fmtNumber(used)} / {fmtNumber(limit)} {unit || ""} ({pct}%)
        </span>
      </div>
      <div
        class="gauge-track"
        role="meter"
        aria-labelledby={id}
        aria-valuemin="0"
        aria-valuemax={limit}
        aria-valuenow={Math.min(used, limit)}
        aria-valuetext={`${pct}%`}
      >
        <Bar pct={pct} level={level} />
      </div>
    </div>
  );
}

/** A horizontal bar of a share (0–100), drawn beside the number it shows. */
export function ShareBar({ pct }) {
  return (
    <span class="share" aria-hidden="true">
      <Bar pct={pct} level="share" />
    </span>
  );
}

// Widths are set through the CSSOM (the policy admits no inline style attributes in markup).
function Bar({ pct, level }) {
  const ref = useRef(null);
  useLayoutEffect(() => {
    ref.current.style.width = pct + "%";
  }, [pct]);
  return <div ref={ref} class={"gauge-fill " + level} />;
}

/** An on/off switch. While its change is saved (`busy`) it ignores presses but keeps focus. */
export function Switch({ checked, onChange, label, busy, id }) {
  return (
    <button
      type="button"
      role="switch"
      id={id}
      class={"switch" + (checked ? " on" : "")}
      aria-checked={checked ? "true" : "false"}
      aria-busy={busy ? "true" : undefined}
      onClick={() => !busy && onChange(!checked)}
    >
      <span class="switch-knob" aria-hidden="true" />
      <span class="switch-label">{label}</span>
    </button>
  );
}

/**
 * A line or bar chart (uPlot, bundled) of `series` over days, with the same numbers in a table for
 * screen readers and keyboard users.
 */
export function Chart({ title, days, series, format = fmtNumber, bars = false }) {
  const box = useRef(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    // Days are categories (1…n), labelled month/day in the page's language.
    const xs = days.map((_, i) => i + 1);
    const label = new Intl.DateTimeFormat(locale(), { month: "numeric", day: "numeric", timeZone: "UTC" });
    const dayLabel = (i) => (days[i - 1] ? label.format(new Date(days[i - 1] + "T00:00:00Z")) : "");
    const colors = ["#2563eb", "#0f766e", "#b45309", "#7c3aed"];
    const width = () => Math.max(260, el.clientWidth || 600);
    const plot = new uPlot(
      {
        width: width(),
        height: 220,
        legend: { show: series.length > 1 },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: false, range: [0.5, Math.max(1, days.length) + 0.5] }, y: { range: (_, min, max) => [0, max > 0 ? max * 1.15 : 1] } },
        axes: [
          { incrs: [1, 2, 5, 7, 14], values: (_, ticks) => ticks.map((v) => (Number.isInteger(v) ? dayLabel(v) : "")) },
          { values: (_, ticks) => ticks.map((v) => format(v)), size: 70 },
        ],
        series: [
          {},
          ...series.map((s, i) => ({
            label: s.label,
            stroke: colors[i % colors.length],
            fill: colors[i % colors.length] + "22",
            width: 2,
            paths: bars ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined,
            value: (_, v) => (v == null ? "—" : format(v)),
          })),
        ],
      },
      [xs, ...series.map((s) => s.values)],
      el,
    );
    const ro = new ResizeObserver(() => plot.setSize({ width: width(), height: 220 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.destroy();
    };
  }, [days, series]);
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} class="chart-canvas" aria-hidden="true" />
      <details>
        <summary>{t("chart.table", { title })}</summary>
        <table>
          <thead>
            <tr>
              <th scope="col">{t("chart.day")}</th>
              {series.map((s) => (
                <th scope="col">{s.label}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {days.map((d, i) => (
              <tr>
                <th scope="row">{d}</th>
                {series.map((s) => (
                  <td>{format(s.values[i] ?? 0)}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </details>
    </figure>
  );
}

// The first view of a page load leaves focus where the browser put it (the skip link comes first).
let firstView = true;

/** Focus the page's heading when the app moves to another view, so screen readers announce it. */
export function PageTitle({ children }) {
  const ref = useRef(null);
  useEffect(() => {
    document.title = `${ref.current.textContent} · Kotoba`;
    if (!firstView) ref.current.focus({ preventScroll: true });
    firstView = false;
  }, []);
  return (
    <h1 ref={ref} tabIndex={-1}>
      {children}
    </h1>
  );
}

/** A settings history (a site's prompt, the receptionist's greeting): each version, when it was made,
 * an excerpt, and a rollback button on every version but the one in force. */
export function VersionTable({ versions, current, excerptLabel, excerpt, created, canWrite, busy, onRollback }) {
  return (
    <div class="table-wrap" tabIndex={0}>
      <table>
        <thead>
          <tr>
            <th scope="col">{t("prompt.version")}</th>
            <th scope="col">{t("prompt.created")}</th>
            <th scope="col">{excerptLabel}</th>
            {canWrite ? <th scope="col">{t("actions")}</th> : null}
          </tr>
        </thead>
        <tbody>
          {versions.map((v) => (
            <tr data-version={v.version}>
              <th scope="row">v{v.version}</th>
              <td>{created(v)}</td>
              <td class="excerpt">{excerpt(v)}</td>
              {canWrite ? (
                <td>
                  {v.version !== current ? (
                    <button type="button" onClick={() => onRollback(v.version)} disabled={busy}>
                      {t("prompt.rollback_to", { n: v.version })}
                    </button>
                  ) : (
                    t("prompt.in_force")
                  )}
                </td>
              ) : null}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
