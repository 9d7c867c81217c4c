//! An index blob as chat loads it from the blob store: decoded, then searched both ways.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::index::SiteIndex;
use shared::index::search::LoadedIndex;

fuzz_target!(|data: &[u8]| {
    let Ok(index) = SiteIndex::decode(data) else {
        return;
    };
    let dims = index
        .vectors
        .as_ref()
        .map_or(0, |v| v.dims as usize)
        .min(4096);
    let loaded = LoadedIndex::new(index);
    let _ = loaded.lexical("the price of shipping 送料", 5);
    let _ = loaded.dense(&vec![0.5; dims], 5);
});
