// Credits: the balance (granted and paid), usage by function, the daily trend, the ledger and the
// packages on sale.
import { useState } from "preact/hooks";
import { get } from "../api.js";
import { t } from "../i18n.js";
import { fmtDateTime, fmtMoney, fmtNumber } from "../format.js";
import { Chart, ErrorBox, Loading, PageTitle, useLoad } from "../ui.jsx";

export function Credits() {
  const balance = useLoad(() => get("/api/credits/balance"));
  const packages = useLoad(() => get("/api/credits/packages"));
  const b = balance.data;
  return (
    <section>
      <PageTitle>{t("credits.title")}</PageTitle>
      <ErrorBox error={balance.error} />
      {balance.loading && !b ? <Loading /> : null}
      {b ? (
        <>
          <div class="cards">
            <div class="card">
              <h2>{t("credits.balance")}</h2>
              <p class="big" data-testid="credits-balance">
                {t("credits.amount", { n: fmtNumber(b.balance) })}
              </p>
              <dl class="facts">
                <dt>{t("credits.granted")}</dt>
                <dd>{fmtNumber(b.granted)}</dd>
                <dt>{t("credits.paid")}</dt>
                <dd data-testid="credits-paid">{fmtNumber(b.paid)}</dd>
                <dt>{t("credits.available")}</dt>
                <dd>{fmtNumber(b.available)}</dd>
              </dl>
            </div>
            <div class="card">
              <h2>{t("credits.month")}</h2>
              <dl class="facts">
                <dt>{t("credits.used_this_month")}</dt>
                <dd>{fmtNumber(b.used_this_month)}</dd>
                <dt>{t("credits.monthly_free")}</dt>
                <dd>{fmtNumber(b.monthly_free_credits)}</dd>
                <dt>{t("credits.total_purchased")}</dt>
                <dd>{fmtNumber(b.total_purchased)}</dd>
                <dt>{t("credits.days_left")}</dt>
                <dd>{b.estimated_days_left == null ? "—" : fmtNumber(b.estimated_days_left)}</dd>
              </dl>
            </div>
          </div>
          <h2>{t("credits.by_function")}</h2>
          <ByFunction rows={b.usage.top_functions} />
          <Chart
            title={t("credits.daily")}
            days={b.usage.daily.map((d) => d.day)}
            series={[{ label: t("credits.used"), values: b.usage.daily.map((d) => d.credits) }]}
            bars
          />
        </>
      ) : null}
      <h2>{t("credits.packages")}</h2>
      <ErrorBox error={packages.error} />
      {packages.data ? (
        packages.data.packages.length ? (
          <ul class="packages">
            {packages.data.packages.map((p) => (
              <li class="card" data-package={p.package_id}>
                <h3>{p.display_name}</h3>
                <p class="big">{t("credits.amount", { n: fmtNumber(p.credits) })}</p>
                <p>
                  {fmtMoney(p.amount, p.currency)}
                  {p.discount_percent ? ` (${t("credits.discount", { n: p.discount_percent })})` : ""}
                </p>
              </li>
            ))}
          </ul>
        ) : (
          <p>{t("credits.no_packages")}</p>
        )
      ) : null}
      <Transactions />
    </section>
  );
}

function ByFunction({ rows }) {
  if (!rows.length) return <p>{t("credits.no_usage")}</p>;
  const total = rows.reduce((s, r) => s + r.credits, 0) || 1;
  return (
    <div class="table-wrap" tabIndex={0}>
      <table class="by-function">
        <thead>
          <tr>
            <th scope="col">{t("credits.function")}</th>
            <th scope="col">{t("credits.count")}</th>
            <th scope="col">{t("credits.used")}</th>
            <th scope="col">{t("credits.share")}</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr>
              <th scope="row">{t("fn." + r.function)}</th>
              <td>{fmtNumber(r.count)}</td>
              <td>{fmtNumber(r.credits)}</td>
              <td>{Math.round((r.credits / total) * 100)}%</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Transactions() {
  const [pages, setPages] = useState([]);
  const first = useLoad(() => get("/api/credits/transactions"));
  const [more, setMore] = useState({ busy: false, error: null });
  const all = first.data ? [first.data, ...pages] : [];
  const cursor = all.length ? all[all.length - 1].next_cursor : null;
  async function loadMore() {
    setMore({ busy: true, error: null });
    try {
      const next = await get(`/api/credits/transactions?cursor=${encodeURIComponent(cursor)}`);
      setPages((p) => [...p, next]);
      setMore({ busy: false, error: null });
    } catch (e) {
      setMore({ busy: false, error: e });
    }
  }
  const rows = all.flatMap((p) => p.transactions);
  return (
    <>
      <h2>{t("credits.transactions")}</h2>
      <ErrorBox error={first.error || more.error} />
      <div class="table-wrap" tabIndex={0}>
        <table>
          <thead>
            <tr>
              <th scope="col">{t("credits.when")}</th>
              <th scope="col">{t("credits.type")}</th>
              <th scope="col">{t("credits.change")}</th>
              <th scope="col">{t("credits.after")}</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((x) => (
              <tr data-type={x.type}>
                <td>{fmtDateTime(x.created_at)}</td>
                <td>
                  {t("tx." + x.type)}
                  {x.function ? ` · ${t("fn." + x.function)}` : ""}
                </td>
                <td class={x.credits < 0 ? "neg" : "pos"}>{(x.credits > 0 ? "+" : "") + fmtNumber(x.credits)}</td>
                <td>{fmtNumber(x.balance_after)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {cursor ? (
        <button type="button" onClick={loadMore} disabled={more.busy}>
          {t("more")}
        </button>
      ) : null}
    </>
  );
}

