// The operator's credit packages: the whole catalogue (on sale or not) and a form for a new one.
import { useState } from "preact/hooks";
import { get, post } from "../api.js";
import { t } from "../i18n.js";
import { fmtDate, fmtMinor, fmtNumber } from "../format.js";
import { ErrorBox, Loading, Outcome, PageTitle, useAction, useLoad } from "../ui.jsx";

export function Packages() {
  const list = useLoad(() => get("/api/admin/credits/packages"));
  const now = Date.now();
  const onSale = (p) =>
    p.active && (!p.valid_from || Date.parse(p.valid_from) <= now) && (!p.valid_until || now < Date.parse(p.valid_until));
  return (
    <section>
      <PageTitle>{t("packages.title")}</PageTitle>
      <ErrorBox error={list.error} />
      {list.loading && !list.data ? <Loading /> : null}
      {list.data ? (
        list.data.packages.length ? (
          <div class="table-wrap" tabIndex={0}>
            <table>
              <thead>
                <tr>
                  <th scope="col">{t("packages.name")}</th>
                  <th scope="col">{t("packages.credits")}</th>
                  <th scope="col">{t("packages.price")}</th>
                  <th scope="col">{t("packages.discount")}</th>
                  <th scope="col">{t("packages.charged")}</th>
                  <th scope="col">{t("packages.window")}</th>
                  <th scope="col">{t("packages.status")}</th>
                </tr>
              </thead>
              <tbody>
                {list.data.packages.map((p) => (
                  <tr data-package-row={p.package_id}>
                    <th scope="row">
                      {p.display_name}
                      <br />
                      <code class="small">{p.package_id}</code>
                    </th>
                    <td>{fmtNumber(p.credits)}</td>
                    <td>{fmtMinor(p.price, p.currency)}</td>
                    <td>{p.discount_percent ? `${p.discount_percent}%` : "—"}</td>
                    <td>{fmtMinor(p.amount, p.currency)}</td>
                    <td>
                      {p.valid_from ? fmtDate(p.valid_from) : "…"} – {p.valid_until ? fmtDate(p.valid_until) : "…"}
                    </td>
                    <td>{onSale(p) ? t("packages.on_sale") : p.active ? t("packages.outside_window") : t("packages.inactive")}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : (
          <p>{t("credits.no_packages")}</p>
        )
      ) : null}
      <NewPackage onCreated={list.reload} />
    </section>
  );
}

function NewPackage({ onCreated }) {
  const [name, setName] = useState("");
  const [credits, setCredits] = useState("");
  const [price, setPrice] = useState("");
  const [currency, setCurrency] = useState("JPY");
  const [discount, setDiscount] = useState("0");
  const action = useAction();
  async function submit(e) {
    e.preventDefault();
    // Prices are typed in the main unit (yen, dollars) and sent in the smallest (yen, cents).
    const minor = currency === "USD" ? Math.round(Number(price) * 100) : Math.round(Number(price));
    const body = {
      display_name: name.trim(),
      credits: Number(credits),
      price: minor,
      currency,
      discount_percent: Number(discount),
    };
    if (await action.run(() => post("/api/admin/credits/packages", body), t("packages.created"))) {
      setName("");
      setCredits("");
      setPrice("");
      onCreated();
    }
  }
  return (
    <form class="panel" onSubmit={submit}>
      <h2>{t("packages.create")}</h2>
      <label for="package-name">{t("packages.name")}</label>
      <input id="package-name" required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />
      <label for="package-credits">{t("packages.credits")}</label>
      <input id="package-credits" type="number" required min="1" value={credits} onInput={(e) => setCredits(e.currentTarget.value)} />
      <label for="package-currency">{t("packages.currency")}</label>
      <select id="package-currency" value={currency} onChange={(e) => setCurrency(e.currentTarget.value)}>
        <option value="JPY">JPY (¥)</option>
        <option value="USD">USD ($)</option>
      </select>
      <label for="package-price">{t("packages.price")}</label>
      <input
        id="package-price"
        type="number"
        required
        min="0"
        step={currency === "USD" ? "0.01" : "1"}
        value={price}
        onInput={(e) => setPrice(e.currentTarget.value)}
      />
      <label for="package-discount">{t("packages.discount")}</label>
      <input id="package-discount" type="number" min="0" max="100" value={discount} onInput={(e) => setDiscount(e.currentTarget.value)} />
      <button type="submit" class="primary" disabled={action.busy}>
        {t("packages.create_button")}
      </button>
      <Outcome action={action} />
    </form>
  );
}
