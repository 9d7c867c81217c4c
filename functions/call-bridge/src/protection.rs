//! ECS task scale-in protection while calls are live.
//!
//! A scale-in or a deployment stops tasks; a protected task is skipped until its protection is cleared
//! or expires. The bridge sets protection through the ECS agent (`PUT $ECS_AGENT_URI/task-protection/v1/state`,
//! which ECS authorizes with the task role's `ecs:UpdateTaskProtection`) when its first call starts,
//! renews it while calls go on, and clears it when the last call ends. The expiry outlasts the longest
//! call, so a task that dies without clearing it is released by ECS in time.

use std::time::Duration;

use serde_json::json;
use url::Url;

use crate::tracker::CallTracker;

/// The agent's path for the task's protection state.
pub const PROTECTION_PATH: &str = "/task-protection/v1/state";
/// How often protection is renewed while calls are live (well within its expiry).
pub const RENEW_EVERY: Duration = Duration::from_secs(5 * 60);
/// How long a failed request waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// The agent client: where it is, and how long each protection lasts.
#[derive(Debug, Clone)]
pub struct ScaleInProtection {
    url: Url,
    expires_in_minutes: u64,
    client: reqwest::Client,
}

impl ScaleInProtection {
    /// `agent` is `ECS_AGENT_URI`; protection lasts the longest call plus ten minutes.
    pub fn new(agent: &Url, max_call: Duration) -> anyhow::Result<Self> {
        let mut url = agent.clone();
        let path = format!("{}{PROTECTION_PATH}", agent.path().trim_end_matches('/'));
        url.set_path(&path);
        Ok(Self {
            url,
            expires_in_minutes: max_call.as_secs().div_ceil(60) + 10,
            client: shared::http::sockets::client_builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    pub fn expires_in_minutes(&self) -> u64 {
        self.expires_in_minutes
    }

    /// Sets (`true`) or clears protection.
    pub async fn set(&self, protected: bool) -> anyhow::Result<()> {
        let body = if protected {
            json!({"ProtectionEnabled": true, "ExpiresInMinutes": self.expires_in_minutes})
        } else {
            json!({"ProtectionEnabled": false})
        };
        let response = self.client.put(self.url.clone()).json(&body).send().await?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        // The agent answers 200 with `{"protection": …}` or `{"failure": …}` / `{"error": …}`.
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if !status.is_success() || parsed.get("failure").is_some() || parsed.get("error").is_some()
        {
            anyhow::bail!("the ECS agent answered {status}: {text}");
        }
        Ok(())
    }

    /// Keeps the task protected exactly while `calls` has calls in progress, until the process ends.
    pub async fn follow(self, calls: CallTracker) {
        let mut protected = false;
        loop {
            let changed = calls.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wanted = calls.active() > 0;
            let outcome = if wanted != protected {
                Some(self.set(wanted).await)
            } else {
                None
            };
            match outcome {
                Some(Ok(())) => {
                    protected = wanted;
                    tracing::info!(
                        protected,
                        calls = calls.active(),
                        expires_in_minutes = self.expires_in_minutes,
                        "task scale-in protection"
                    );
                }
                Some(Err(e)) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        wanted,
                        "setting task scale-in protection failed; retrying"
                    );
                    tokio::time::sleep(RETRY_AFTER).await;
                    continue;
                }
                None => {}
            }
            let renew = async {
                if protected {
                    tokio::time::sleep(RENEW_EVERY).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = &mut changed => {}
                () = renew => {
                    if let Err(e) = self.set(true).await {
                        tracing::warn!(error = format!("{e:#}"), "renewing task scale-in protection failed");
                    }
                }
            }
        }
    }
}
