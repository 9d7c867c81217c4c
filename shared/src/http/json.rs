//! JSON bodies, parsed so that a bad value is a 400 naming its field (`widget.color_primary: …`).

use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use super::ApiError;

/// The largest JSON body any management or chat route accepts.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// A JSON request body of type `T`.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let mime = ct
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            // A missing content type is tolerated (curl -d sends a form type; we say so then).
            .unwrap_or(true);
        if !is_json {
            return Err(ApiError::InvalidInput {
                field: None,
                message: "the body must be application/json".into(),
            });
        }
        let bytes = axum::body::to_bytes(request.into_body(), MAX_JSON_BODY)
            .await
            .map_err(|_| {
                ApiError::TooLarge(format!("the body is larger than {MAX_JSON_BODY} bytes"))
            })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses JSON text, naming the path of the first bad value.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidInput {
            field: None,
            message: "the body is empty; JSON expected".into(),
        });
    }
    // Every body of the API is a JSON object. serde's derived structs also read a JSON array as their
    // fields in order, so `[null, null]` was a valid patch (found by schemathesis): refuse it here.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::InvalidInput {
            field: None,
            message: "the body must be a JSON object".into(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let message = clean_message(e.inner());
        if path == "." || path.is_empty() {
            // Missing fields and syntax errors have no path; serde names a missing field in the text.
            ApiError::InvalidInput {
                field: missing_field(&message),
                message,
            }
        } else {
            ApiError::InvalidInput {
                message: format!("{path}: {message}"),
                field: Some(path),
            }
        }
    })?;
    de.end().map_err(|e| ApiError::InvalidInput {
        field: None,
        message: clean_message(&e),
    })?;
    Ok(value)
}

/// serde's message without the "at line 1 column 9" tail, which means nothing to an API client.
fn clean_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sites::SitePatch;

    #[test]
    fn bad_values_name_their_field() {
        let err = parse::<SitePatch>(br##"{"widget": {"color_primary": "red"}}"##).unwrap_err();
        let ApiError::InvalidInput { field, message } = err else {
            panic!("wrong kind")
        };
        assert_eq!(field.as_deref(), Some("widget.color_primary"));
        assert!(message.contains("#rrggbb"), "{message}");
    }

    /// Found by schemathesis: `PATCH /api/tenant` with `[null, null]` answered 200, because serde reads
    /// an array as a struct's fields in order.
    #[test]
    fn only_objects_are_bodies() {
        for body in [
            &b"[null, null]"[..],
            b"[]",
            b" [\"x\"]",
            b"null",
            b"\"x\"",
            b"1",
            b"true",
        ] {
            let err = parse::<crate::tenants::profile::ProfilePatch>(body).unwrap_err();
            let ApiError::InvalidInput { message, .. } = &err else {
                panic!("wrong kind: {err:?}")
            };
            assert_eq!(message, "the body must be a JSON object", "{body:?}");
            assert!(parse::<SitePatch>(body).is_err(), "{body:?}");
        }
        assert!(parse::<crate::tenants::profile::ProfilePatch>(b" \n{}").is_ok());
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        let err = parse::<crate::sites::NewSite>(br#"{"allowed_domains": []}"#).unwrap_err();
        let ApiError::InvalidInput { field, .. } = err else {
            panic!("wrong kind")
        };
        assert_eq!(field.as_deref(), Some("name"));
        let err = parse::<SitePatch>(br#"{"nmae": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("nmae"), "{err}");
    }

    #[test]
    fn syntax_errors_and_empty_bodies_are_400() {
        assert!(matches!(
            parse::<SitePatch>(b"{"),
            Err(ApiError::InvalidInput { .. })
        ));
        assert!(matches!(
            parse::<SitePatch>(b"  "),
            Err(ApiError::InvalidInput { .. })
        ));
        assert!(matches!(
            parse::<SitePatch>(b"{} {}"),
            Err(ApiError::InvalidInput { .. })
        ));
    }
}
