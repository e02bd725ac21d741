//! The secret scanner on arbitrary text: no panic, ordered non-overlapping spans on boundaries.
#![no_main]
use bastion_detect::secrets::Scanner;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static SCANNER: LazyLock<Scanner> = LazyLock::new(|| Scanner::new().expect("providers compile"));

fuzz_target!(|text: &str| {
    let mut last = 0;
    for m in SCANNER.scan(text) {
        assert!(m.start >= last && m.start < m.end && m.end <= text.len());
        assert!(text.is_char_boundary(m.start) && text.is_char_boundary(m.end));
        last = m.end;
    }
});
