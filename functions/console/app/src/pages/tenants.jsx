// The operator's view of every tenant: plan, subscription status, the month's usage and cost.
import { useState } from "preact/hooks";
import { post, put } from "../api.js";
import { t } from "../i18n.js";
import { fmtMonth, fmtNumber, fmtUsd, thisMonth } from "../format.js";
import { ErrorBox, Loading, Outcome, PageTitle, useAction, MoreButton, usePaged } from "../ui.jsx";

const STATUSES = ["active", "trialing", "past_due", "canceled"];

export function Tenants() {
  const [month, setMonth] = useState(thisMonth());
  const paged = usePaged(`/api/admin/usage?month=${month}`, [month]);
  const { first, all, more } = paged;
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
                  <th scope="col">{t("tenants.set_status")}</th>
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
                    <td>
                      <SetStatus tenantId={r.usage.tenant_id} status={r.subscription_status} onSaved={first.reload} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <MoreButton paged={paged} />
        </>
      ) : null}
      <CreateTenant onCreated={first.reload} />
    </section>
  );
}

/** The subscription status, until Stripe owns it (`PUT /api/admin/tenants/{id}/subscription`). */
function SetStatus({ tenantId, status, onSaved }) {
  const [value, setValue] = useState(status);
  const action = useAction();
  async function save() {
    if (await action.run(() => put(`/api/admin/tenants/${tenantId}/subscription`, { status: value }), t("saved"))) onSaved();
  }
  return (
    <div class="inline-form">
      <select aria-label={t("tenants.status_of", { id: tenantId })} value={value} onChange={(e) => setValue(e.currentTarget.value)}>
        {STATUSES.map((s) => (
          <option value={s}>{t("sub." + s)}</option>
        ))}
      </select>
      <button type="button" onClick={save} disabled={action.busy || value === status}>
        {t("save")}
      </button>
      <Outcome action={action} />
    </div>
  );
}

function CreateTenant({ onCreated }) {
  const [name, setName] = useState("");
  const [plan, setPlan] = useState("starter");
  const [created, setCreated] = useState(null);
  const action = useAction();
  async function submit(e) {
    e.preventDefault();
    const r = await action.run(() => post("/api/admin/tenants", { name: name.trim(), plan }));
    if (r) {
      setCreated(r);
      setName("");
      onCreated();
    }
  }
  return (
    <form class="panel" onSubmit={submit}>
      <h2>{t("tenants.create")}</h2>
      <label for="tenant-name">{t("settings.name")}</label>
      <input id="tenant-name" required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />
      <label for="tenant-plan">{t("overview.plan")}</label>
      <select id="tenant-plan" value={plan} onChange={(e) => setPlan(e.currentTarget.value)}>
        {["starter", "pro", "enterprise"].map((p) => (
          <option value={p}>{t("plan." + p)}</option>
        ))}
      </select>
      <button type="submit" class="primary" disabled={action.busy}>
        {t("tenants.create_button")}
      </button>
      <Outcome action={action} />
      {created ? (
        <div class="banner info" role="status">
          <p>{t("tenants.created", { id: created.tenant_id })}</p>
          <p>{t("keys.shown_once")}</p>
          <label for="tenant-key">{t("keys.new_key", { role: t("role.owner") })}</label>
          <input id="tenant-key" readOnly value={created.api_key} data-testid="tenant-key" />
        </div>
      ) : null}
    </form>
  );
}
