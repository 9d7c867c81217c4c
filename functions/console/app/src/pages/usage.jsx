// Usage: a month's daily chats, embedding tokens and cost as charts, the month's totals and quotas,
// and the daily rows as CSV.
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

function csv(report) {
  const head = ["date", "chats", "embedding_tokens", "cost_usd"];
  const rows = report.days.map((d) => [d.date, d.chats, d.embedding_tokens, d.cost_usd]);
  return [head, ...rows].map((r) => r.join(",")).join("\n") + "\n";
}

export function Usage() {
  const [month, setMonth] = useState(thisMonth());
  const report = useLoad(() => get(`/api/usage?month=${month}`), [month]);
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
  function download() {
    const blob = new Blob([csv(r)], { type: "text/csv" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `kotoba-usage-${r.month}.csv`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 0);
  }
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
        <button type="button" onClick={download} disabled={!r}>
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
        </>
      ) : null}
    </section>
  );
}
