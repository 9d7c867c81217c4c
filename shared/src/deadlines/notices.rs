//! The mails the deadline job sends, in the tenant's language (ja, en, ko): plain text plus an HTML
//! alternative, dates in the tenant's time zone, and `List-Unsubscribe` on reminders.

use time::OffsetDateTime;

use crate::mail::{EmailAddress, Mail};
use crate::tenants::{Language, Tenant};

/// What a mail is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// The trial ends in `days_left` days, at `ends_at`.
    TrialEnding {
        days_left: i64,
        ends_at: OffsetDateTime,
    },
    /// The subscription renews at `renews_at`.
    RenewalSoon { renews_at: OffsetDateTime },
    /// The payment failed `day` days ago; service continues until `grace_ends_at`.
    PaymentFailed {
        day: i64,
        grace_ends_at: OffsetDateTime,
    },
    /// The grace period ended: paid features are stopped until the payment is made.
    Suspended { grace_ended_at: OffsetDateTime },
    /// A training job ran past its deadline and was stopped.
    TrainingStuck { site_name: String, job_id: String },
    /// The credit balance is below the tenant's threshold (the daily digest).
    LowBalance {
        balance: i64,
        threshold: i64,
        /// At the last 14 days' burn; `None` without recent usage.
        days_left: Option<u64>,
    },
    /// An outbound webhook endpoint failed for three days and was disabled.
    WebhookDisabled {
        url: String,
        webhook_id: String,
        reason: String,
    },
    /// An automatic top-up failed; after `MAX_CONSECUTIVE_FAILURES` in a row it is switched off.
    TopUpFailed {
        credits: Option<i64>,
        code: String,
        failures: u32,
        disabled: bool,
    },
}

impl Notice {
    /// Reminders can be unsubscribed from; notices about the service itself cannot.
    pub fn is_reminder(&self) -> bool {
        matches!(
            self,
            Notice::TrialEnding { .. } | Notice::RenewalSoon { .. } | Notice::LowBalance { .. }
        )
    }
}

/// A date as the tenant reads it, in its time zone.
fn date(at: OffsetDateTime, tenant: &Tenant) -> String {
    let local = jiff::Timestamp::from_second(at.unix_timestamp())
        .ok()
        .zip(jiff::tz::TimeZone::get(&tenant.timezone).ok())
        .map(|(ts, tz)| ts.to_zoned(tz).date());
    let (y, m, d) = match local {
        Some(d) => (i32::from(d.year()), d.month() as u8, d.day() as u8),
        None => (at.year(), u8::from(at.month()), at.day()),
    };
    match tenant.language {
        Language::Ja => format!("{y}年{m}月{d}日"),
        Language::Ko => format!("{y}년 {m}월 {d}일"),
        Language::En => {
            const MONTHS: [&str; 12] = [
                "January",
                "February",
                "March",
                "April",
                "May",
                "June",
                "July",
                "August",
                "September",
                "October",
                "November",
                "December",
            ];
            let month = MONTHS[usize::from(m.clamp(1, 12)) - 1];
            format!("{month} {d}, {y}")
        }
    }
}

/// Subject and paragraphs of a notice in the tenant's language.
fn words(notice: &Notice, tenant: &Tenant) -> (String, Vec<String>) {
    let name = tenant.name.as_str();
    match (notice, tenant.language) {
        (Notice::TrialEnding { days_left, ends_at }, Language::Ja) => (
            format!("【Kotoba】無料トライアル終了まであと{days_left}日です"),
            vec![
                format!("{name} 様"),
                format!(
                    "いつもKotobaをご利用いただき、ありがとうございます。無料トライアルは{}に終了します（残り{days_left}日）。",
                    date(*ends_at, tenant)
                ),
                "終了後も引き続きチャットボットや電話受付をご利用いただくには、管理画面の「お支払い」からプランをお選びください。".into(),
            ],
        ),
        (Notice::TrialEnding { days_left, ends_at }, Language::En) => (
            format!(
                "Your Kotoba trial ends in {days_left} day{}",
                if *days_left == 1 { "" } else { "s" }
            ),
            vec![
                format!("Hello {name},"),
                format!(
                    "Your free trial ends on {} ({days_left} day{} left).",
                    date(*ends_at, tenant),
                    if *days_left == 1 { "" } else { "s" }
                ),
                "To keep your chat assistant and phone receptionist running, choose a plan under Billing in the console.".into(),
            ],
        ),
        (Notice::TrialEnding { days_left, ends_at }, Language::Ko) => (
            format!("[Kotoba] 무료 체험 종료까지 {days_left}일 남았습니다"),
            vec![
                format!("{name} 님, 안녕하세요."),
                format!(
                    "무료 체험이 {}에 종료됩니다(남은 기간 {days_left}일).",
                    date(*ends_at, tenant)
                ),
                "챗봇과 전화 응대를 계속 이용하시려면 관리 화면의 [결제]에서 요금제를 선택해 주세요.".into(),
            ],
        ),
        (Notice::RenewalSoon { renews_at }, Language::Ja) => (
            "【Kotoba】ご契約の更新日が近づいています".into(),
            vec![
                format!("{name} 様"),
                format!(
                    "ご契約中の{}プランは{}に自動更新され、登録済みのお支払い方法に請求されます。",
                    tenant.plan.as_str(),
                    date(*renews_at, tenant)
                ),
                "プランの変更や解約は、更新日までに管理画面の「お支払い」から行えます。".into(),
            ],
        ),
        (Notice::RenewalSoon { renews_at }, Language::En) => (
            "Your Kotoba subscription renews in 7 days".into(),
            vec![
                format!("Hello {name},"),
                format!(
                    "Your {} plan renews on {}, and your payment method on file will be charged.",
                    tenant.plan.as_str(),
                    date(*renews_at, tenant)
                ),
                "To change or cancel your plan, go to Billing in the console before that date.".into(),
            ],
        ),
        (Notice::RenewalSoon { renews_at }, Language::Ko) => (
            "[Kotoba] 구독 갱신일이 다가오고 있습니다".into(),
            vec![
                format!("{name} 님, 안녕하세요."),
                format!(
                    "이용 중인 {} 요금제가 {}에 자동 갱신되며, 등록된 결제 수단으로 청구됩니다.",
                    tenant.plan.as_str(),
                    date(*renews_at, tenant)
                ),
                "요금제 변경이나 해지는 갱신일 전까지 관리 화면의 [결제]에서 하실 수 있습니다.".into(),
            ],
        ),
        (Notice::PaymentFailed { grace_ends_at, .. }, Language::Ja) => (
            "【Kotoba】お支払いを確認できませんでした".into(),
            vec![
                format!("{name} 様"),
                "ご登録のお支払い方法で決済ができませんでした。".into(),
                format!(
                    "{}までにお支払い方法をご確認・更新いただけない場合、サービスを一時停止いたします。管理画面の「お支払い」から更新できます。",
                    date(*grace_ends_at, tenant)
                ),
            ],
        ),
        (Notice::PaymentFailed { grace_ends_at, .. }, Language::En) => (
            "Your Kotoba payment failed".into(),
            vec![
                format!("Hello {name},"),
                "We could not charge your payment method.".into(),
                format!(
                    "Please update it under Billing in the console by {}; after that date the service will be paused.",
                    date(*grace_ends_at, tenant)
                ),
            ],
        ),
        (Notice::PaymentFailed { grace_ends_at, .. }, Language::Ko) => (
            "[Kotoba] 결제가 처리되지 않았습니다".into(),
            vec![
                format!("{name} 님, 안녕하세요."),
                "등록된 결제 수단으로 결제를 진행하지 못했습니다.".into(),
                format!(
                    "{}까지 관리 화면의 [결제]에서 결제 수단을 확인하거나 변경해 주세요. 기한이 지나면 서비스가 일시 중지됩니다.",
                    date(*grace_ends_at, tenant)
                ),
            ],
        ),
        (Notice::Suspended { grace_ended_at }, Language::Ja) => (
            "【Kotoba】サービスを一時停止しました".into(),
            vec![
                format!("{name} 様"),
                format!(
                    "お支払いの猶予期間が{}に終了したため、チャットボット・電話受付・学習を一時停止しました。",
                    date(*grace_ended_at, tenant)
                ),
                "管理画面の「お支払い」でお支払い方法を更新いただくと、すぐに再開されます。データはそのまま保持されています。".into(),
            ],
        ),
        (Notice::Suspended { grace_ended_at }, Language::En) => (
            "Your Kotoba service is paused".into(),
            vec![
                format!("Hello {name},"),
                format!(
                    "The grace period for your failed payment ended on {}, so chat, phone answering and training are paused.",
                    date(*grace_ended_at, tenant)
                ),
                "Update your payment method under Billing in the console and service resumes at once. Your data is kept.".into(),
            ],
        ),
        (Notice::Suspended { grace_ended_at }, Language::Ko) => (
            "[Kotoba] 서비스가 일시 중지되었습니다".into(),
            vec![
                format!("{name} 님, 안녕하세요."),
                format!(
                    "결제 유예 기간이 {}에 종료되어 챗봇, 전화 응대, 학습이 일시 중지되었습니다.",
                    date(*grace_ended_at, tenant)
                ),
                "관리 화면의 [결제]에서 결제 수단을 변경하시면 즉시 다시 이용하실 수 있습니다. 데이터는 그대로 보관됩니다.".into(),
            ],
        ),
        (Notice::TrainingStuck { site_name, job_id }, Language::Ja) => (
            format!("【Kotoba】サイト「{site_name}」の学習を中止しました"),
            vec![
                format!("{name} 様"),
                format!(
                    "サイト「{site_name}」の学習ジョブ（{job_id}）が制限時間内に完了しなかったため、中止しました。現在のチャットボットは以前の学習内容のまま動作しています。"
                ),
                "お手数ですが、管理画面から学習をもう一度開始してください。".into(),
            ],
        ),
        (Notice::TrainingStuck { site_name, job_id }, Language::En) => (
            format!("Training of {site_name} was stopped"),
            vec![
                format!("Hello {name},"),
                format!(
                    "The training job {job_id} for {site_name} did not finish in time and was stopped. Your assistant keeps answering from its previous training."
                ),
                "Please start the training again from the console.".into(),
            ],
        ),
        (Notice::TrainingStuck { site_name, job_id }, Language::Ko) => (
            format!("[Kotoba] 사이트 \"{site_name}\"의 학습이 중단되었습니다"),
            vec![
                format!("{name} 님, 안녕하세요."),
                format!(
                    "사이트 \"{site_name}\"의 학습 작업({job_id})이 제한 시간 안에 끝나지 않아 중단되었습니다. 챗봇은 이전 학습 내용으로 계속 응답합니다."
                ),
                "관리 화면에서 학습을 다시 시작해 주세요.".into(),
            ],
        ),
        (
            Notice::WebhookDisabled {
                url,
                webhook_id,
                reason,
            },
            language,
        ) => webhook_disabled_words(name, language, url, webhook_id, reason),
        (
            Notice::LowBalance {
                balance,
                threshold,
                days_left,
            },
            language,
        ) => low_balance_words(name, language, *balance, *threshold, *days_left),
        (
            Notice::TopUpFailed {
                credits,
                code,
                failures,
                disabled,
            },
            language,
        ) => top_up_words(name, language, *credits, code, *failures, *disabled),
    }
}

/// A number of credits with thousands separators (`12,345`), as all three languages write it.
fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// An endpoint the webhook worker gave up on.
fn webhook_disabled_words(
    name: &str,
    language: Language,
    url: &str,
    id: &str,
    reason: &str,
) -> (String, Vec<String>) {
    match language {
        Language::Ja => (
            "【Kotoba】Webhookの送信先を停止しました".into(),
            vec![
                format!("{name} 様"),
                format!(
                    "Webhookの送信先 {url}（{id}）への配信が3日間すべて失敗したため、送信を停止しました。"
                ),
                format!("理由: {reason}"),
                format!(
                    "受信側を修正したうえで、管理画面または API（PATCH /api/webhooks/{id} に {{\"enabled\": true}}）で再度有効にし、届かなかった配信を配信ログから再送してください。"
                ),
            ],
        ),
        Language::En => (
            "Kotoba: a webhook endpoint was disabled".into(),
            vec![
                format!("Hello {name},"),
                format!(
                    "Every delivery to your webhook endpoint {url} ({id}) has failed for three days, so we have stopped sending to it."
                ),
                format!("Reason: {reason}"),
                format!(
                    "Fix the receiver, then re-enable it (in the console, or PATCH /api/webhooks/{id} with {{\"enabled\": true}}) and replay the deliveries you missed from its delivery log."
                ),
            ],
        ),
        Language::Ko => (
            "[Kotoba] 웹훅 엔드포인트가 중지되었습니다".into(),
            vec![
                format!("{name} 님, 안녕하세요."),
                format!(
                    "웹훅 엔드포인트 {url}({id})로의 전송이 3일 동안 모두 실패하여 전송을 중지했습니다."
                ),
                format!("사유: {reason}"),
                format!(
                    "수신 측을 수정한 뒤 관리 화면 또는 API(PATCH /api/webhooks/{id}, {{\"enabled\": true}})로 다시 활성화하고, 전달되지 않은 이벤트를 전송 로그에서 재전송해 주세요."
                ),
            ],
        ),
    }
}

/// The daily low-balance digest.
fn low_balance_words(
    name: &str,
    language: Language,
    balance: i64,
    threshold: i64,
    days_left: Option<u64>,
) -> (String, Vec<String>) {
    match language {
        Language::Ja => (
            "【Kotoba】AIクレジットの残高が少なくなっています".into(),
            vec![
                format!("{name} 様"),
                format!(
                    "AIクレジットの残高が{}クレジットとなり、設定されたしきい値（{}クレジット）を下回っています。",
                    grouped(balance),
                    grouped(threshold)
                ),
                match days_left {
                    Some(d) => {
                        format!("最近14日間のご利用ペースでは、あと約{d}日でなくなる見込みです。")
                    }
                    None => "残高がなくなると、チャットや電話応対などのAI機能が停止します。".into(),
                },
                "管理画面の「クレジット」からパッケージの購入や自動チャージの設定ができます。"
                    .into(),
            ],
        ),
        Language::En => (
            "Your Kotoba AI credits are running low".into(),
            vec![
                format!("Hello {name},"),
                format!(
                    "Your AI credit balance is {} credits, below your threshold of {} credits.",
                    grouped(balance),
                    grouped(threshold)
                ),
                match days_left {
                    Some(d) => {
                        format!("At your usage of the last 14 days, it lasts about {d} more days.")
                    }
                    None => {
                        "When it runs out, chat, phone answering and other AI features stop.".into()
                    }
                },
                "Buy a credit package or set up automatic top-up under Credits in the console."
                    .into(),
            ],
        ),
        Language::Ko => (
            "[Kotoba] AI 크레딧 잔액이 얼마 남지 않았습니다".into(),
            vec![
                format!("{name} 님, 안녕하세요."),
                format!(
                    "AI 크레딧 잔액이 {} 크레딧으로, 설정하신 기준({} 크레딧) 아래로 내려갔습니다.",
                    grouped(balance),
                    grouped(threshold)
                ),
                match days_left {
                    Some(d) => {
                        format!("최근 14일간의 사용량 기준으로 약 {d}일 후 소진될 예정입니다.")
                    }
                    None => "잔액이 소진되면 챗봇, 전화 응대 등 AI 기능이 중지됩니다.".into(),
                },
                "관리 화면의 [크레딧]에서 패키지를 구매하거나 자동 충전을 설정하실 수 있습니다."
                    .into(),
            ],
        ),
    }
}

/// A failed automatic top-up (and the switch-off after too many).
fn top_up_words(
    name: &str,
    language: Language,
    credits: Option<i64>,
    code: &str,
    failures: u32,
    disabled: bool,
) -> (String, Vec<String>) {
    match language {
        Language::Ja => (
            if disabled {
                "【Kotoba】自動チャージを停止しました".into()
            } else {
                "【Kotoba】自動チャージのお支払いができませんでした".into()
            },
            vec![
                format!("{name} 様"),
                match credits {
                    Some(c) => format!(
                        "AIクレジット{}クレジットの自動チャージで、お支払いができませんでした（理由: {code}）。",
                        grouped(c)
                    ),
                    None => format!(
                        "AIクレジットの自動チャージを開始できませんでした（理由: {code}）。"
                    ),
                },
                if disabled {
                    format!(
                        "{failures}回続けて失敗したため、自動チャージを停止しました。管理画面の「クレジット」でお支払い方法をご確認のうえ、再度有効にしてください。"
                    )
                } else {
                    "1時間後に再度お試しします。管理画面の「クレジット」でお支払い方法をご確認ください。".into()
                },
            ],
        ),
        Language::En => (
            if disabled {
                "Kotoba automatic top-up was switched off".into()
            } else {
                "Your Kotoba automatic top-up payment failed".into()
            },
            vec![
                format!("Hello {name},"),
                match credits {
                    Some(c) => format!(
                        "The automatic top-up of {} AI credits could not be paid (reason: {code}).",
                        grouped(c)
                    ),
                    None => format!(
                        "The automatic top-up of your AI credits could not start (reason: {code})."
                    ),
                },
                if disabled {
                    format!(
                        "After {failures} failures in a row we have switched automatic top-up off. Check your payment method under Credits in the console, then switch it on again."
                    )
                } else {
                    "We will try again in an hour. Please check your payment method under Credits in the console.".into()
                },
            ],
        ),
        Language::Ko => (
            if disabled {
                "[Kotoba] 자동 충전이 중지되었습니다".into()
            } else {
                "[Kotoba] 자동 충전 결제에 실패했습니다".into()
            },
            vec![
                format!("{name} 님, 안녕하세요."),
                match credits {
                    Some(c) => format!(
                        "AI 크레딧 {} 크레딧 자동 충전 결제에 실패했습니다(사유: {code}).",
                        grouped(c)
                    ),
                    None => format!("AI 크레딧 자동 충전을 시작하지 못했습니다(사유: {code})."),
                },
                if disabled {
                    format!(
                        "{failures}회 연속 실패하여 자동 충전을 중지했습니다. 관리 화면의 [크레딧]에서 결제 수단을 확인하신 후 다시 켜 주세요."
                    )
                } else {
                    "1시간 후에 다시 시도합니다. 관리 화면의 [크레딧]에서 결제 수단을 확인해 주세요.".into()
                },
            ],
        ),
    }
}

/// The unsubscribe line under a reminder.
fn unsubscribe_line(language: Language) -> &'static str {
    match language {
        Language::Ja => {
            "このリマインダーが不要な場合は、このメールに「配信停止」と返信してください。"
        }
        Language::En => "To stop these reminders, reply to this mail with \"unsubscribe\".",
        Language::Ko => {
            "이 알림을 더 이상 받지 않으시려면 이 메일에 \"수신 거부\"라고 회신해 주세요."
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The notice as a mail from `from` to `to`.
pub fn render(notice: &Notice, tenant: &Tenant, from: &EmailAddress, to: EmailAddress) -> Mail {
    let (subject, mut paragraphs) = words(notice, tenant);
    let mut headers = Vec::new();
    if notice.is_reminder() {
        paragraphs.push(unsubscribe_line(tenant.language).into());
        headers.push((
            "List-Unsubscribe".to_string(),
            format!("<mailto:{from}?subject=unsubscribe%20{}>", tenant.tenant_id),
        ));
    }
    let text = format!("{}\n\n-- \nKotoba\n", paragraphs.join("\n\n"));
    let lang = match tenant.language {
        Language::Ja => "ja",
        Language::En => "en",
        Language::Ko => "ko",
    };
    let body: String = paragraphs
        .iter()
        .map(|p| format!("<p>{}</p>", escape(p)))
        .collect();
    let html = format!(
        "<!DOCTYPE html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{}</title></head><body>{body}<p style=\"color:#888\">Kotoba</p></body></html>",
        escape(&subject)
    );
    Mail {
        from: from.clone(),
        to: vec![to],
        subject,
        text,
        html: Some(html),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn tenant(language: &str) -> Tenant {
        serde_json::from_value(serde_json::json!({
            "tenant_id": "ten_1", "name": "ホテル海風 <b>", "plan": "starter",
            "subscription_status": "trialing", "created_at": "2026-01-01T00:00:00Z",
            "language": language, "timezone": "Asia/Tokyo",
        }))
        .unwrap()
    }

    #[test]
    fn a_japanese_trial_reminder_reads_naturally_in_local_time() {
        let from = EmailAddress::parse("no-reply@kotoba.example").unwrap();
        let to = EmailAddress::parse("keiri@umikaze.example.jp").unwrap();
        // 16:00 UTC is already the next day in Tokyo.
        let notice = Notice::TrialEnding {
            days_left: 3,
            ends_at: datetime!(2026-03-11 16:00 UTC),
        };
        let mail = render(&notice, &tenant("ja"), &from, to);
        assert_eq!(mail.subject, "【Kotoba】無料トライアル終了まであと3日です");
        assert!(
            mail.text.contains("2026年3月12日に終了します"),
            "{}",
            mail.text
        );
        assert!(mail.text.starts_with("ホテル海風 <b> 様"));
        let html = mail.html.unwrap();
        assert!(html.contains("ホテル海風 &lt;b&gt; 様"), "{html}");
        assert!(html.contains("lang=\"ja\""));
        assert_eq!(mail.headers[0].0, "List-Unsubscribe");
        assert!(
            mail.headers[0]
                .1
                .starts_with("<mailto:no-reply@kotoba.example?")
        );
    }

    #[test]
    fn every_notice_exists_in_every_language_and_only_reminders_unsubscribe() {
        let from = EmailAddress::parse("no-reply@kotoba.example").unwrap();
        let at = datetime!(2026-03-11 00:00 UTC);
        let notices = [
            Notice::TrialEnding {
                days_left: 1,
                ends_at: at,
            },
            Notice::RenewalSoon { renews_at: at },
            Notice::PaymentFailed {
                day: 1,
                grace_ends_at: at,
            },
            Notice::Suspended { grace_ended_at: at },
            Notice::TrainingStuck {
                site_name: "Main".into(),
                job_id: "job_1".into(),
            },
            Notice::LowBalance {
                balance: 1_234,
                threshold: 2_000,
                days_left: Some(3),
            },
            Notice::TopUpFailed {
                credits: Some(5_000),
                code: "card_declined".into(),
                failures: 1,
                disabled: false,
            },
            Notice::WebhookDisabled {
                url: "https://hooks.example.jp/kotoba".into(),
                webhook_id: "wh_1".into(),
                reason: "HTTP 500".into(),
            },
            Notice::TopUpFailed {
                credits: Some(5_000),
                code: "card_declined".into(),
                failures: 3,
                disabled: true,
            },
        ];
        for language in ["ja", "en", "ko"] {
            let mut subjects = std::collections::HashSet::new();
            for notice in &notices {
                let to = EmailAddress::parse("a@example.jp").unwrap();
                let mail = render(notice, &tenant(language), &from, to);
                assert!(subjects.insert(mail.subject.clone()), "{}", mail.subject);
                assert_eq!(mail.headers.is_empty(), !notice.is_reminder());
                crate::mail::check_mail(&mail).unwrap();
            }
        }
        let en = render(
            &notices[0],
            &tenant("en"),
            &from,
            EmailAddress::parse("a@example.jp").unwrap(),
        );
        assert_eq!(en.subject, "Your Kotoba trial ends in 1 day");
        assert!(en.text.contains("March 11, 2026"), "{}", en.text);
    }
}
