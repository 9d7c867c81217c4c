//! The `Stripe-Signature` header: any header against any body is refused or accepted without a panic,
//! and a header Kotoba signs itself verifies exactly when its timestamp is within the tolerance.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::billing::signature::{self, TOLERANCE_SECONDS};

const SECRET: &str = "whsec_fuzz";
const NOW: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    // First line: the header; the rest: the body.
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(header) = std::str::from_utf8(header) {
        let _ = signature::verify(Some(header), body, SECRET, NOW);
    }
    // A signature of our own at a timestamp taken from the input.
    let mut t = [0u8; 8];
    for (slot, byte) in t.iter_mut().zip(data) {
        *slot = *byte;
    }
    let timestamp = i64::from_le_bytes(t);
    let signed = signature::sign(SECRET, timestamp, body);
    let within = NOW.abs_diff(timestamp) <= TOLERANCE_SECONDS as u64;
    assert_eq!(
        signature::verify(Some(&signed), body, SECRET, NOW).is_ok(),
        within,
        "t={timestamp}"
    );
});
