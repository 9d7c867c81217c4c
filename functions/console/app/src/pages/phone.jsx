// Phone: the tenant's numbers (taken from the operator's pool), the receptionist's prompt, greeting,
// voice and language with versions and rollback, the call list and a call's transcript and summary.
import { useState } from "preact/hooks";
import { allows, del, get, patch, post } from "../api.js";
import { t } from "../i18n.js";
import { fmtDateTime, fmtDuration, fmtUsd } from "../format.js";
import { Link } from "../router.jsx";
import { ErrorBox, Loading, Outcome, PageTitle, useAction, useLoad, VersionTable } from "../ui.jsx";

const VOICES = ["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"];

export function Phone({ session }) {
  const canWrite = allows(session.role, "manager");
  return (
    <section>
      <PageTitle>{t("phone.title")}</PageTitle>
      <Numbers canWrite={canWrite} />
      <Receptionist canWrite={canWrite} />
      <Calls />
    </section>
  );
}

function Numbers({ canWrite }) {
  const data = useLoad(async () => {
    const [mine, pool] = await Promise.all([get("/api/phone-numbers"), get("/api/phone-numbers/available")]);
    return { mine: mine.phone_numbers, pool: pool.phone_numbers };
  });
  const action = useAction();
  const take = async (number) => {
    if (await action.run(() => post("/api/phone-numbers", { number }), t("phone.taken", { number }))) data.reload();
  };
  const give = async (number) => {
    if (!confirm(t("phone.confirm_release", { number }))) return;
    if (await action.run(() => del(`/api/phone-numbers/${encodeURIComponent(number)}`).then(() => true), t("phone.released", { number })))
      data.reload();
  };
  return (
    <section class="panel" aria-labelledby="numbers-h">
      <h2 id="numbers-h">{t("phone.numbers")}</h2>
      <ErrorBox error={data.error} />
      {data.loading && !data.data ? <Loading /> : null}
      {data.data ? (
        <>
          {data.data.mine.length ? (
            <ul class="numbers">
              {data.data.mine.map((n) => (
                <li>
                  <span class="number">{n.number}</span>
                  {canWrite ? (
                    <button type="button" class="danger" onClick={() => give(n.number)} disabled={action.busy}>
                      {t("phone.release")}
                    </button>
                  ) : null}
                </li>
              ))}
            </ul>
          ) : (
            <p>{t("phone.no_numbers")}</p>
          )}
          {canWrite ? (
            <>
              <h3>{t("phone.pool")}</h3>
              {data.data.pool.length ? (
                <ul class="numbers">
                  {data.data.pool.map((n) => (
                    <li>
                      <span class="number">{n.number}</span>
                      <button type="button" onClick={() => take(n.number)} disabled={action.busy}>
                        {t("phone.take")}
                      </button>
                    </li>
                  ))}
                </ul>
              ) : (
                <p>{t("phone.pool_empty")}</p>
              )}
            </>
          ) : null}
        </>
      ) : null}
      <Outcome action={action} />
    </section>
  );
}

function Receptionist({ canWrite }) {
  const data = useLoad(async () => {
    const [settings, versions] = await Promise.all([get("/api/voice"), get("/api/voice/versions")]);
    return { settings, versions: versions.versions };
  });
  return (
    <section class="panel" aria-labelledby="recept-h">
      <h2 id="recept-h">{t("phone.receptionist")}</h2>
      <ErrorBox error={data.error} />
      {data.loading && !data.data ? <Loading /> : null}
      {data.data ? (
        <ReceptionistForm key={data.data.settings.version} {...data.data} canWrite={canWrite} onSaved={data.reload} />
      ) : null}
    </section>
  );
}

function ReceptionistForm({ settings, versions, canWrite, onSaved }) {
  const [s, setS] = useState(settings);
  const action = useAction();
  const set = (k) => (e) => setS({ ...s, [k]: e.currentTarget.value });
  async function save(e) {
    e.preventDefault();
    const body = { system_prompt: s.system_prompt, greeting: s.greeting, voice: s.voice, language: s.language };
    if (await action.run(() => patch("/api/voice", body), t("phone.saved"))) onSaved();
  }
  async function rollback(version) {
    if (await action.run(() => post("/api/voice/rollback", { version }), t("prompt.rolled_back", { n: version })))
      onSaved();
  }
  return (
    <>
      <p>{t("prompt.current", { n: settings.version })}</p>
      <form onSubmit={save}>
        <fieldset disabled={!canWrite}>
          <legend class="visually-hidden">{t("phone.receptionist")}</legend>
          <label for="v-greeting">{t("phone.greeting")}</label>
          <textarea id="v-greeting" rows={2} value={s.greeting} onInput={set("greeting")} />
          <label for="v-prompt">{t("phone.prompt")}</label>
          <textarea id="v-prompt" rows={5} value={s.system_prompt} onInput={set("system_prompt")} />
          <div class="row">
            <div>
              <label for="v-voice">{t("phone.voice")}</label>
              <select id="v-voice" value={s.voice} onChange={set("voice")}>
                {VOICES.map((v) => (
                  <option value={v}>{v}</option>
                ))}
              </select>
            </div>
            <div>
              <label for="v-lang">{t("phone.language")}</label>
              <select id="v-lang" value={s.language} onChange={set("language")}>
                <option value="ja">日本語</option>
                <option value="en">English</option>
                <option value="ko">한국어</option>
              </select>
            </div>
          </div>
        </fieldset>
        {canWrite ? (
          <button type="submit" class="primary" disabled={action.busy}>
            {t("save")}
          </button>
        ) : null}
      </form>
      <Outcome action={action} />
      <h3>{t("prompt.versions")}</h3>
      <VersionTable
        versions={versions}
        current={settings.version}
        excerptLabel={t("phone.greeting")}
        excerpt={(v) => v.greeting}
        created={(v) => (v.created_at ? fmtDateTime(v.created_at) : t("phone.default"))}
        canWrite={canWrite}
        busy={action.busy}
        onRollback={rollback}
      />
    </>
  );
}

function Calls() {
  const calls = useLoad(() => get("/api/calls?limit=50"));
  return (
    <section class="panel" aria-labelledby="calls-h">
      <h2 id="calls-h">{t("phone.calls")}</h2>
      <ErrorBox error={calls.error} />
      {calls.data ? (
        calls.data.calls.length ? (
          <div class="table-wrap" tabIndex={0}>
            <table>
              <thead>
                <tr>
                  <th scope="col">{t("phone.started")}</th>
                  <th scope="col">{t("phone.from")}</th>
                  <th scope="col">{t("phone.to")}</th>
                  <th scope="col">{t("phone.duration")}</th>
                  <th scope="col">{t("usage.cost")}</th>
                </tr>
              </thead>
              <tbody>
                {calls.data.calls.map((c) => (
                  <tr>
                    <th scope="row">
                      <Link to={`/phone/calls/${c.call_sid}`}>{fmtDateTime(c.started_at)}</Link>
                    </th>
                    <td>{c.from}</td>
                    <td>{c.to}</td>
                    <td>{fmtDuration(c.duration_seconds)}</td>
                    <td>{fmtUsd(c.cost_usd)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : (
          <p>{t("phone.no_calls")}</p>
        )
      ) : null}
    </section>
  );
}

export function CallDetail({ callSid }) {
  const call = useLoad(() => get(`/api/calls/${callSid}`), [callSid]);
  const c = call.data;
  return (
    <section>
      <p>
        <Link to="/phone">{t("phone.back")}</Link>
      </p>
      <PageTitle>{t("phone.call")}</PageTitle>
      <ErrorBox error={call.error} />
      {call.loading && !c ? <Loading /> : null}
      {c ? (
        <>
          <dl class="facts">
            <dt>{t("phone.started")}</dt>
            <dd>{fmtDateTime(c.started_at)}</dd>
            <dt>{t("phone.from")}</dt>
            <dd>{c.from}</dd>
            <dt>{t("phone.to")}</dt>
            <dd>{c.to}</dd>
            <dt>{t("phone.duration")}</dt>
            <dd>{fmtDuration(c.duration_seconds)}</dd>
            <dt>{t("usage.cost")}</dt>
            <dd>{fmtUsd(c.cost_usd)}</dd>
          </dl>
          <h2>{t("phone.summary")}</h2>
          <p class="summary" data-testid="call-summary">
            {c.summary || "—"}
          </p>
          <h2>{t("phone.transcript")}</h2>
          <ol class="transcript">
            {c.transcript.map((line) => (
              <li class={"turn " + line.speaker}>
                <span class="speaker">{t("phone.speaker." + line.speaker)}</span>
                <span class="offset">{fmtDuration(Math.floor(line.offset_ms / 1000))}</span>
                <p>{line.text}</p>
              </li>
            ))}
          </ol>
        </>
      ) : null}
    </section>
  );
}
