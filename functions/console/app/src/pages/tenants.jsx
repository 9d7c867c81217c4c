// The operator's view of every tenant: plan, subscription status, the month's usage and cost.
import { useState } from "preact/hooks";
import { get } from "../api.js";
import { t } from "../i18n.js";
import { fmtMonth, fmtNumber, fmtUsd, thisMonth } from "../format.js";
import { ErrorBox, Loading, PageTitle, useLoad } from "../ui.jsx";

export function Tenants() {
  const [month, setMonth] = useState(thisMonth());
  const [pages, setPages] = useState([]);
  const first = useLoad(() => {
    setPages([]);
    return get(`/api/admin/usage?month=${month}`);
  }, [month]);
  const [more, setMore] = useState({ busy: false, error: null });
  const all = first.data ? [first.data, ...pages] : [];
  const cursor = all.length ? all[all.length - 1].next_cursor : null;
  async function loadMore() {
    setMore({ busy: true, error: null });
    try {
      const next = await get(`/api/admin/usage?month=${month}&cursor=${encodeURIComponent(cursor)}`);
      setPages((p) => [...p, next]);
      setMore({ busy: false, error: null });
    } catch (e) {
      setMore({ busy: false, error: e });
    }
  }
  const rows = all.flatMap((p) => p.tenants);
  return (
    <section>
      <PageTitle>{t("tenants.title")}</PageTitle>
      <div class="toolbar">
        <label for="tenants-month">{t("usage.month")}</label>
        <input
          id="tenants-month"
          type="month"
          max={thisMonth()}
          value={month}
          onChange={(e) => e.currentTarget.value && setMonth(e.currentTarget.value)}
        />
      </div>
      <ErrorBox error={first.error || more.error} />
      {first.loading && !first.data ? <Loading /> : null}
      {first.data ? (
        <>
          <h2>{fmtMonth(month)}</h2>
          <div class="table-wrap" tabIndex={0}>
            <table>
              <thead>
                <tr>
                  <th scope="col">{t("tenants.name")}</th>
                  <th scope="col">{t("overview.plan")}</th>
                  <th scope="col">{t("overview.subscription")}</th>
                  <th scope="col">{t("usage.chats")}</th>
                  <th scope="col">{t("usage.embedding_tokens")}</th>
                  <th scope="col">{t("usage.call_minutes")}</th>
                  <th scope="col">{t("usage.cost")}</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((r) => (
                  <tr data-tenant={r.usage.tenant_id}>
                    <th scope="row">
                      {r.name}
                      <br />
                      <code class="small">{r.usage.tenant_id}</code>
                    </th>
                    <td>{t("plan." + r.usage.plan)}</td>
                    <td>{t("sub." + r.subscription_status)}</td>
                    <td>{fmtNumber(r.usage.totals.chats)}</td>
                    <td>{fmtNumber(r.usage.totals.embedding_tokens)}</td>
                    <td>{fmtNumber(Math.ceil(r.usage.totals.call_seconds / 60))}</td>
                    <td>{fmtUsd(r.usage.totals.cost_usd)}</td>
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
      ) : null}
    </section>
  );
}
