//! How a site's chat widget looks: validated here so the embed script can trust every value.

use serde::{Deserialize, Serialize};

use crate::ids::string_newtype;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Theme {
    Light,
    Dark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Position {
    BottomRight,
    BottomLeft,
}

string_newtype!(
    /// A colour as `#rrggbb` (stored lowercase).
    pub HexColor
);

impl HexColor {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        let ok =
            s.len() == 7 && s.starts_with('#') && s[1..].bytes().all(|b| b.is_ascii_hexdigit());
        if ok {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(format!("{raw:?} is not a colour of the form #rrggbb"))
        }
    }
}

/// Corner radius in CSS pixels, 0 to 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "i64", into = "i64")]
pub struct Radius(u8);

impl TryFrom<i64> for Radius {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        if (0..=32).contains(&n) {
            Ok(Self(n as u8))
        } else {
            Err(format!("{n} is not a radius from 0 to 32"))
        }
    }
}

impl From<Radius> for i64 {
    fn from(r: Radius) -> i64 {
        r.0 as i64
    }
}

string_newtype!(
    /// A CSS font-family list of plain names (`"Noto Sans JP", sans-serif`): letters, digits, spaces,
    /// hyphens, commas and quotes only, so it can never close the declaration it sits in.
    pub FontFamily
);

impl FontFamily {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        let ok = !s.is_empty()
            && s.len() <= 120
            && s.chars()
                .all(|c| c.is_alphanumeric() || " -,'\"_".contains(c));
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(format!("{raw:?} is not a font-family list"))
        }
    }
}

string_newtype!(
    /// The greeting shown when the panel opens: up to 500 characters of plain text.
    pub WelcomeMessage
);

impl WelcomeMessage {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        if s.chars().count() > 500 {
            return Err("must be at most 500 characters".into());
        }
        if s.chars().any(|c| c.is_control() && c != '\n') {
            return Err("must not contain control characters".into());
        }
        Ok(Self(s.to_string()))
    }
}

string_newtype!(
    /// An https URL of an image (the bubble icon): never `javascript:`, `data:` or plain http.
    pub HttpsUrl
);

impl HttpsUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = url::Url::parse(raw.trim()).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
        if url.scheme() != "https"
            || url.host_str().is_none()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(format!(
                "{raw:?} must be an https URL with a host and no credentials"
            ));
        }
        if url.as_str().len() > 2048 {
            return Err("must be at most 2048 characters".into());
        }
        Ok(Self(url.to_string()))
    }
}

/// The widget's look, as stored and shown (`widget` in the site contract). Read back leniently
/// (`store::stored`): changes arrive as a validated [`WidgetPatch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WidgetConfig {
    pub theme: Theme,
    #[serde(deserialize_with = "crate::store::stored::lenient")]
    pub color_primary: HexColor,
    pub position: Position,
    pub radius: Radius,
    #[serde(deserialize_with = "crate::store::stored::lenient")]
    pub font: FontFamily,
    #[serde(deserialize_with = "crate::store::stored::lenient")]
    pub welcome_message: WelcomeMessage,
    #[serde(default, deserialize_with = "crate::store::stored::lenient_option")]
    pub bubble_icon_url: Option<HttpsUrl>,
}

impl Default for WidgetConfig {
    fn default() -> Self {
        Self {
            theme: Theme::Light,
            color_primary: HexColor("#2563eb".into()),
            position: Position::BottomRight,
            radius: Radius(12),
            font: FontFamily("system-ui, sans-serif".into()),
            welcome_message: WelcomeMessage("Hi! Ask me anything about this site.".into()),
            bubble_icon_url: None,
        }
    }
}

/// A partial change to the widget: absent fields stay as they are; `bubble_icon_url: null` clears the icon.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WidgetPatch {
    pub theme: Option<Theme>,
    pub color_primary: Option<HexColor>,
    pub position: Option<Position>,
    pub radius: Option<Radius>,
    pub font: Option<FontFamily>,
    pub welcome_message: Option<WelcomeMessage>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub bubble_icon_url: Option<Option<HttpsUrl>>,
}

/// Tells a field set to `null` (`Some(None)`) apart from a field left out (`None`).
fn present_or_null<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl WidgetConfig {
    /// The config with a patch merged in.
    pub fn merged(&self, patch: WidgetPatch) -> WidgetConfig {
        WidgetConfig {
            theme: patch.theme.unwrap_or(self.theme),
            color_primary: patch
                .color_primary
                .unwrap_or_else(|| self.color_primary.clone()),
            position: patch.position.unwrap_or(self.position),
            radius: patch.radius.unwrap_or(self.radius),
            font: patch.font.unwrap_or_else(|| self.font.clone()),
            welcome_message: patch
                .welcome_message
                .unwrap_or_else(|| self.welcome_message.clone()),
            bubble_icon_url: match patch.bubble_icon_url {
                None => self.bubble_icon_url.clone(),
                Some(value) => value,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_validated() {
        assert_eq!(String::from(HexColor::parse("#FFAA00").unwrap()), "#ffaa00");
        for bad in ["ffaa00", "#ffaa0", "#ggaa00", "red", "#ffaa00;x"] {
            assert!(HexColor::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Radius::try_from(33).is_err()
                && Radius::try_from(-1).is_err()
                && Radius::try_from(0).is_ok()
        );
        assert!(FontFamily::parse("\"Noto Sans JP\", sans-serif").is_ok());
        for bad in ["x;}body{display:none", "a</style>", ""] {
            assert!(FontFamily::parse(bad).is_err(), "{bad}");
        }
        assert!(HttpsUrl::parse("https://cdn.example.com/icon.png").is_ok());
        for bad in [
            "http://x.com/a.png",
            "javascript:alert(1)",
            "data:image/png;base64,AA",
            "https://u:p@x.com/",
        ] {
            assert!(HttpsUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patches_merge_and_null_clears_the_icon() {
        let base = WidgetConfig {
            bubble_icon_url: Some(HttpsUrl::parse("https://x.com/i.png").unwrap()),
            ..WidgetConfig::default()
        };
        let patch: WidgetPatch =
            serde_json::from_str(r##"{"theme":"dark","color_primary":"#112233"}"##).unwrap();
        let merged = base.merged(patch);
        assert_eq!(merged.theme, Theme::Dark);
        assert_eq!(merged.position, Position::BottomRight);
        assert!(
            merged.bubble_icon_url.is_some(),
            "an absent field keeps its value"
        );
        let cleared = merged.merged(serde_json::from_str(r#"{"bubble_icon_url":null}"#).unwrap());
        assert_eq!(cleared.bubble_icon_url, None);
        assert!(
            serde_json::from_str::<WidgetPatch>(r##"{"colour":"#fff"}"##).is_err(),
            "unknown fields are refused"
        );
    }
}
