// Settings: the tenant's profile (name, billing email, mail language, time zone) and, for owners, the
// API keys with their roles (issued keys are shown once).
import { useState } from "preact/hooks";
import { allows, del, get, patch, post } from "../api.js";
import { t } from "../i18n.js";
import { fmtDateTime } from "../format.js";
import { ErrorBox, Loading, Outcome, PageTitle, useAction, useLoad } from "../ui.jsx";

export function Settings({ session }) {
  const owner = allows(session.role, "owner");
  return (
    <section>
      <PageTitle>{t("settings.title")}</PageTitle>
      <Profile owner={owner} />
      {owner ? <Keys /> : null}
    </section>
  );
}

function Profile({ owner }) {
  const profile = useLoad(() => get("/api/tenant"));
  return (
    <section class="panel" aria-labelledby="profile-h">
      <h2 id="profile-h">{t("settings.profile")}</h2>
      <ErrorBox error={profile.error} />
      {profile.loading && !profile.data ? <Loading /> : null}
      {profile.data ? <ProfileForm p={profile.data} owner={owner} onSaved={profile.reload} /> : null}
    </section>
  );
}

function ProfileForm({ p, owner, onSaved }) {
  const [name, setName] = useState(p.name);
  const [email, setEmail] = useState(p.billing_email || "");
  const [language, setLanguage] = useState(p.language);
  const [timezone, setTimezone] = useState(p.timezone);
  const action = useAction();
  async function save(e) {
    e.preventDefault();
    const r = await action.run(
      () => patch("/api/tenant", { name, billing_email: email.trim() ? email.trim() : null, language, timezone }),
      t("saved"),
    );
    if (r) onSaved();
  }
  return (
    <form onSubmit={save}>
      <fieldset disabled={!owner}>
        <legend class="visually-hidden">{t("settings.profile")}</legend>
        <label for="p-name">{t("settings.name")}</label>
        <input id="p-name" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
        <label for="p-email">{t("settings.billing_email")}</label>
        <input id="p-email" type="email" value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
        <label for="p-lang">{t("settings.mail_language")}</label>
        <select id="p-lang" value={language} onChange={(e) => setLanguage(e.currentTarget.value)}>
          <option value="ja">日本語</option>
          <option value="en">English</option>
          <option value="ko">한국어</option>
        </select>
        <label for="p-tz">{t("settings.timezone")}</label>
        <input id="p-tz" value={timezone} onInput={(e) => setTimezone(e.currentTarget.value)} />
      </fieldset>
      {owner ? (
        <button type="submit" class="primary" disabled={action.busy}>
          {t("save")}
        </button>
      ) : null}
      <Outcome action={action} />
    </form>
  );
}

function Keys() {
  const keys = useLoad(() => get("/api/keys"));
  const [role, setRole] = useState("viewer");
  const [name, setName] = useState("");
  const [issued, setIssued] = useState(null);
  const action = useAction();
  async function issue(e) {
    e.preventDefault();
    const k = await action.run(() => post("/api/keys", { role, name: name.trim() || undefined }));
    if (k) {
      setIssued(k);
      setName("");
      keys.reload();
    }
  }
  async function revoke(k) {
    if (!confirm(t("keys.confirm_revoke", { hint: k.hint }))) return;
    const r = await action.run(() => del(`/api/keys/${k.key_id}`).then(() => true), t("keys.revoked"));
    if (r) keys.reload();
  }
  return (
    <section class="panel" aria-labelledby="keys-h">
      <h2 id="keys-h">{t("keys.title")}</h2>
      <ErrorBox error={keys.error} />
      {keys.data ? (
        <div class="table-wrap" tabIndex={0}>
          <table>
            <thead>
              <tr>
                <th scope="col">{t("keys.key")}</th>
                <th scope="col">{t("keys.name")}</th>
                <th scope="col">{t("keys.role")}</th>
                <th scope="col">{t("keys.created")}</th>
                <th scope="col">{t("actions")}</th>
              </tr>
            </thead>
            <tbody>
              {keys.data.keys.map((k) => (
                <tr data-key={k.key_id}>
                  <th scope="row">
                    <code>{k.hint}</code>
                  </th>
                  <td>{k.name || "—"}</td>
                  <td>{t("role." + k.role)}</td>
                  <td>{fmtDateTime(k.created_at)}</td>
                  <td>
                    <button type="button" class="danger" onClick={() => revoke(k)} disabled={action.busy}>
                      {t("keys.revoke")}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <form onSubmit={issue}>
        <h3>{t("keys.issue")}</h3>
        <label for="key-name">{t("keys.name")}</label>
        <input id="key-name" maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        <label for="key-role">{t("keys.role")}</label>
        <select id="key-role" value={role} onChange={(e) => setRole(e.currentTarget.value)}>
          <option value="viewer">{t("role.viewer")}</option>
          <option value="manager">{t("role.manager")}</option>
          <option value="owner">{t("role.owner")}</option>
        </select>
        <button type="submit" class="primary" disabled={action.busy}>
          {t("keys.issue_button")}
        </button>
      </form>
      <Outcome action={action} />
      {issued ? (
        <div class="banner info" role="status">
          <p>{t("keys.shown_once")}</p>
          <label for="issued-key">{t("keys.new_key", { role: t("role." + issued.role) })}</label>
          <input id="issued-key" readOnly value={issued.api_key} data-testid="issued-key" />
        </div>
      ) : null}
    </section>
  );
}
