//! The normalizer on arbitrary text: no panic, decoded layers within budget and depth.
#![no_main]
use bastion_detect::normalize::{Limits, normalize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let limits = Limits::default();
    let n = normalize(text, &limits);
    assert!(n.layers.iter().all(|l| l.depth <= limits.max_depth));
    let decoded: usize = n.layers.iter().skip(1).map(|l| l.text.len()).sum();
    assert!(decoded <= limits.max_decoded_bytes * 3 / 2 + 64 * n.layers.len());
});
