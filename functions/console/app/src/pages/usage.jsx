// Usage: a month's daily chats, embedding tokens and cost as charts, the month's totals and quotas,
// the month by site and by model, and each table as CSV.
import { useMemo, useState } from "preact/hooks";
import { get } from "../api.js";
import { t } from "../i18n.js";
import { fmtMonth, fmtNumber, fmtUsd, thisMonth } from "../format.js";
import { Chart, ErrorBox, Gauge, Loading, PageTitle, useLoad } from "../ui.jsx";
import { QUOTA_UNITS } from "./overview.jsx";

/** Every day of `month` (UTC) up to today, with the API's rows filled in and 0 elsewhere. */
export function monthDays(month, rows, pick) {
  const [y, m] = month.split("-").map(Number);
  const last = new Date(Date.UTC(y, m, 0)).getUTCDate();
  const today = new Date().toISOString().slice(0, 10);
  const byDay = new Map(rows.map((r) => [r.date || r.day, r]));
  const days = [];
  for (let d = 1; d <= last; d++) {
    const day = `${month}-${String(d).padStart(2, "0")}`;
    if (day > today) break;
    days.push(day);
  }
  return { days, values: (f) => days.map((d) => (byDay.has(d) ? f(byDay.get(d)) : 0)) };
}

/** A CSV field: quoted when it holds a comma, a quote or a line break (a site's name may). */
const field = (v) => (/[",\r\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));

function download(name, head, rows) {
  const text = [head, ...rows].map((r) => r.map(field).join(",")).join("\n") + "\n";
  const blob = new Blob([text], { type: "text/csv" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 0);
}

const csv = {
  days: (r) =>
    download(
      `kotoba-usage-${r.month}.csv`,
      ["date", "chats", "embedding_tokens", "cost_usd"],
      r.days.map((d) => [d.date, d.chats, d.embedding_tokens, d.cost_usd]),
    ),
  sites: (r, names) =>
    download(
      `kotoba-usage-${r.month}-sites.csv`,
      ["site_id", "name", "chats", "embedding_tokens", "cost_usd"],
      r.sites.map((s) => [s.site_id, names.get(s.site_id) || "", s.chats, s.embedding_tokens, s.cost_usd]),
    ),
  models: (r) =>
    download(
      `kotoba-usage-${r.month}-models.csv`,
      ["model", "requests", "input_tokens", "output_tokens", "seconds", "cost_usd"],
      r.models.map((m) => [m.model, m.requests, m.input_tokens, m.output_tokens, m.seconds, m.cost_usd]),
    ),
};

function BySite({ report, names }) {
  return (
    <section class="panel" aria-labelledby="by-site-h">
      <h2 id="by-site-h">{t("usage.by_site")}</h2>
      {report.sites.length ? (
        <>
          <div class="table-wrap" tabIndex={0}>
            <table data-testid="by-site">
              <thead>
                <tr>
                  <th scope="col">{t("usage.site")}</th>
                  <th scope="col">{t("usage.chats")}</th>
                  <th scope="col">{t("usage.embedding_tokens")}</th>
                  <th scope="col">{t("usage.cost")}</th>
                </tr>
              </thead>
              <tbody>
                {report.sites.map((s) => (
                  <tr data-site={s.site_id}>
                    <th scope="row">{names.get(s.site_id) || <code>{s.site_id}</code>}</th>
                    <td>{fmtNumber(s.chats)}</td>
                    <td>{fmtNumber(s.embedding_tokens)}</td>
                    <td>{fmtUsd(s.cost_usd)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <button type="button" onClick={() => csv.sites(report, names)}>
            {t("usage.csv_sites")}
          </button>
        </>
      ) : (
        <p>{t("usage.none")}</p>
      )}
    </section>
  );
}

function ByModel({ report }) {
  return (
    <section class="panel" aria-labelledby="by-model-h">
      <h2 id="by-model-h">{t("usage.by_model")}</h2>
      {report.models.length ? (
        <>
          <div class="table-wrap" tabIndex={0}>
            <table data-testid="by-model">
              <thead>
                <tr>
                  <th scope="col">{t("usage.model")}</th>
                  <th scope="col">{t("usage.requests")}</th>
                  <th scope="col">{t("usage.model_input")}</th>
                  <th scope="col">{t("usage.model_output")}</th>
                  <th scope="col">{t("usage.call_minutes")}</th>
                  <th scope="col">{t("usage.cost")}</th>
                </tr>
              </thead>
              <tbody>
                {report.models.map((m) => (
                  <tr data-model={m.model}>
                    <th scope="row">
                      <code>{m.model}</code>
                    </th>
                    <td>{fmtNumber(m.requests)}</td>
                    <td>{fmtNumber(m.input_tokens)}</td>
                    <td>{fmtNumber(m.output_tokens)}</td>
                    <td>{m.seconds ? fmtNumber(Math.ceil(m.seconds / 60)) : "—"}</td>
                    <td>{fmtUsd(m.cost_usd)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <button type="button" onClick={() => csv.models(report)}>
            {t("usage.csv_models")}
          </button>
        </>
      ) : (
        <p>{t("usage.none")}</p>
      )}
    </section>
  );
}

export function Usage() {
  const [month, setMonth] = useState(thisMonth());
  const report = useLoad(() => get(`/api/usage?month=${month}`), [month]);
  // Site names for the breakdown; a deleted site keeps its id.
  const sites = useLoad(() => get("/api/sites"));
  const names = useMemo(() => new Map((sites.data?.sites || []).map((s) => [s.site_id, s.name])), [sites.data]);
  const r = report.data;
  const charts = useMemo(() => {
    if (!r) return null;
    const { days, values } = monthDays(r.month, r.days);
    return {
      days,
      chats: [{ label: t("usage.chats"), values: values((d) => d.chats) }],
      tokens: [{ label: t("usage.embedding_tokens"), values: values((d) => d.embedding_tokens) }],
      cost: [{ label: t("usage.cost"), values: values((d) => d.cost_usd) }],
    };
  }, [r]);
  return (
    <section>
      <PageTitle>{t("usage.title")}</PageTitle>
      <div class="toolbar">
        <label for="usage-month">{t("usage.month")}</label>
        <input
          id="usage-month"
          type="month"
          max={thisMonth()}
          value={month}
          onChange={(e) => e.currentTarget.value && setMonth(e.currentTarget.value)}
        />
        <button type="button" onClick={() => csv.days(r)} disabled={!r}>
          {t("usage.csv")}
        </button>
      </div>
      <ErrorBox error={report.error} />
      {report.loading && !r ? <Loading /> : null}
      {r && charts ? (
        <>
          <h2>{fmtMonth(r.month)}</h2>
          <dl class="facts totals">
            <dt>{t("usage.chats")}</dt>
            <dd data-testid="total-chats">{fmtNumber(r.totals.chats)}</dd>
            <dt>{t("usage.input_tokens")}</dt>
            <dd>{fmtNumber(r.totals.chat_input_tokens)}</dd>
            <dt>{t("usage.output_tokens")}</dt>
            <dd>{fmtNumber(r.totals.chat_output_tokens)}</dd>
            <dt>{t("usage.embedding_tokens")}</dt>
            <dd>{fmtNumber(r.totals.embedding_tokens)}</dd>
            <dt>{t("usage.call_minutes")}</dt>
            <dd>{fmtNumber(Math.ceil(r.totals.call_seconds / 60))}</dd>
            <dt>{t("usage.cost")}</dt>
            <dd>{fmtUsd(r.totals.cost_usd)}</dd>
          </dl>
          <div class="gauges">
            {r.quotas.map((q) => (
              <Gauge label={t("quota." + q.name)} used={q.used} limit={q.limit} unit={t(QUOTA_UNITS[q.name] || "unit.none")} />
            ))}
          </div>
          <div class="charts">
            <Chart title={t("usage.chats_daily")} days={charts.days} series={charts.chats} bars />
            <Chart title={t("usage.tokens_daily")} days={charts.days} series={charts.tokens} bars />
            <Chart title={t("usage.cost_daily")} days={charts.days} series={charts.cost} format={fmtUsd} />
          </div>
          <BySite report={r} names={names} />
          <ByModel report={r} />
        </>
      ) : null}
    </section>
  );
}
