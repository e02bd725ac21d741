//! The personal-data scanner on arbitrary text: no panic, ordered non-overlapping spans.
#![no_main]
use bastion_detect::pii::scan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let mut last = 0;
    for m in scan(text) {
        assert!(m.start >= last && m.start < m.end && m.end <= text.len());
        last = m.end;
    }
});
