//! TwiML answers for the voice webhook: connect the call to our media stream, or say why not and hang up.
//! Every attribute and text value is XML-escaped.

use super::receptionist::Language;

/// `<Connect><Stream url=…>` with `<Parameter>` children (Twilio forbids query strings on the stream URL,
/// so everything the stream needs travels as parameters).
pub fn connect_stream(stream_url: &str, parameters: &[(&str, &str)]) -> String {
    let mut xml = String::with_capacity(512);
    xml.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url=""#);
    xml.push_str(&escape(stream_url));
    xml.push_str(r#"">"#);
    for (name, value) in parameters {
        xml.push_str(r#"<Parameter name=""#);
        xml.push_str(&escape(name));
        xml.push_str(r#"" value=""#);
        xml.push_str(&escape(value));
        xml.push_str(r#""/>"#);
    }
    xml.push_str("</Stream></Connect></Response>");
    xml
}

/// `<Say language=…>message</Say><Hangup/>`.
pub fn say_and_hangup(message: &str, language: Language) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say language="{}">{}</Say><Hangup/></Response>"#,
        language.say_tag(),
        escape(message)
    )
}

/// What a refused caller hears. It never says why (billing is the tenant's business, not the caller's).
pub fn unavailable_message(language: Language) -> &'static str {
    match language {
        Language::Ja => {
            "申し訳ございません。ただいまこの番号ではお電話をお受けできません。後ほどおかけ直しください。"
        }
        Language::Ko => {
            "죄송합니다. 지금은 이 번호로 전화를 받을 수 없습니다. 나중에 다시 걸어 주세요."
        }
        Language::En => "Sorry, this number cannot take calls right now. Please try again later.",
    }
}

/// Escapes the five XML special characters, and drops characters XML 1.0 cannot carry at all.
pub fn escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 8);
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_carry_escaped_parameters() {
        let xml = connect_stream(
            "wss://bridge.example.com/twilio-media",
            &[("token", "a&b<c>\"d'"), ("call_sid", "CA1")],
        );
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://bridge.example.com/twilio-media"><Parameter name="token" value="a&amp;b&lt;c&gt;&quot;d&apos;"/><Parameter name="call_sid" value="CA1"/></Stream></Connect></Response>"#
        );
    }

    #[test]
    fn refusals_say_something_in_the_language_then_hang_up() {
        let xml = say_and_hangup(unavailable_message(Language::Ja), Language::Ja);
        assert!(xml.contains(r#"<Say language="ja-JP">申し訳ございません"#));
        assert!(xml.ends_with("</Say><Hangup/></Response>"));
        let xml = say_and_hangup("</Say><Dial>+1900</Dial>\u{0}", Language::En);
        assert!(!xml.contains("<Dial>"));
        assert!(!xml.contains('\u{0}'));
    }
}
