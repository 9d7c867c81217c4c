//! Charset choice and decoding of a fetched body: the first byte picks the Content-Type and host the
//! server claims, the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::crawl::charset;

const CONTENT_TYPES: [Option<&str>; 6] = [
    None,
    Some("text/html"),
    Some("text/html; charset=shift_jis"),
    Some("text/plain; charset=\"utf-16le\""),
    Some("application/xhtml+xml;charset=bogus"),
    Some("text/html; charset=iso-2022-jp"),
];
const HOSTS: [Option<&str>; 4] = [
    None,
    Some("example.co.jp"),
    Some("example.ru"),
    Some("xn--n3h.com"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[selector as usize % CONTENT_TYPES.len()];
    let host = HOSTS[(selector as usize / CONTENT_TYPES.len()) % HOSTS.len()];
    let _ = charset::decode(body, content_type, host);
    let _ = charset::prescan_meta(body);
    let _ = charset::detect(body, host);
    if let Ok(header) = std::str::from_utf8(body) {
        let _ = charset::charset_from_content_type(header);
        let _ = charset::mime_essence(header);
        let _ = charset::tld_hint(header);
    }
});
