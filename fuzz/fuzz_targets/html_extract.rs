//! A fetched page as the crawler sees it: text extraction and link discovery on arbitrary HTML.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::crawl::links;
use shared::extract::{extract_html, extract_text};

fuzz_target!(|data: &[u8]| {
    let html = String::from_utf8_lossy(data);
    let _ = extract_html(&html);
    let _ = extract_text(&html);
    let base = url::Url::parse("https://example.com/docs/page.html").expect("literal URL");
    let _ = links::extract(&html, &base);
});
