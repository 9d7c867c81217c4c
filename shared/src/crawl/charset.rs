//! Bytes → text for HTML and plain-text pages in whatever encoding the site uses.
//!
//! Japanese and Korean sites still serve Shift_JIS, EUC-JP, ISO-2022-JP and EUC-KR, often with no
//! declaration at all, so the order is the browsers' one (WHATWG "encoding sniffing"): a byte order
//! mark, then the HTTP `Content-Type` charset, then a `<meta>` declaration near the top, then
//! statistical detection with the host's TLD as a hint. The BOM goes first (as in browsers) because
//! it cannot be there by accident, while mislabelled HTTP headers are common.

use encoding_rs::{Encoding, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252, X_USER_DEFINED};

/// How far into an HTML document a `<meta charset>` is looked for.
const META_PRESCAN_BYTES: usize = 4096;
/// How much of the body the detector reads; plenty to tell the CJK encodings apart.
const DETECTION_BYTES: usize = 256 * 1024;

/// Where the encoding came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharsetSource {
    Bom,
    Header,
    Meta,
    Detected,
}

/// A decoded body.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub text: String,
    pub encoding: &'static Encoding,
    pub source: CharsetSource,
    /// Whether malformed sequences were replaced with U+FFFD.
    pub had_errors: bool,
}

/// Decodes a body. `content_type` is the HTTP header (its charset parameter, and whether to look for
/// `<meta>`: only for HTML); `host` gives the detector its TLD hint (`example.co.jp` → `jp`).
pub fn decode(bytes: &[u8], content_type: Option<&str>, host: Option<&str>) -> Decoded {
    let (encoding, source) = choose_encoding(bytes, content_type, host);
    // `decode` removes a BOM and lets it override, which matches the choice above.
    let (text, _, had_errors) = encoding.decode(bytes);
    Decoded {
        text: text.into_owned(),
        encoding,
        source,
        had_errors,
    }
}

/// Picks the encoding without decoding.
pub fn choose_encoding(
    bytes: &[u8],
    content_type: Option<&str>,
    host: Option<&str>,
) -> (&'static Encoding, CharsetSource) {
    if let Some((enc, _)) = Encoding::for_bom(bytes) {
        return (enc, CharsetSource::Bom);
    }
    if let Some(enc) = content_type.and_then(charset_from_content_type) {
        return (enc, CharsetSource::Header);
    }
    let is_plain_text = content_type
        .map(|ct| mime_essence(ct) == "text/plain")
        .unwrap_or(false);
    if !is_plain_text && let Some(enc) = prescan_meta(bytes) {
        return (enc, CharsetSource::Meta);
    }
    (detect(bytes, host), CharsetSource::Detected)
}

/// The lowercase `type/subtype` of a Content-Type value.
pub fn mime_essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The encoding named by a Content-Type's `charset` parameter, if it names a known one.
pub fn charset_from_content_type(content_type: &str) -> Option<&'static Encoding> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'').trim();
        Encoding::for_label(value.as_bytes())
    })
}

/// Looks for `<meta charset=…>` or `<meta http-equiv="Content-Type" content="…; charset=…">` in the
/// first bytes of an HTML document. A simplified form of the WHATWG prescan: it works on the raw
/// bytes, which is sound because every encoding a page can declare this way is ASCII-compatible.
pub fn prescan_meta(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = &bytes[..bytes.len().min(META_PRESCAN_BYTES)];
    let lower = head.to_ascii_lowercase();
    let mut pos = 0;
    while let Some(found) = find(&lower[pos..], b"<meta") {
        let start = pos + found + b"<meta".len();
        let end = find(&lower[start..], b">").map_or(lower.len(), |e| start + e);
        let tag = &lower[start..end];
        if let Some(enc) = meta_tag_charset(tag) {
            // A page cannot really be UTF-16 if we could read this ASCII; x-user-defined is a
            // browser-internal label. Both per the HTML standard.
            return Some(if enc == UTF_16LE || enc == UTF_16BE {
                UTF_8
            } else if enc == X_USER_DEFINED {
                WINDOWS_1252
            } else {
                enc
            });
        }
        pos = end;
    }
    None
}

/// The charset declared by the attributes of one (lowercased) meta tag.
fn meta_tag_charset(tag: &[u8]) -> Option<&'static Encoding> {
    // `<meta charset="x">`: an attribute named exactly `charset`.
    let mut search = 0;
    while let Some(i) = find(&tag[search..], b"charset") {
        let at = search + i;
        let after = skip_spaces(tag, at + b"charset".len());
        let before_ok = at == 0 || matches!(tag[at - 1], b' ' | b'\t' | b'\n' | b'\r' | b'/');
        if before_ok && tag.get(after) == Some(&b'=') {
            return label_at(tag, skip_spaces(tag, after + 1));
        }
        search = at + 1;
    }
    // `<meta http-equiv="content-type" content="text/html; charset=x">`.
    if find(tag, b"http-equiv").is_some() && find(tag, b"content-type").is_some() {
        let i = find(tag, b"charset=")?;
        return label_at(tag, skip_spaces(tag, i + b"charset=".len()));
    }
    None
}

fn label_at(tag: &[u8], start: usize) -> Option<&'static Encoding> {
    let rest = tag.get(start..)?;
    let rest = rest
        .strip_prefix(b"\"")
        .or_else(|| rest.strip_prefix(b"'"))
        .unwrap_or(rest);
    let end = rest
        .iter()
        .position(|b| matches!(b, b'"' | b'\'' | b';' | b' ' | b'\t' | b'\n' | b'\r' | b'/'))
        .unwrap_or(rest.len());
    Encoding::for_label(&rest[..end])
}

fn skip_spaces(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Statistical detection (chardetng, as Firefox does), UTF-8 included.
pub fn detect(bytes: &[u8], host: Option<&str>) -> &'static Encoding {
    let sample = &bytes[..bytes.len().min(DETECTION_BYTES)];
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Allow);
    detector.feed(sample, true);
    let tld = host.and_then(tld_hint);
    detector.guess(
        tld.as_deref().map(str::as_bytes),
        chardetng::Utf8Detection::Allow,
    )
}

/// The TLD of a host as chardetng wants it: lowercase ASCII letters, digits and hyphens, no dot.
/// IP addresses and odd names give no hint (chardetng would panic on a dot or upper case).
pub fn tld_hint(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.');
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return None;
    }
    let tld = host.rsplit('.').next()?.to_ascii_lowercase();
    let ok = !tld.is_empty()
        && host.contains('.')
        && tld
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok.then_some(tld)
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_rs::{EUC_JP, EUC_KR, ISO_2022_JP, SHIFT_JIS};

    const JA: &str = "株式会社ことばの営業時間は午前九時から午後六時までです。お問い合わせはこちらのフォームからお願いいたします。東京都千代田区丸の内一丁目。";
    const KO: &str = "코토바 주식회사의 영업시간은 오전 아홉 시부터 오후 여섯 시까지입니다. 문의는 이 양식을 이용해 주십시오. 서울특별시 중구.";

    fn encode(enc: &'static Encoding, s: &str) -> Vec<u8> {
        let (bytes, _, unmappable) = enc.encode(s);
        assert!(!unmappable);
        bytes.into_owned()
    }

    fn html(meta: &str, body: &str) -> String {
        format!(
            "<!DOCTYPE html><html><head>{meta}<title>ことば</title></head><body><p>{body}</p></body></html>"
        )
    }

    #[test]
    fn shift_jis_with_header_charset() {
        let bytes = encode(SHIFT_JIS, &html("", JA));
        let d = decode(
            &bytes,
            Some("text/html; charset=Shift_JIS"),
            Some("example.jp"),
        );
        assert_eq!((d.encoding, d.source), (SHIFT_JIS, CharsetSource::Header));
        assert!(d.text.contains(JA) && !d.had_errors);
    }

    #[test]
    fn shift_jis_with_meta_only() {
        let bytes = encode(SHIFT_JIS, &html(r#"<meta charset="shift_jis">"#, JA));
        let d = decode(&bytes, Some("text/html"), None);
        assert_eq!((d.encoding, d.source), (SHIFT_JIS, CharsetSource::Meta));
        assert!(d.text.contains(JA));
    }

    #[test]
    fn shift_jis_undeclared_is_detected() {
        let bytes = encode(SHIFT_JIS, &html("", JA));
        for host in [Some("www.example.co.jp"), Some("example.com"), None] {
            let d = decode(&bytes, Some("text/html"), host);
            assert_eq!(
                (d.encoding, d.source),
                (SHIFT_JIS, CharsetSource::Detected),
                "{host:?}"
            );
            assert!(d.text.contains(JA));
        }
    }

    #[test]
    fn euc_jp_with_header_meta_and_nothing() {
        let bytes = encode(EUC_JP, &html("", JA));
        let d = decode(&bytes, Some("text/html; charset=\"EUC-JP\""), None);
        assert_eq!((d.encoding, d.source), (EUC_JP, CharsetSource::Header));
        assert!(d.text.contains(JA));

        let bytes = encode(
            EUC_JP,
            &html(
                r#"<meta http-equiv="Content-Type" content="text/html; charset=EUC-JP">"#,
                JA,
            ),
        );
        let d = decode(&bytes, None, None);
        assert_eq!((d.encoding, d.source), (EUC_JP, CharsetSource::Meta));
        assert!(d.text.contains(JA));

        let bytes = encode(EUC_JP, &html("", JA));
        let d = decode(&bytes, Some("text/html"), Some("example.jp"));
        assert_eq!((d.encoding, d.source), (EUC_JP, CharsetSource::Detected));
        assert!(d.text.contains(JA));
    }

    #[test]
    fn iso_2022_jp_declared_and_detected() {
        let bytes = encode(ISO_2022_JP, &html(r#"<meta charset=iso-2022-jp>"#, JA));
        let d = decode(&bytes, Some("text/html"), None);
        assert_eq!((d.encoding, d.source), (ISO_2022_JP, CharsetSource::Meta));
        assert!(d.text.contains(JA));
        let bytes = encode(ISO_2022_JP, &html("", JA));
        let d = decode(&bytes, Some("text/html"), Some("example.jp"));
        assert_eq!(d.encoding, ISO_2022_JP);
        assert!(d.text.contains(JA));
    }

    #[test]
    fn utf8_bom_wins_over_a_wrong_header() {
        let mut bytes = vec![0xEF, 0xBB, 0xBF];
        bytes.extend_from_slice(html("", JA).as_bytes());
        let d = decode(&bytes, Some("text/html; charset=Shift_JIS"), None);
        assert_eq!((d.encoding, d.source), (UTF_8, CharsetSource::Bom));
        assert!(d.text.starts_with("<!DOCTYPE"), "BOM removed");
        assert!(d.text.contains(JA));
    }

    #[test]
    fn korean_euc_kr() {
        let bytes = encode(EUC_KR, &html("", KO));
        let d = decode(&bytes, Some("text/html"), Some("example.kr"));
        assert_eq!((d.encoding, d.source), (EUC_KR, CharsetSource::Detected));
        assert!(d.text.contains(KO));
        let bytes = encode(EUC_KR, &html(r#"<META CHARSET='euc-kr'/>"#, KO));
        let d = decode(&bytes, None, None);
        assert_eq!((d.encoding, d.source), (EUC_KR, CharsetSource::Meta));
        assert!(d.text.contains(KO));
    }

    #[test]
    fn plain_text_undeclared_and_utf8() {
        let bytes = encode(SHIFT_JIS, JA);
        let d = decode(&bytes, Some("text/plain"), Some("example.jp"));
        assert_eq!((d.encoding, d.source), (SHIFT_JIS, CharsetSource::Detected));
        assert_eq!(d.text, JA);
        // A plain-text file that merely mentions a meta tag is not HTML.
        let text = format!("<meta charset=euc-kr> {KO}");
        let d = decode(text.as_bytes(), Some("text/plain"), None);
        assert_eq!(d.encoding, UTF_8);
        assert_eq!(d.text, text);
    }

    #[test]
    fn meta_prescan_edge_cases() {
        assert_eq!(
            prescan_meta(b"<meta name=description content=\"charset=euc-jp\">"),
            None
        );
        assert_eq!(prescan_meta(b"<meta charset=\"utf-16\">"), Some(UTF_8));
        assert_eq!(prescan_meta(b"<meta charset=\"bogus\">"), None);
        assert_eq!(prescan_meta(b"<meta data-charset=euc-jp>"), None);
        assert_eq!(prescan_meta(b"<meta charset"), None);
        assert_eq!(prescan_meta(b"<meta charset="), None);
        assert_eq!(prescan_meta(b""), None);
        // Beyond the prescan window: not seen.
        let mut late = vec![b' '; META_PRESCAN_BYTES];
        late.extend_from_slice(b"<meta charset=euc-jp>");
        assert_eq!(prescan_meta(&late), None);
    }

    #[test]
    fn tld_hints_never_panic_the_detector() {
        assert_eq!(tld_hint("www.example.co.jp").as_deref(), Some("jp"));
        assert_eq!(tld_hint("EXAMPLE.KR.").as_deref(), Some("kr"));
        assert_eq!(tld_hint("127.0.0.1"), None);
        assert_eq!(tld_hint("[::1]"), None);
        assert_eq!(tld_hint("localhost"), None);
        assert_eq!(tld_hint("例え.jp").as_deref(), Some("jp"));
        assert_eq!(tld_hint("a.日本"), None);
        for host in ["", ".", "a..", "x.Ü", "..jp"] {
            let _ = decode(b"\x82\xa0", None, Some(host));
        }
    }
}
