//! The receptionist's settings (system prompt, greeting, voice, language), versioned like a site's prompt
//! profile: every change is a new version, history is never rewritten, and any version can be made
//! current again.
//!
//! The current settings live at `TENANT#<id>`/`VOICE`; versions at `TENANT#<id>`/`VOICEVER#<n>`. A tenant
//! that never changed anything answers with the defaults (the AiLuna receptionist), version 1.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::VoiceError;
use crate::clock::Clock;
use crate::ids::{TenantId, string_newtype};
use crate::sites::prompt::SystemPrompt;
use crate::store::{Condition, Item, ItemStore, Key, Query, StoreError, Write, keys};

/// The language the receptionist speaks and transcribes (and refusals are said in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    Ja,
    Ko,
    En,
}

impl Language {
    /// The `language` attribute of TwiML `<Say>`.
    pub fn say_tag(self) -> &'static str {
        match self {
            Language::Ja => "ja-JP",
            Language::Ko => "ko-KR",
            Language::En => "en-US",
        }
    }

    /// The ISO-639-1 code the transcription model takes as a hint.
    pub fn code(self) -> &'static str {
        match self {
            Language::Ja => "ja",
            Language::Ko => "ko",
            Language::En => "en",
        }
    }
}

/// The Realtime API's built-in voices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Voice {
    Alloy,
    Ash,
    Ballad,
    Coral,
    Echo,
    Sage,
    Shimmer,
    Verse,
    Marin,
    Cedar,
}

impl Voice {
    pub fn as_str(self) -> &'static str {
        match self {
            Voice::Alloy => "alloy",
            Voice::Ash => "ash",
            Voice::Ballad => "ballad",
            Voice::Coral => "coral",
            Voice::Echo => "echo",
            Voice::Sage => "sage",
            Voice::Shimmer => "shimmer",
            Voice::Verse => "verse",
            Voice::Marin => "marin",
            Voice::Cedar => "cedar",
        }
    }
}

string_newtype!(
    /// What the receptionist says first: 1 to 500 characters, no control characters.
    pub Greeting
);

impl Greeting {
    pub const MAX_CHARS: usize = 500;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        let n = s.chars().count();
        if n == 0 || n > Self::MAX_CHARS {
            return Err(format!("must be 1 to {} characters", Self::MAX_CHARS));
        }
        if s.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(s.to_string()))
    }
}

/// The settings in force (`GET /api/voice`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReceptionistSettings {
    #[serde(deserialize_with = "crate::store::stored::lenient")]
    pub system_prompt: SystemPrompt,
    #[serde(deserialize_with = "crate::store::stored::lenient")]
    pub greeting: Greeting,
    pub voice: Voice,
    pub language: Language,
    pub version: u32,
}

impl ReceptionistSettings {
    /// AiLuna, the receptionist every tenant starts with.
    pub fn initial() -> Self {
        Self {
            system_prompt: SystemPrompt::parse(
                "You are AiLuna, the AI phone receptionist for this business. Be warm and brief: callers \
                 are on the phone. Answer questions about the business, take a name, a number and a \
                 message when someone is asked for, and never invent prices, dates or promises. Reply in \
                 the caller's language.",
            )
            .unwrap_or_else(|_| unreachable!("the default prompt is valid")),
            greeting: Greeting(
                "Hello, this is AiLuna, the AI receptionist. How can I help you today?".into(),
            ),
            voice: Voice::Marin,
            language: Language::En,
            version: 1,
        }
    }

    /// The next version: these settings with a patch applied.
    pub fn next(&self, patch: &ReceptionistPatch) -> Self {
        Self {
            system_prompt: patch
                .system_prompt
                .clone()
                .unwrap_or_else(|| self.system_prompt.clone()),
            greeting: patch
                .greeting
                .clone()
                .unwrap_or_else(|| self.greeting.clone()),
            voice: patch.voice.unwrap_or(self.voice),
            language: patch.language.unwrap_or(self.language),
            version: self.version + 1,
        }
    }
}

/// A partial change (`PATCH /api/voice`); any change makes a new version.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceptionistPatch {
    pub system_prompt: Option<SystemPrompt>,
    pub greeting: Option<Greeting>,
    pub voice: Option<Voice>,
    pub language: Option<Language>,
}

impl ReceptionistPatch {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// One entry of the settings history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReceptionistVersion {
    #[serde(flatten)]
    pub settings: ReceptionistSettings,
    /// `None` for the built-in defaults (version 1 before any change).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub created_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_from: Option<u32>,
}

fn current_key(tenant: &TenantId) -> Key {
    keys::receptionist(tenant)
}

fn version_key(tenant: &TenantId, version: u32) -> Key {
    keys::receptionist_version(tenant, version)
}

async fn read_current(
    store: &dyn ItemStore,
    tenant: &TenantId,
) -> Result<Option<ReceptionistSettings>, StoreError> {
    match store.get(&current_key(tenant)).await? {
        Some(item) => Ok(Some(item.to_record()?)),
        None => Ok(None),
    }
}

/// The settings in force for a tenant (the defaults until the first change).
pub async fn get(
    store: &dyn ItemStore,
    tenant: &TenantId,
) -> Result<ReceptionistSettings, StoreError> {
    Ok(read_current(store, tenant)
        .await?
        .unwrap_or_else(ReceptionistSettings::initial))
}

/// Makes `next(current)` current with optimistic concurrency on the version number, recording the
/// version (and, on the first change, the defaults as version 1 so they can be rolled back to).
async fn change<F>(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    tenant: &TenantId,
    mut next: F,
) -> Result<ReceptionistSettings, VoiceError>
where
    F: FnMut(&ReceptionistSettings) -> (ReceptionistSettings, Option<u32>),
{
    for _ in 0..5 {
        let stored = read_current(store, tenant).await?;
        let current = stored.clone().unwrap_or_else(ReceptionistSettings::initial);
        let (settings, rolled_back_from) = next(&current);
        let now = clock.now();
        let condition = match &stored {
            Some(s) => Condition::AttributeEquals("version".into(), s.version.into()),
            None => Condition::IfAbsent,
        };
        let mut writes = vec![Write::Put(
            Item::from_record(current_key(tenant), &settings)?,
            condition,
        )];
        if stored.is_none() {
            let first = ReceptionistVersion {
                settings: current.clone(),
                created_at: Some(now),
                rolled_back_from: None,
            };
            writes.push(Write::Put(
                Item::from_record(version_key(tenant, current.version), &first)?,
                Condition::IfAbsent,
            ));
        }
        let entry = ReceptionistVersion {
            settings: settings.clone(),
            created_at: Some(now),
            rolled_back_from,
        };
        writes.push(Write::Put(
            Item::from_record(version_key(tenant, settings.version), &entry)?,
            Condition::IfAbsent,
        ));
        match store.transact(writes).await {
            Ok(()) => return Ok(settings),
            // Someone else changed the settings first: retry on their version.
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(VoiceError::Conflict)
}

/// Applies a PATCH as a new version.
pub async fn patch(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    tenant: &TenantId,
    patch: &ReceptionistPatch,
) -> Result<ReceptionistSettings, VoiceError> {
    change(store, clock, tenant, |current| (current.next(patch), None)).await
}

/// The settings history, newest first (the defaults alone until the first change).
pub async fn versions(
    store: &dyn ItemStore,
    tenant: &TenantId,
    cursor: Option<String>,
) -> Result<(Vec<ReceptionistVersion>, Option<String>), StoreError> {
    let page = store
        .query(
            Query::partition(keys::tenant_partition(tenant))
                .prefix(keys::prefix::VOICE_VERSION)
                .descending()
                .after(cursor.clone()),
        )
        .await?;
    let mut versions = crate::store::stored::readable::<ReceptionistVersion>(&page.items);
    if versions.is_empty() && cursor.is_none() {
        versions.push(ReceptionistVersion {
            settings: ReceptionistSettings::initial(),
            created_at: None,
            rolled_back_from: None,
        });
    }
    Ok((versions, page.next))
}

/// Makes an earlier version current again, as a new version.
pub async fn rollback(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    tenant: &TenantId,
    to_version: u32,
) -> Result<ReceptionistSettings, VoiceError> {
    let target = match store.get(&version_key(tenant, to_version)).await? {
        Some(item) => item.to_record::<ReceptionistVersion>()?.settings,
        // Version 1 exists even before it is stored: it is the defaults.
        None if to_version == 1 => ReceptionistSettings::initial(),
        None => return Err(VoiceError::VersionNotFound(to_version)),
    };
    change(store, clock, tenant, |current| {
        (
            ReceptionistSettings {
                version: current.version + 1,
                ..target.clone()
            },
            Some(to_version),
        )
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_versions_read_typed_and_write_back_unchanged() {
        let settings = serde_json::to_value(ReceptionistSettings::initial()).unwrap();
        for created_at in [
            serde_json::json!("2026-05-01T09:00:00.25Z"),
            serde_json::Value::Null,
        ] {
            let mut row = settings.clone();
            row["created_at"] = created_at;
            let version: ReceptionistVersion = serde_json::from_value(row.clone()).unwrap();
            assert_eq!(serde_json::to_value(&version).unwrap(), row);
        }
        let version: ReceptionistVersion = serde_json::from_value(settings).unwrap();
        assert_eq!(version.created_at, None);
    }

    #[test]
    fn patches_make_the_next_version() {
        let v1 = ReceptionistSettings::initial();
        assert!(v1.system_prompt.as_str().contains("AiLuna"));
        let patch: ReceptionistPatch = serde_json::from_str(
            r#"{"greeting": "お電話ありがとうございます。", "language": "ja"}"#,
        )
        .unwrap();
        let v2 = v1.next(&patch);
        assert_eq!(v2.version, 2);
        assert_eq!(v2.language, Language::Ja);
        assert_eq!(v2.voice, v1.voice);
        assert_eq!(v2.greeting.as_str(), "お電話ありがとうございます。");
    }

    #[test]
    fn bad_values_are_refused_by_parsing() {
        assert!(serde_json::from_str::<ReceptionistPatch>(r#"{"voice": "robot"}"#).is_err());
        assert!(serde_json::from_str::<ReceptionistPatch>(r#"{"language": "fr"}"#).is_err());
        assert!(serde_json::from_str::<ReceptionistPatch>(r#"{"greeting": " "}"#).is_err());
        assert!(serde_json::from_str::<ReceptionistPatch>(r#"{"colour": "red"}"#).is_err());
        assert!(Greeting::parse(&"あ".repeat(500)).is_ok());
        assert!(Greeting::parse(&"あ".repeat(501)).is_err());
        assert!(Greeting::parse("hi\u{7}").is_err());
    }
}
