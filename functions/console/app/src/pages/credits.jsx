// Credits: the balance (granted and paid), usage by function, the daily trend, the ledger and the
// packages on sale.
import { useEffect, useRef, useState } from "preact/hooks";
import { allows, get, post, put } from "../api.js";
import { t } from "../i18n.js";
import { fmtDate, fmtDateTime, fmtMinor, fmtNumber } from "../format.js";
import { Chart, ErrorBox, Loading, Outcome, PageTitle, ShareBar, Switch, useAction, useLoad, MoreButton, usePaged } from "../ui.jsx";

export function Credits({ session }) {
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
      <Analytics />
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
                  {fmtMinor(p.amount, p.currency)}
                  {p.discount_percent ? ` (${t("credits.discount", { n: p.discount_percent })})` : ""}
                </p>
                {allows(session.role, "owner") ? <Buy pkg={p} onPaid={balance.reload} /> : null}
              </li>
            ))}
          </ul>
        ) : (
          <p>{t("credits.no_packages")}</p>
        )
      ) : null}
      {b && packages.data ? (
        <AutoTopUp
          balance={b}
          packages={packages.data.packages}
          owner={allows(session.role, "owner")}
          onSaved={balance.reload}
        />
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
              <td class="share-cell">
                <ShareBar pct={Math.round((r.credits / total) * 100)} />
                {Math.round((r.credits / total) * 100)}%
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Transactions() {
  const paged = usePaged("/api/credits/transactions");
  const { first, all, more } = paged;
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
      <MoreButton paged={paged} />
    </>
  );
}


/** Stripe.js, loaded once and only when a card is to be entered, from where the page says
 * (`<meta name="kotoba-stripe-js">`, admitted by the page's Content-Security-Policy). */
let stripeJs = null;
function loadStripe() {
  stripeJs ||= new Promise((resolve, reject) => {
    const src = document.querySelector('meta[name="kotoba-stripe-js"]')?.content;
    const script = document.createElement("script");
    script.src = src;
    script.onload = () => (window.Stripe ? resolve(window.Stripe) : reject(new Error(t("card.unavailable"))));
    script.onerror = () => {
      stripeJs = null;
      reject(new Error(t("card.unavailable")));
    };
    document.head.append(script);
  });
  return stripeJs;
}

/** A purchase: with the saved card in one click, or with a new card entered in Stripe.js's card element
 * (the card goes from the browser to Stripe; Kotoba only sees the payment method it becomes). The payment
 * starts at once and the credits arrive when Stripe's webhook confirms it, so the purchase is followed
 * until it is settled (at most a minute). */
function Buy({ pkg, onPaid }) {
  const action = useAction();
  const [mode, setMode] = useState(null); // null | "saved" | "new"
  async function pay(payment) {
    setMode(null);
    const started = await action.run(() => post("/api/credits/purchase", { package_id: pkg.package_id, ...payment }));
    if (!started) return;
    action.setDone(t("buy.waiting"));
    for (let i = 0; i < 120; i++) {
      const p = await action.run(() => get(`/api/credits/purchases/${encodeURIComponent(started.purchase_id)}`));
      if (!p) return;
      if (p.status === "succeeded") {
        action.setDone(t("buy.done", { n: fmtNumber(p.credits) }));
        onPaid();
        return;
      }
      if (p.status === "failed") {
        action.setDone(t("buy.failed", { code: p.failure_code ?? "" }));
        return;
      }
      action.setDone(t("buy.waiting"));
      await new Promise((r) => setTimeout(r, 500));
    }
    action.setDone(t("buy.slow"));
  }
  const money = fmtMinor(pkg.amount, pkg.currency);
  return (
    <div class="buy">
      {mode === "saved" ? (
        <>
          <p>{t("buy.confirm", { money, n: fmtNumber(pkg.credits) })}</p>
          <button type="button" class="primary" onClick={() => pay({ saved_card: true })} disabled={action.busy}>
            {t("buy.pay")}
          </button>{" "}
          <button type="button" onClick={() => setMode(null)}>
            {t("buy.cancel")}
          </button>
        </>
      ) : mode === "new" ? (
        <NewCard pkg={pkg} money={money} onCard={(pm) => pay({ payment_method: pm })} onCancel={() => setMode(null)} />
      ) : (
        <>
          <button type="button" onClick={() => setMode("saved")} disabled={action.busy} data-buy={pkg.package_id}>
            {t("buy.button")}
          </button>{" "}
          <button type="button" onClick={() => setMode("new")} disabled={action.busy} data-buy-new={pkg.package_id}>
            {t("card.button")}
          </button>
        </>
      )}
      <Outcome action={action} />
    </div>
  );
}

/** A new card: a SetupIntent from `POST /api/billing/card-setup`, Stripe.js's card element, and
 * `confirmCardSetup`; the payment method it yields pays for the package (and stays on the customer). */
function NewCard({ pkg, money, onCard, onCancel }) {
  const holder = useRef(null);
  const [stripe, setStripe] = useState(null);
  const action = useAction();
  useEffect(() => {
    let card = null;
    let gone = false;
    action.run(async () => {
      const setup = await post("/api/billing/card-setup", {});
      const Stripe = await loadStripe();
      if (gone) return;
      const client = Stripe(setup.publishable_key);
      card = client.elements().create("card");
      card.mount(holder.current);
      setStripe({ client, card, secret: setup.client_secret });
    });
    return () => {
      gone = true;
      card?.destroy();
    };
  }, []);
  async function submit(e) {
    e.preventDefault();
    const pm = await action.run(async () => {
      const r = await stripe.client.confirmCardSetup(stripe.secret, { payment_method: { card: stripe.card } });
      if (r.error) throw new Error(r.error.message || t("card.refused"));
      return r.setupIntent.payment_method;
    });
    if (pm) onCard(pm);
  }
  return (
    <form onSubmit={submit} class="new-card" aria-label={t("card.title")}>
      <p>{t("card.intro", { money, n: fmtNumber(pkg.credits) })}</p>
      <div class="card-element" ref={holder} data-testid="card-element" />
      {stripe ? null : <Loading />}
      <button type="submit" class="primary" disabled={!stripe || action.busy}>
        {t("card.pay", { money })}
      </button>{" "}
      <button type="button" onClick={onCancel}>
        {t("buy.cancel")}
      </button>
      <Outcome action={action} />
    </form>
  );
}

/** The low-balance threshold and automatic top-up (a package bought with the saved card when the
 * balance falls below the threshold). Owners change it; others read it. */
function AutoTopUp({ balance, packages, owner, onSaved }) {
  const current = balance.auto_top_up;
  const [enabled, setEnabled] = useState(current?.enabled ?? false);
  const [threshold, setThreshold] = useState(current?.threshold ?? balance.low_balance_threshold ?? 0);
  const [pkg, setPkg] = useState(current?.package_id ?? packages[0]?.package_id ?? "");
  const [cap, setCap] = useState(current?.monthly_cap ?? 3);
  const action = useAction();
  async function save(e) {
    e.preventDefault();
    const body = { enabled, threshold: Number(threshold), monthly_cap: Number(cap) };
    if (pkg) body.package_id = pkg;
    if (await action.run(() => put("/api/credits/auto-top-up", body), t("saved"))) onSaved();
  }
  return (
    <section class="panel" aria-labelledby="topup-h">
      <h2 id="topup-h">{t("topup.title")}</h2>
      <p class="hint">{t("topup.intro")}</p>
      {current?.disabled_reason ? <p class="banner warn">{t("topup.disabled", { reason: current.disabled_reason })}</p> : null}
      {owner ? (
        <form onSubmit={save}>
          <Switch checked={enabled} onChange={setEnabled} label={t("topup.enabled")} id="topup-switch" />
          <label for="topup-threshold">{t("topup.threshold")}</label>
          <input id="topup-threshold" type="number" min="0" value={threshold} onInput={(e) => setThreshold(e.currentTarget.value)} />
          <label for="topup-package">{t("topup.package")}</label>
          <select id="topup-package" value={pkg} onChange={(e) => setPkg(e.currentTarget.value)}>
            {packages.map((p) => (
              <option value={p.package_id}>
                {p.display_name} — {t("credits.amount", { n: fmtNumber(p.credits) })} · {fmtMinor(p.amount, p.currency)}
              </option>
            ))}
          </select>
          <label for="topup-cap">{t("topup.cap")}</label>
          <input id="topup-cap" type="number" min="1" max="31" value={cap} onInput={(e) => setCap(e.currentTarget.value)} />
          <button type="submit" class="primary" disabled={action.busy}>
            {t("topup.save")}
          </button>
          <Outcome action={action} />
        </form>
      ) : (
        <dl class="facts">
          <dt>{t("topup.enabled")}</dt>
          <dd>{current?.enabled ? t("on") : t("off")}</dd>
          <dt>{t("topup.threshold")}</dt>
          <dd>{balance.low_balance_threshold == null ? "—" : fmtNumber(balance.low_balance_threshold)}</dd>
        </dl>
      )}
    </section>
  );
}

/** This month so far (`GET /api/credits/analytics`): the projection, the average and peak day, each
 * function's success rate and latency, and a cheaper plan when one would do. */
function Analytics() {
  const report = useLoad(() => get("/api/credits/analytics"));
  const a = report.data;
  return (
    <section class="panel" aria-labelledby="analytics-h">
      <h2 id="analytics-h">{t("analytics.title")}</h2>
      <ErrorBox error={report.error} />
      {a ? (
        <>
          <dl class="facts">
            <dt>{t("analytics.projected")}</dt>
            <dd data-testid="projected">{t("credits.amount", { n: fmtNumber(a.projected_month.projected_credits) })}</dd>
            <dt>{t("analytics.average")}</dt>
            <dd>{t("credits.amount", { n: fmtNumber(Math.round(a.average_daily.credits * 10) / 10) })}</dd>
            <dt>{t("analytics.peak")}</dt>
            <dd>
              {a.peak_day ? `${fmtDate(a.peak_day.day)} · ${t("credits.amount", { n: fmtNumber(a.peak_day.credits) })}` : "—"}
            </dd>
          </dl>
          {a.plan_suggestion ? (
            <p class="banner info" data-testid="plan-suggestion">
              {t("analytics.suggest", {
                plan: t("plan." + a.plan_suggestion.plan),
                n: fmtNumber(a.plan_suggestion.monthly_free_credits),
              })}
            </p>
          ) : null}
          {a.functions.length ? (
            <div class="table-wrap" tabIndex={0}>
              <table>
                <thead>
                  <tr>
                    <th scope="col">{t("credits.function")}</th>
                    <th scope="col">{t("credits.count")}</th>
                    <th scope="col">{t("credits.used")}</th>
                    <th scope="col">{t("analytics.success")}</th>
                    <th scope="col">{t("analytics.latency")}</th>
                  </tr>
                </thead>
                <tbody>
                  {a.functions.map((f) => (
                    <tr data-function={f.function}>
                      <th scope="row">{t("fn." + f.function)}</th>
                      <td>{fmtNumber(f.count)}</td>
                      <td>{fmtNumber(f.credits)}</td>
                      <td>{f.success_rate == null ? "—" : `${Math.round(f.success_rate * 1000) / 10}%`}</td>
                      <td>{f.mean_latency_ms == null ? "—" : `${fmtNumber(Math.round(f.mean_latency_ms))} ms`}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : null}
        </>
      ) : null}
    </section>
  );
}
