//! IAM, proven by enforcement: every function's calls on the AWS adapters are signed as that function
//! and held to its role in template.yaml (the call bridge: its task role in infra/fargate.yaml) by the
//! front in `kotoba_tests::iam` (why a front and not moto's own IAM: that module's documentation).
//! Every test on the AWS adapters runs this way; a refused call fails it. This module adds what no
//! feature test covers: secrets read as each function, and a tour of every function that lists the
//! grants no call used.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::json;

use kotoba_tests::iam::policy::Decision;
use kotoba_tests::iam::{self, Emulated, IamFront, SecretArns};
use kotoba_tests::site::{Page, TestSite};
use kotoba_tests::{Backend, TestApp};
use shared::secrets::{self, SecretsManager};

/// The secrets each function's code reads, by logical id (the template gives each its ARNs).
fn functions() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("ManagementFunction", management::SECRETS),
        ("UsageFunction", usage::SECRETS),
        ("CreditsFunction", credits::SECRETS),
        ("TrainFunction", train::SECRETS),
        ("ChatFunction", chat::SECRETS),
        ("ChatStreamFunction", chat::SECRETS),
        ("EmbedScriptFunction", embed_script::SECRETS),
        ("BillingFunction", billing::SECRETS),
        ("WebhookFunction", webhook::SECRETS),
        ("TrainWorkerFunction", train_worker::SECRETS),
        ("WebhookWorkerFunction", webhook_worker::SECRETS),
        ("DeadlineCronFunction", deadline_cron::SECRETS),
        ("ConsoleFunction", console::SECRETS),
    ]
}

/// `<VARIABLE>_SECRET_ARN` → the secret's ARN, as template.yaml hands them out.
fn arn_of(arns: &SecretArns, variable: &str) -> String {
    match variable {
        "KOTOBA_ADMIN_KEY" => arns.admin_key.clone(),
        "KOTOBA_WEBHOOK_KEY" => arns.webhook_key.clone(),
        "OPENAI_API_KEY" => arns.openai.clone(),
        "STRIPE_SECRET_KEY" => arns.stripe_key.clone(),
        "STRIPE_WEBHOOK_SECRET" => arns.stripe_webhook.clone(),
        "TWILIO_AUTH_TOKEN" => arns.twilio.clone(),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn each_function_reads_its_own_secrets_and_no_others() {
    let sdk = kotoba_tests::aws::sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let mut created = BTreeMap::new();
    for variable in shared::secrets::SECRET_VARIABLES {
        let out = client
            .create_secret()
            .name(kotoba_tests::unique_name(&variable.to_lowercase()))
            .secret_string(format!(
                "{}-value-0123456789abcdef",
                variable.to_lowercase()
            ))
            .send()
            .await
            .expect("secret created");
        created.insert(variable, out.arn().unwrap().to_string());
    }
    let arns = SecretArns {
        admin_key: created["KOTOBA_ADMIN_KEY"].clone(),
        webhook_key: created["KOTOBA_WEBHOOK_KEY"].clone(),
        openai: created["OPENAI_API_KEY"].clone(),
        stripe_key: created["STRIPE_SECRET_KEY"].clone(),
        stripe_webhook: created["STRIPE_WEBHOOK_SECRET"].clone(),
        twilio: created["TWILIO_AUTH_TOKEN"].clone(),
    };
    let front = IamFront::for_emulated(&Emulated {
        table: "kotoba-secrets-test".into(),
        bucket: "kotoba-secrets-test".into(),
        train_queue_url: "http://127.0.0.1/123456789012/train".into(),
        train_dlq_url: "http://127.0.0.1/123456789012/train-dlq".into(),
        webhook_queue_url: "http://127.0.0.1/123456789012/hooks".into(),
        webhook_dlq_url: "http://127.0.0.1/123456789012/hooks-dlq".into(),
        deadline_function: "kotoba-secrets-test-deadline".into(),
        secrets: arns.clone(),
    })
    .await;
    for (function, reads) in functions() {
        let source = SecretsManager(aws_sdk_secretsmanager::Client::new(
            &front.sdk_config(&sdk, function),
        ));
        // As deployed: the function's environment names exactly the secrets it reads.
        let mut vars = reads
            .iter()
            .map(|v| (secrets::arn_variable(v), arn_of(&arns, v)))
            .collect();
        secrets::resolve(&mut vars, reads, &source)
            .await
            .unwrap_or_else(|e| panic!("{function}: {e}"));
        for variable in reads {
            assert!(
                vars[*variable].ends_with("-value-0123456789abcdef"),
                "{function}"
            );
        }
        // Any other secret is refused by its role.
        for other in shared::secrets::SECRET_VARIABLES {
            if reads.contains(&other) {
                continue;
            }
            let refused = source
                .0
                .get_secret_value()
                .secret_id(&created[other])
                .send()
                .await;
            assert!(refused.is_err(), "{function} read {other}");
        }
    }
    let refused = front.denials();
    let expected: usize = functions()
        .iter()
        .map(|(_, reads)| shared::secrets::SECRET_VARIABLES.len() - reads.len())
        .sum();
    assert_eq!(refused.len(), expected, "{refused:#?}");
    // The bridge's two secrets are injected by ECS with the execution role: its task role reads none.
    let task = front.policy(iam::CALL_BRIDGE_TASK).unwrap();
    for arn in created.values() {
        assert_eq!(
            task.decide(&iam::policy::Access::new(
                "secretsmanager:GetSecretValue",
                arn
            )),
            Decision::ImplicitDeny
        );
    }
}

/// Grants a tour cannot use, and why each stays.
const KEPT: &[(&str, &str, &str)] = &[
    (
        "CallBridgeTask",
        "ecs:",
        "scale-in protection: the ECS agent calls UpdateTaskProtection with the task role (tested against a local agent in call_bridge.rs)",
    ),
    (
        "DeadlineCronFunction",
        "FailedRuns",
        "Lambda itself sends failed asynchronous runs to the dead-letter queue with the function's role",
    ),
    (
        "",
        "secretsmanager:GetSecretValue",
        "read once at start-up (each_function_reads_its_own_secrets_and_no_others)",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn a_tour_of_every_function_lists_the_grants_no_call_used() {
    let site = TestSite::start().await;
    site.set(
        "/",
        Page::html("<html><head><title>Hotel</title></head><body><main><h1>Hours</h1><p>Check-in is from three in the afternoon and check-out is until eleven in the morning.</p></main></body></html>"),
    );
    let mut app = TestApp::spawn_with(Backend::Aws, &[]).await;
    let (tenant, key) = app.create_tenant("pro").await;
    app.set_subscription(&tenant, "active").await;
    let site_id = app.create_site(&key, &["127.0.0.1"]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = app.train(&key, &site_id, &site.url("/"), false).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let r = app
        .post(
            "/api/chat",
            &key,
            json!({"site_id": site_id, "message": "When is check-in?"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    for path in [
        "/api/usage",
        "/api/credits/balance",
        "/api/credits/transactions",
        "/api/billing",
        "/api/errors",
        "/api/audit",
        "/api/webhooks",
        &format!("/api/sites/{site_id}"),
    ] {
        let r = app.get(path, &key).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {:?}", r.body);
    }
    let script = app
        .client
        .get(app.url(&format!("/api/embed/script?site_id={site_id}")))
        .send()
        .await
        .unwrap();
    assert!(script.status().is_success() || script.status() == StatusCode::FORBIDDEN);
    // A refused request lands in the tenant's error log, written by the function that refused it.
    let r = app.get("/api/usage?month=nope", &key).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app
        .post("/api/admin/cron/run", &app.admin_key, json!({}))
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    app.stop().await;

    let iam = app.iam.clone().unwrap();
    assert!(iam.denials().is_empty(), "{:#?}", iam.denials());
    let unused = iam.unused_grants();
    let mut report = String::new();
    for (principal, grants) in &unused {
        let open: Vec<&String> = grants
            .iter()
            .filter(|g| {
                !KEPT
                    .iter()
                    .any(|(who, what, _)| (who.is_empty() || who == principal) && g.contains(what))
            })
            .collect();
        if !open.is_empty() {
            report.push_str(&format!("{principal}:\n"));
            for g in open {
                report.push_str(&format!("  {g}\n"));
            }
        }
    }
    // The list, for whoever changes a role: grants this tour did not exercise (other tests may).
    eprintln!("grants the tour did not use:\n{report}");
}
