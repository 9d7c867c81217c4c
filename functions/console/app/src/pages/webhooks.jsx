// Webhooks: the tenant's endpoints (create with the secret shown once, enable/disable, test, delete)
// and each endpoint's deliveries with their attempts, and replay.
import { useState } from "preact/hooks";
import { allows, del, get, patch, post } from "../api.js";
import { t } from "../i18n.js";
import { fmtDateTime } from "../format.js";
import { ErrorBox, Loading, Outcome, PageTitle, Switch, useAction, useLoad } from "../ui.jsx";

const EVENTS = [
  "limit.reached",
  "credits.low",
  "credits.purchased",
  "feedback.created",
  "chat.error",
  "call.completed",
  "training.succeeded",
  "training.failed",
  "subscription.updated",
];

export function Webhooks({ session }) {
  const canWrite = allows(session.role, "manager");
  const list = useLoad(() => get("/api/webhooks"));
  const [open, setOpen] = useState(null);
  return (
    <section>
      <PageTitle>{t("webhooks.title")}</PageTitle>
      <ErrorBox error={list.error} />
      {list.loading && !list.data ? <Loading /> : null}
      {list.data ? (
        list.data.webhooks.length ? (
          <ul class="endpoints">
            {list.data.webhooks.map((w) => (
              <Endpoint
                w={w}
                canWrite={canWrite}
                open={open === w.webhook_id}
                onOpen={() => setOpen(open === w.webhook_id ? null : w.webhook_id)}
                onChange={list.reload}
              />
            ))}
          </ul>
        ) : (
          <p>{t("webhooks.none")}</p>
        )
      ) : null}
      {canWrite ? <CreateEndpoint onCreated={list.reload} /> : null}
    </section>
  );
}

function Endpoint({ w, canWrite, open, onOpen, onChange }) {
  const action = useAction();
  async function toggle(on) {
    if (await action.run(() => patch(`/api/webhooks/${w.webhook_id}`, { enabled: on }), t("saved"))) onChange();
  }
  async function remove() {
    if (!confirm(t("webhooks.confirm_delete", { url: w.url }))) return;
    if (await action.run(() => del(`/api/webhooks/${w.webhook_id}`).then(() => true))) onChange();
  }
  const [tick, setTick] = useState(0);
  async function test() {
    if (await action.run(() => post(`/api/webhooks/${w.webhook_id}/test`), t("webhooks.test_sent"))) setTick(tick + 1);
  }
  return (
    <li class="panel" data-webhook={w.webhook_id}>
      <h2 class="url">{w.url}</h2>
      {w.description ? <p>{w.description}</p> : null}
      <p>
        {t("webhooks.events")}: {w.events.join(", ")}
      </p>
      {w.disabled_reason ? <p class="banner warn">{w.disabled_reason}</p> : null}
      {canWrite ? (
        <div class="actions">
          <Switch checked={w.enabled} onChange={toggle} busy={action.busy} label={t("webhooks.enabled")} />
          <button type="button" onClick={test} disabled={action.busy}>
            {t("webhooks.test")}
          </button>
          <button type="button" class="danger" onClick={remove} disabled={action.busy}>
            {t("webhooks.delete")}
          </button>
        </div>
      ) : (
        <p>
          {t("webhooks.enabled")}: {w.enabled ? t("on") : t("off")}
        </p>
      )}
      <Outcome action={action} />
      <button type="button" aria-expanded={open ? "true" : "false"} onClick={onOpen}>
        {t("webhooks.deliveries")}
      </button>
      {open ? <Deliveries key={tick} webhookId={w.webhook_id} canWrite={canWrite} /> : null}
    </li>
  );
}

function Deliveries({ webhookId, canWrite }) {
  const list = useLoad(() => get(`/api/webhooks/${webhookId}/deliveries`), [webhookId]);
  const action = useAction();
  async function replay(id) {
    if (await action.run(() => post(`/api/webhooks/${webhookId}/deliveries/${id}/replay`), t("webhooks.replayed")))
      list.reload();
  }
  return (
    <div class="deliveries">
      <ErrorBox error={list.error} />
      <Outcome action={action} />
      {list.data ? (
        list.data.deliveries.length ? (
          <div class="table-wrap" tabIndex={0}>
            <table>
              <thead>
                <tr>
                  <th scope="col">{t("webhooks.when")}</th>
                  <th scope="col">{t("webhooks.event")}</th>
                  <th scope="col">{t("webhooks.status")}</th>
                  <th scope="col">{t("webhooks.attempts")}</th>
                  {canWrite ? <th scope="col">{t("actions")}</th> : null}
                </tr>
              </thead>
              <tbody>
                {list.data.deliveries.map((d) => {
                  const last = d.attempts[d.attempts.length - 1];
                  return (
                    <tr data-delivery={d.delivery_id} data-status={d.status}>
                      <td>{fmtDateTime(d.created_at)}</td>
                      <td>{d.event_type}</td>
                      <td>{t("delivery." + d.status)}</td>
                      <td>
                        {d.attempt_count}
                        {last ? ` · ${last.status_code ?? last.error ?? ""}` : ""}
                      </td>
                      {canWrite ? (
                        <td>
                          <button type="button" onClick={() => replay(d.delivery_id)} disabled={action.busy}>
                            {t("webhooks.replay")}
                          </button>
                        </td>
                      ) : null}
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        ) : (
          <p>{t("webhooks.no_deliveries")}</p>
        )
      ) : null}
    </div>
  );
}

function CreateEndpoint({ onCreated }) {
  const [url, setUrl] = useState("");
  const [description, setDescription] = useState("");
  const [events, setEvents] = useState(["training.succeeded", "training.failed"]);
  const [secret, setSecret] = useState(null);
  const action = useAction();
  async function submit(e) {
    e.preventDefault();
    const r = await action.run(() =>
      post("/api/webhooks", { url: url.trim(), events, description: description.trim() || undefined }),
    );
    if (r) {
      setSecret(r.secret);
      setUrl("");
      setDescription("");
      onCreated();
    }
  }
  const toggle = (ev) => setEvents(events.includes(ev) ? events.filter((x) => x !== ev) : [...events, ev]);
  return (
    <form class="panel" onSubmit={submit}>
      <h2>{t("webhooks.create")}</h2>
      <label for="wh-url">{t("webhooks.url")}</label>
      <input id="wh-url" type="url" required placeholder="https://" value={url} onInput={(e) => setUrl(e.currentTarget.value)} />
      <label for="wh-desc">{t("webhooks.description")}</label>
      <input id="wh-desc" value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
      <fieldset class="checks">
        <legend>{t("webhooks.events")}</legend>
        {EVENTS.map((ev) => (
          <label class="check">
            <input type="checkbox" checked={events.includes(ev)} onChange={() => toggle(ev)} />
            {ev}
          </label>
        ))}
      </fieldset>
      <button type="submit" class="primary" disabled={action.busy || !events.length}>
        {t("webhooks.create_button")}
      </button>
      <Outcome action={action} />
      {secret ? (
        <div class="banner info" role="status">
          <p>{t("webhooks.secret_once")}</p>
          <label for="wh-secret">{t("webhooks.secret")}</label>
          <input id="wh-secret" readOnly value={secret} />
        </div>
      ) : null}
    </form>
  );
}
