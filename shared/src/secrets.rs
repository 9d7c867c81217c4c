//! Secrets of a deployed function, read once at start-up from AWS Secrets Manager.
//!
//! A secret-bearing variable (`KOTOBA_ADMIN_KEY`, `OPENAI_API_KEY` …) is never in a deployed function's
//! plain environment. The template gives the function `<VARIABLE>_SECRET_ARN` instead, and grants it
//! `secretsmanager:GetSecretValue` on that secret only; at start-up [`deployed_config`] fetches the value
//! and hands it to [`Config`] as if it were the variable. Each function names the secrets its code reads
//! (its `SECRETS` constant); a secret outside that list is refused at start-up and dropped from the
//! configuration, so a template that hands a function more than it needs fails loudly, and a test over
//! template.yaml (tests/integration/deploy_template.rs) keeps the two in step.

use std::collections::HashMap;

use futures::future::BoxFuture;

use crate::config::{Config, ConfigError, Mode};

/// Every variable that carries a secret.
pub const SECRET_VARIABLES: [&str; 6] = [
    "KOTOBA_ADMIN_KEY",
    "KOTOBA_WEBHOOK_KEY",
    "OPENAI_API_KEY",
    "TWILIO_AUTH_TOKEN",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
];

/// `<VARIABLE>_SECRET_ARN` names the Secrets Manager secret holding `<VARIABLE>` (a plain string).
pub const ARN_SUFFIX: &str = "_SECRET_ARN";

/// The variable that names `variable`'s secret.
pub fn arn_variable(variable: &str) -> String {
    format!("{variable}{ARN_SUFFIX}")
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The environment offers a secret the function's code never reads.
    #[error(
        "{arn_variable} is set, but this function does not read {variable}: remove it (and its grant) from the template"
    )]
    NotRead {
        variable: &'static str,
        arn_variable: String,
    },
    /// Both the plain variable and its secret are given: which one wins would be a guess.
    #[error("{variable} is set both directly and through {variable}_SECRET_ARN; set one")]
    Ambiguous { variable: &'static str },
    #[error("reading {variable} from secret {secret_id}: {message}")]
    Fetch {
        variable: &'static str,
        secret_id: String,
        message: String,
    },
    #[error("secret {secret_id} (for {variable}) has no string value")]
    NotAString {
        variable: &'static str,
        secret_id: String,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Reads one secret's string value (boxed future: the trait stays object-safe).
pub trait SecretSource: Send + Sync {
    fn secret_string<'a>(
        &'a self,
        secret_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>>;
}

/// Secrets Manager through the SDK.
pub struct SecretsManager(pub aws_sdk_secretsmanager::Client);

impl SecretSource for SecretsManager {
    fn secret_string<'a>(
        &'a self,
        secret_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            let out = self
                .0
                .get_secret_value()
                .secret_id(secret_id)
                .send()
                .await
                .map_err(|e| aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())?;
            Ok(out.secret_string().map(str::to_string))
        })
    }
}

fn is_set(vars: &HashMap<String, String>, name: &str) -> bool {
    vars.get(name).is_some_and(|v| !v.trim().is_empty())
}

/// Whether the environment names any secret (only then is an SDK client worth building).
pub fn names_secrets(vars: &HashMap<String, String>) -> bool {
    SECRET_VARIABLES
        .iter()
        .any(|v| is_set(vars, &arn_variable(v)))
}

/// Replaces each `<VARIABLE>_SECRET_ARN` the function `reads` by `<VARIABLE>` with the secret's value,
/// and removes every secret the function does not read from `vars`. Nothing is changed on error.
pub async fn resolve(
    vars: &mut HashMap<String, String>,
    reads: &[&str],
    source: &dyn SecretSource,
) -> Result<(), SecretsError> {
    let mut fetched = Vec::new();
    for variable in SECRET_VARIABLES {
        let arn_name = arn_variable(variable);
        let Some(secret_id) = vars.get(&arn_name).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        if !reads.contains(&variable) {
            return Err(SecretsError::NotRead {
                variable,
                arn_variable: arn_name,
            });
        }
        if is_set(vars, variable) {
            return Err(SecretsError::Ambiguous { variable });
        }
        let secret_id = secret_id.trim().to_string();
        let value = source
            .secret_string(&secret_id)
            .await
            .map_err(|message| SecretsError::Fetch {
                variable,
                secret_id: secret_id.clone(),
                message,
            })?
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| SecretsError::NotAString {
                variable,
                secret_id: secret_id.clone(),
            })?;
        fetched.push((variable, value));
    }
    for variable in SECRET_VARIABLES {
        if !reads.contains(&variable) {
            vars.remove(variable);
        }
        vars.remove(&arn_variable(variable));
    }
    for (variable, value) in fetched {
        vars.insert(variable.to_string(), value.trim().to_string());
    }
    Ok(())
}

/// A deployed function's configuration: the process environment with its secrets fetched from Secrets
/// Manager (once, here), plus the SDK configuration it loaded, for the platform to reuse.
pub async fn deployed_config(
    reads: &[&str],
) -> Result<(Config, Option<aws_config::SdkConfig>), SecretsError> {
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    let sdk = if names_secrets(&vars) {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let source = SecretsManager(aws_sdk_secretsmanager::Client::new(&sdk));
        resolve(&mut vars, reads, &source).await?;
        Some(sdk)
    } else {
        resolve(&mut vars, reads, &NoSecrets).await?;
        None
    };
    Ok((Config::from_vars(&vars, Mode::Deployed)?, sdk))
}

/// For an environment that names no secret: never asked.
pub(crate) struct NoSecrets;

impl SecretSource for NoSecrets {
    fn secret_string<'a>(
        &'a self,
        secret_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move { Err(format!("no secret source for {secret_id}")) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Secrets by id, recording every read.
    #[derive(Default)]
    struct Fake {
        values: HashMap<String, String>,
        reads: Mutex<Vec<String>>,
    }

    impl SecretSource for Fake {
        fn secret_string<'a>(
            &'a self,
            secret_id: &'a str,
        ) -> BoxFuture<'a, Result<Option<String>, String>> {
            self.reads.lock().unwrap().push(secret_id.to_string());
            let found = match self.values.get(secret_id) {
                Some(v) => Ok(Some(v.clone())),
                None => Err(format!("ResourceNotFoundException: {secret_id}")),
            };
            Box::pin(async move { found })
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn a_read_secret_replaces_its_arn_variable() {
        let fake = Fake {
            values: [(
                "arn:admin".to_string(),
                "admin-key-from-secrets-0001\n".to_string(),
            )]
            .into(),
            ..Fake::default()
        };
        let mut v = vars(&[
            ("KOTOBA_ADMIN_KEY_SECRET_ARN", "arn:admin"),
            ("KOTOBA_TABLE", "t"),
        ]);
        resolve(&mut v, &["KOTOBA_ADMIN_KEY"], &fake).await.unwrap();
        assert_eq!(v["KOTOBA_ADMIN_KEY"], "admin-key-from-secrets-0001");
        assert!(!v.contains_key("KOTOBA_ADMIN_KEY_SECRET_ARN"));
        assert_eq!(v["KOTOBA_TABLE"], "t", "other variables are untouched");
        assert_eq!(*fake.reads.lock().unwrap(), vec!["arn:admin"]);
    }

    #[tokio::test]
    async fn a_secret_the_function_does_not_read_is_refused_and_never_fetched() {
        let fake = Fake::default();
        let mut v = vars(&[("OPENAI_API_KEY_SECRET_ARN", "arn:openai")]);
        let before = v.clone();
        let e = resolve(&mut v, &["KOTOBA_ADMIN_KEY"], &fake)
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
        assert!(e.to_string().contains("OPENAI_API_KEY_SECRET_ARN"));
        assert!(fake.reads.lock().unwrap().is_empty());
        assert_eq!(v, before, "nothing changed on error");
    }

    #[tokio::test]
    async fn plain_secrets_a_function_does_not_read_are_dropped() {
        let mut v = vars(&[
            ("KOTOBA_ADMIN_KEY", "admin-key-plain-000001"),
            ("OPENAI_API_KEY", "sk-local"),
        ]);
        resolve(&mut v, &["OPENAI_API_KEY"], &NoSecrets)
            .await
            .unwrap();
        assert!(!v.contains_key("KOTOBA_ADMIN_KEY"));
        assert_eq!(v["OPENAI_API_KEY"], "sk-local");
        let config = Config::from_vars(&v, Mode::Deployed).unwrap();
        assert_eq!(config.admin_key, None);
    }

    #[tokio::test]
    async fn failures_name_the_variable_and_the_secret() {
        let fake = Fake {
            values: [("arn:empty".to_string(), "  ".to_string())].into(),
            ..Fake::default()
        };
        let mut v = vars(&[("OPENAI_API_KEY_SECRET_ARN", "arn:missing")]);
        let e = resolve(&mut v, &["OPENAI_API_KEY"], &fake)
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            SecretsError::Fetch {
                variable: "OPENAI_API_KEY",
                ..
            }
        ));
        assert!(e.to_string().contains("arn:missing"), "{e}");
        let mut v = vars(&[("OPENAI_API_KEY_SECRET_ARN", "arn:empty")]);
        let e = resolve(&mut v, &["OPENAI_API_KEY"], &fake)
            .await
            .unwrap_err();
        assert!(matches!(e, SecretsError::NotAString { .. }), "{e}");
        let mut v = vars(&[
            ("OPENAI_API_KEY_SECRET_ARN", "arn:empty"),
            ("OPENAI_API_KEY", "sk-plain"),
        ]);
        let e = resolve(&mut v, &["OPENAI_API_KEY"], &fake)
            .await
            .unwrap_err();
        assert!(matches!(e, SecretsError::Ambiguous { .. }), "{e}");
    }
}
