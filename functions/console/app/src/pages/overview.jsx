// Overview: plan and subscription (trial end, past-due banner), credits with days left, and this
// month's usage against each quota.
import { allows, get } from "../api.js";
import { t } from "../i18n.js";
import { fmtDate, fmtNumber, thisMonth } from "../format.js";
import { Link } from "../router.jsx";
import { ErrorBox, Gauge, Loading, PageTitle, useLoad } from "../ui.jsx";

export const QUOTA_UNITS = {
  monthly_chats: "unit.chats",
  monthly_embedding_tokens: "unit.tokens",
  monthly_call_minutes: "unit.minutes",
};

export function Overview({ session }) {
  const owner = allows(session.role, "owner");
  const data = useLoad(async () => {
    const [tenant, billing, credits, usage] = await Promise.all([
      get("/api/tenant"),
      owner ? get("/api/billing") : Promise.resolve(null),
      get("/api/credits/balance"),
      get(`/api/usage?month=${thisMonth()}`),
    ]);
    return { tenant, billing, credits, usage };
  });
  return (
    <section>
      <PageTitle>{t("overview.title")}</PageTitle>
      {data.loading && !data.data ? <Loading /> : null}
      <ErrorBox error={data.error} />
      {data.data ? <Body {...data.data} /> : null}
    </section>
  );
}

function Body({ tenant, billing, credits, usage }) {
  const status = tenant.subscription_status;
  return (
    <>
      <p class="tenant-name">{tenant.name}</p>
      {status === "past_due" ? (
        <div class="banner warn" role="alert">
          <strong>{t("overview.past_due")}</strong>{" "}
          {billing?.grace_period_ends_at ? t("overview.grace_until", { date: fmtDate(billing.grace_period_ends_at) }) : null}
        </div>
      ) : null}
      {status === "trialing" ? (
        <div class="banner info" role="status">
          {billing?.trial_ends_at ? t("overview.trial_until", { date: fmtDate(billing.trial_ends_at) }) : t("overview.trialing")}
        </div>
      ) : null}
      {["canceled", "unpaid", "incomplete_expired", "paused"].includes(status) ? (
        <div class="banner warn" role="alert">
          {t("overview.inactive")}
        </div>
      ) : null}
      <div class="cards">
        <div class="card">
          <h2>{t("overview.plan")}</h2>
          <p class="big" data-testid="plan">
            {t("plan." + tenant.plan)}
          </p>
          <p>
            {t("overview.subscription")}: <span class="pill">{t("sub." + status)}</span>
          </p>
          {billing?.current_period_end ? (
            <p>{t("overview.renews", { date: fmtDate(billing.current_period_end) })}</p>
          ) : null}
          {billing?.cancel_at_period_end ? <p>{t("overview.cancels")}</p> : null}
        </div>
        <div class="card">
          <h2>{t("overview.credits")}</h2>
          <p class="big" data-testid="credit-balance">
            {t("credits.amount", { n: fmtNumber(credits.balance) })}
          </p>
          <p>
            {credits.estimated_days_left == null
              ? t("overview.days_left_unknown")
              : t("overview.days_left", { n: fmtNumber(credits.estimated_days_left) })}
          </p>
          <p>
            <Link to="/credits">{t("overview.credits_link")}</Link>
          </p>
        </div>
      </div>
      <h2>{t("overview.usage", { month: usage.month })}</h2>
      <div class="gauges">
        {usage.quotas.map((q) => (
          <Gauge label={t("quota." + q.name)} used={q.used} limit={q.limit} unit={t(QUOTA_UNITS[q.name] || "unit.none")} />
        ))}
      </div>
    </>
  );
}
