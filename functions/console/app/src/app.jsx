// The console's shell: sign-in, the navigation the signed-in role may use, the language switch, and
// the view for the current URL.
import { useEffect, useState } from "preact/hooks";
import { ApiError, del, get, onSessionEnded, post, setAdminKey, setCsrf } from "./api.js";
import { LANGS, lang, onLang, setLang, t } from "./i18n.js";
import { Link, navigate, useRoute } from "./router.jsx";
import { ErrorBox, Loading } from "./ui.jsx";
import { Overview } from "./pages/overview.jsx";
import { Sites, SiteDetail } from "./pages/sites.jsx";
import { Usage } from "./pages/usage.jsx";
import { Credits } from "./pages/credits.jsx";
import { Settings } from "./pages/settings.jsx";
import { Phone, CallDetail } from "./pages/phone.jsx";
import { Webhooks } from "./pages/webhooks.jsx";
import { Tenants } from "./pages/tenants.jsx";
import { Packages } from "./pages/packages.jsx";
import { Plans } from "./pages/plans.jsx";

const LANG_NAMES = { ja: "日本語", en: "English", ko: "한국어" };

/** The views, in navigation order; `admin` views are the operator's. */
const VIEWS = [
  { path: "/", key: "nav.overview", view: Overview },
  { path: "/sites", key: "nav.sites", view: Sites },
  { path: "/usage", key: "nav.usage", view: Usage },
  { path: "/credits", key: "nav.credits", view: Credits },
  { path: "/phone", key: "nav.phone", view: Phone },
  { path: "/webhooks", key: "nav.webhooks", view: Webhooks },
  { path: "/billing", key: "nav.plans", view: Plans },
  { path: "/settings", key: "nav.settings", view: Settings },
];
const ADMIN_VIEWS = [
  { path: "/admin/tenants", key: "nav.tenants", view: Tenants },
  { path: "/admin/packages", key: "nav.packages", view: Packages },
];

function match(path, session) {
  if (session.admin) {
    const v = ADMIN_VIEWS.find((v) => v.path === path);
    return v ? { view: v.view } : { view: Tenants, redirect: "/admin/tenants" };
  }
  let m = path.match(/^\/sites\/(site_[A-Za-z0-9]+)$/);
  if (m) return { view: SiteDetail, params: { siteId: m[1] }, nav: "/sites" };
  m = path.match(/^\/phone\/calls\/([A-Za-z0-9]+)$/);
  if (m) return { view: CallDetail, params: { callSid: m[1] }, nav: "/phone" };
  const v = VIEWS.find((v) => v.path === path);
  return v ? { view: v.view, nav: v.path } : { view: NotFound };
}

function NotFound() {
  return (
    <section>
      <h1>{t("notfound.title")}</h1>
      <p>
        <Link to="/">{t("nav.overview")}</Link>
      </p>
    </section>
  );
}

export function App() {
  const [, rerender] = useState(0);
  const [session, setSession] = useState(undefined);
  const [error, setError] = useState(null);
  useEffect(() => onLang(() => rerender((n) => n + 1)), []);
  // A session that ends while the page is open (expiry, sign-out in another tab, a revoked key)
  // brings back the sign-in form, saying why.
  useEffect(
    () =>
      onSessionEnded(() => {
        setCsrf(null);
        setAdminKey(null);
        setError(new ApiError({ status: 401, code: "session_ended", message: "" }));
        setSession(null);
      }),
    [],
  );
  useEffect(() => {
    get("/api/console/session").then(
      (s) => {
        setCsrf(s.csrf_token);
        setSession(s);
      },
      (e) => {
        if (e.status !== 401 && e.status !== 404) setError(e);
        setSession(null);
      },
    );
  }, []);

  if (session === undefined) return <Loading />;
  if (!session)
    return (
      <SignIn
        error={error}
        onSession={(s) => {
          setError(null);
          setSession(s);
        }}
      />
    );
  return <Shell session={session} onSignOut={() => setSession(null)} />;
}

function LangSwitch() {
  return (
    <label class="lang">
      <span class="visually-hidden">{t("lang.label")}</span>
      <select value={lang()} onChange={(e) => setLang(e.currentTarget.value)}>
        {LANGS.map((l) => (
          <option value={l} lang={l}>
            {LANG_NAMES[l]}
          </option>
        ))}
      </select>
    </label>
  );
}

function SignIn({ onSession, error: initial }) {
  const [key, setKey] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(initial);
  async function submit(e) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const value = key.trim();
    try {
      const s = await post("/api/console/session", { api_key: value });
      setCsrf(s.csrf_token);
      setKey("");
      navigate("/", { replace: true });
      onSession(s);
    } catch (err) {
      // Not a tenant key: the operator's admin key opens the operator views (kept in memory only).
      if (err.status === 401) {
        setAdminKey(value);
        try {
          await get("/api/admin/usage");
          setKey("");
          navigate("/admin/tenants", { replace: true });
          onSession({ admin: true, role: "admin" });
          return;
        } catch {
          setAdminKey(null);
        }
      }
      setError(err);
    } finally {
      setBusy(false);
    }
  }
  return (
    <div class="signin-page">
      <header class="signin-top">
        <span class="brand">Kotoba</span>
        <LangSwitch />
      </header>
      <main id="main" class="signin">
        <h1>{t("signin.title")}</h1>
        <p>{t("signin.intro")}</p>
        <form onSubmit={submit}>
          <label for="api-key">{t("signin.key")}</label>
          <input
            id="api-key"
            type="password"
            autocomplete="off"
            spellcheck={false}
            required
            value={key}
            onInput={(e) => setKey(e.currentTarget.value)}
          />
          <button type="submit" class="primary" disabled={busy}>
            {t("signin.submit")}
          </button>
        </form>
        <ErrorBox error={error} />
        <p class="hint">{t("signin.hint")}</p>
      </main>
    </div>
  );
}

function Shell({ session, onSignOut }) {
  const path = useRoute();
  const [menu, setMenu] = useState(false);
  const [error, setError] = useState(null);
  const found = match(path, session);
  useEffect(() => {
    if (found.redirect) navigate(found.redirect, { replace: true });
  }, [found.redirect]);
  useEffect(() => setMenu(false), [path]);
  const views = session.admin ? ADMIN_VIEWS : VIEWS;
  const View = found.view;

  async function signOut() {
    setError(null);
    try {
      if (!session.admin) await del("/api/console/session");
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) {
        setError(e);
        return;
      }
    }
    setAdminKey(null);
    setCsrf(null);
    navigate("/", { replace: true });
    onSignOut();
  }

  return (
    <div class="shell">
      <a class="skip" href="#main">
        {t("skip")}
      </a>
      <header class="top">
        <span class="brand">Kotoba</span>
        <button
          type="button"
          class="menu-toggle"
          aria-expanded={menu ? "true" : "false"}
          aria-controls="nav"
          onClick={() => setMenu(!menu)}
        >
          {t("menu")}
        </button>
        <div class="top-right">
          <span class="role" data-role={session.role}>
            {t("role." + session.role)}
          </span>
          <LangSwitch />
          <button type="button" class="signout" onClick={signOut}>
            {t("signout")}
          </button>
        </div>
      </header>
      <ErrorBox error={error} />
      <div class="body">
        <nav id="nav" class={menu ? "open" : ""} aria-label={t("nav.label")}>
          <ul>
            {views.map((v) => (
              <li>
                <Link to={v.path} aria-current={found.nav === v.path || path === v.path ? "page" : undefined}>
                  {t(v.key)}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <main id="main" tabIndex={-1}>
          <View key={path + ":" + lang()} session={session} {...(found.params || {})} />
        </main>
      </div>
    </div>
  );
}
