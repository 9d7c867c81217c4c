// Dates, numbers and money formatted for the console's language with Intl (yen has no decimals).
import { lang } from "./i18n.js";

const tags = { en: "en-US", ja: "ja-JP", ko: "ko-KR" };
export const locale = () => tags[lang()] || "en-US";

export function fmtNumber(n) {
  return new Intl.NumberFormat(locale()).format(n ?? 0);
}

/** A money amount in a currency's main unit (JPY: yen, no decimals; USD: dollars). */
export function fmtMoney(amount, currency) {
  const code = String(currency || "USD").toUpperCase();
  // Sub-dollar costs (a chat costs fractions of a cent) keep three significant digits.
  const small = code === "USD" && Math.abs(amount) > 0 && Math.abs(amount) < 1;
  return new Intl.NumberFormat(locale(), {
    style: "currency",
    currency: code,
    ...(small ? { maximumSignificantDigits: 3 } : {}),
  }).format(amount ?? 0);
}

export const fmtUsd = (amount) => fmtMoney(amount, "USD");

/** An amount in the currency's smallest unit, as Stripe and the package API count it (yen; US cents). */
export const fmtMinor = (amount, currency) =>
  fmtMoney(String(currency).toUpperCase() === "USD" ? amount / 100 : amount, currency);

export function fmtDate(value) {
  if (!value) return "—";
  const d = new Date(value.length === 10 ? value + "T00:00:00Z" : value);
  return new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeZone: value.length === 10 ? "UTC" : undefined }).format(d);
}

export function fmtDateTime(value) {
  if (!value) return "—";
  return new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeStyle: "short" }).format(new Date(value));
}

export function fmtMonth(month) {
  const [y, m] = month.split("-").map(Number);
  return new Intl.DateTimeFormat(locale(), { year: "numeric", month: "long", timeZone: "UTC" }).format(
    new Date(Date.UTC(y, m - 1, 1)),
  );
}

export function fmtDuration(seconds) {
  const m = Math.floor(seconds / 60);
  const s = seconds % 60;
  return `${m}:${String(s).padStart(2, "0")}`;
}

/** The current month as `YYYY-MM` (UTC, as the API counts). */
export function thisMonth() {
  return new Date().toISOString().slice(0, 7);
}
