//! A sitemap or sitemap index (XML, possibly gzip'd or plain text, as the parser accepts).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::crawl::sitemap::parse_sitemap;

fuzz_target!(|data: &[u8]| {
    let _ = parse_sitemap(data, 1_000);
});
