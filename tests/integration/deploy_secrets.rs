//! Secrets read from Secrets Manager (on the moto emulator) at start-up, as a deployed function does:
//! the admin key reaches the sites function's admin route through `<VARIABLE>_SECRET_ARN`, a secret the
//! function does not read is refused, and a missing secret names itself.

use std::collections::HashMap;
use std::sync::Arc;

use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Service};

use kotoba_tests::aws::sdk_config;
use shared::Platform;
use shared::clock::SystemClock;
use shared::config::{Config, Mode};
use shared::ids::RandomIds;
use shared::secrets::{self, SecretsError, SecretsManager};

/// The admin key the `management-create-tenant.json` fixture carries.
const ADMIN_KEY: &str = "events-fixture-admin-key-0001";

async fn create_secret(client: &aws_sdk_secretsmanager::Client, value: &str) -> String {
    let out = client
        .create_secret()
        .name(kotoba_tests::unique_name("kotoba-secret"))
        .secret_string(value)
        .send()
        .await
        .expect("secret created");
    out.arn().expect("an ARN").to_string()
}

#[tokio::test]
async fn the_admin_key_comes_from_secrets_manager_and_nothing_else_does() {
    let sdk = sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let admin_arn = create_secret(&client, ADMIN_KEY).await;
    let model_arn = create_secret(&client, "sk-test-model-key").await;
    let source = SecretsManager(client.clone());
    let dir = tempfile::tempdir().unwrap();

    // The sites function as deployed: its environment names the admin key's secret and nothing else.
    let mut vars: HashMap<String, String> = [
        ("KOTOBA_DATA_DIR", dir.path().to_str().unwrap()),
        ("KOTOBA_ADMIN_KEY_SECRET_ARN", admin_arn.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    secrets::resolve(&mut vars, management::SECRETS, &source)
        .await
        .unwrap();
    assert_eq!(vars["KOTOBA_ADMIN_KEY"], ADMIN_KEY);
    let config = Config::from_vars(&vars, Mode::Deployed).unwrap();
    assert_eq!(config.models.api_key, None);
    let platform = Platform::embedded(config, Arc::new(SystemClock), Arc::new(RandomIds)).unwrap();
    let event = std::fs::read_to_string(format!(
        "{}/../events/management-create-tenant.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let request: LambdaRequest = serde_json::from_str(&event).unwrap();
    let response = lambda_http::Adapter::from(management::app(platform))
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap();
    let response = serde_json::to_value(&response).unwrap();
    assert_eq!(response["statusCode"], 201, "{response}");

    // The model key handed to the sites function is refused before anything starts.
    let mut vars: HashMap<String, String> = [
        ("KOTOBA_ADMIN_KEY_SECRET_ARN", admin_arn.as_str()),
        ("OPENAI_API_KEY_SECRET_ARN", model_arn.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let e = secrets::resolve(&mut vars, management::SECRETS, &source)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            SecretsError::NotRead {
                variable: "OPENAI_API_KEY",
                ..
            }
        ),
        "{e}"
    );
    assert!(!vars.contains_key("KOTOBA_ADMIN_KEY"), "nothing changed");

    // The chat function reads the model key, and only that.
    let mut vars: HashMap<String, String> = [
        ("OPENAI_API_KEY_SECRET_ARN", model_arn.as_str()),
        ("KOTOBA_ADMIN_KEY", "a-plain-admin-key-000001"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    secrets::resolve(&mut vars, chat::SECRETS, &source)
        .await
        .unwrap();
    let config = Config::from_vars(&vars, Mode::Deployed).unwrap();
    assert_eq!(
        config.models.api_key.as_ref().map(|k| k.expose()),
        Some("sk-test-model-key")
    );
    assert_eq!(
        config.admin_key, None,
        "a secret chat does not read is dropped"
    );

    // A secret that does not exist: the error names the variable and the secret.
    let missing = admin_arn.replace("kotoba-secret", "kotoba-missing");
    let mut vars: HashMap<String, String> =
        [("KOTOBA_ADMIN_KEY_SECRET_ARN".to_string(), missing.clone())].into();
    let e = secrets::resolve(&mut vars, usage::SECRETS, &source)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            SecretsError::Fetch {
                variable: "KOTOBA_ADMIN_KEY",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains(&missing), "{e}");
}
