// Plans and billing: the three plans side by side (limits and monthly free credits, from the API), the
// current one marked; owners upgrade through Stripe Checkout and manage cards and invoices in Stripe's
// Billing Portal. Stripe sends the browser back here (`/console/billing?checkout=…`).
import { allows, get, post } from "../api.js";
import { t } from "../i18n.js";
import { fmtDate, fmtNumber } from "../format.js";
import { ErrorBox, Loading, Outcome, PageTitle, useAction, useLoad } from "../ui.jsx";

const ROWS = [
  ["monthly_chats", "plans.monthly_chats"],
  ["daily_site_chats", "plans.daily_site_chats"],
  ["monthly_embedding_tokens", "plans.monthly_embedding_tokens"],
  ["training_pages", "plans.training_pages"],
  ["monthly_call_minutes", "plans.monthly_call_minutes"],
  ["sites", "plans.sites"],
  ["concurrent_training_jobs", "plans.concurrent_training_jobs"],
];

export function Plans({ session }) {
  const owner = allows(session.role, "owner");
  const data = useLoad(async () => {
    const [plans, tenant, billing] = await Promise.all([
      get("/api/plans"),
      get("/api/tenant"),
      owner ? get("/api/billing") : Promise.resolve(null),
    ]);
    return { plans: plans.plans, tenant, billing };
  });
  const action = useAction();
  const returned = new URLSearchParams(location.search).get("checkout");
  async function go(request) {
    const r = await action.run(request);
    if (r && r.url) location.assign(r.url);
  }
  const d = data.data;
  return (
    <section>
      <PageTitle>{t("plans.title")}</PageTitle>
      {returned === "success" ? (
        <p class="banner info" role="status">
          {t("plans.checkout_success")}
        </p>
      ) : null}
      {returned === "canceled" ? (
        <p class="banner warn" role="status">
          {t("plans.checkout_canceled")}
        </p>
      ) : null}
      <ErrorBox error={data.error} />
      {data.loading && !d ? <Loading /> : null}
      {d ? (
        <>
          <p>
            {t("plans.current", { plan: t("plan." + d.tenant.plan) })} · {t("sub." + d.tenant.subscription_status)}
            {d.billing?.current_period_end ? ` · ${t("overview.renews", { date: fmtDate(d.billing.current_period_end) })}` : ""}
          </p>
          <div class="table-wrap" tabIndex={0}>
            <table class="plans">
              <caption class="visually-hidden">{t("plans.compare")}</caption>
              <thead>
                <tr>
                  <td />
                  {d.plans.map((p) => (
                    <th scope="col" data-plan={p.plan} aria-current={p.plan === d.tenant.plan ? "true" : undefined}>
                      {t("plan." + p.plan)}
                      {p.plan === d.tenant.plan ? <span class="pill">{t("plans.yours")}</span> : null}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {ROWS.map(([field, key]) => (
                  <tr>
                    <th scope="row">{t(key)}</th>
                    {d.plans.map((p) => (
                      <td>{fmtNumber(p.limits[field])}</td>
                    ))}
                  </tr>
                ))}
                <tr>
                  <th scope="row">{t("credits.monthly_free")}</th>
                  {d.plans.map((p) => (
                    <td>{fmtNumber(p.monthly_free_credits)}</td>
                  ))}
                </tr>
                {owner ? (
                  <tr>
                    <td />
                    {d.plans.map((p) => (
                      <td>
                        {p.plan !== d.tenant.plan && p.purchasable ? (
                          <button
                            type="button"
                            class="primary"
                            disabled={action.busy}
                            onClick={() => go(() => post("/api/billing/checkout", { plan: p.plan }))}
                          >
                            {t("plans.choose", { plan: t("plan." + p.plan) })}
                          </button>
                        ) : null}
                      </td>
                    ))}
                  </tr>
                ) : null}
              </tbody>
            </table>
          </div>
          {owner ? (
            <button type="button" disabled={action.busy} onClick={() => go(() => post("/api/billing/portal"))}>
              {t("plans.portal")}
            </button>
          ) : (
            <p class="hint">{t("plans.owner_only")}</p>
          )}
          <Outcome action={action} />
        </>
      ) : null}
    </section>
  );
}
