//! A site's robots.txt: parsed, then asked what the crawler asks of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::crawl::robots::Robots;

fuzz_target!(|data: &[u8]| {
    let robots = Robots::parse(data);
    let _ = robots.disallows_all();
    let _ = robots.crawl_delay();
    let _ = robots.sitemaps();
    for path in ["/", "/private/x?y=1", "/%E3%81%82", "/a/../b"] {
        let url = url::Url::parse("https://example.com")
            .and_then(|u| u.join(path))
            .expect("literal URL");
        let _ = robots.allows(&url);
    }
});
