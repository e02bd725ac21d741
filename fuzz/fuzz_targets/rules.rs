//! The rule set on arbitrary text: no panic, spans inside the text.
#![no_main]
use bastion_detect::rules::Compiled;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static RULES: LazyLock<Compiled> = LazyLock::new(|| Compiled::new().expect("rules compile"));

fuzz_target!(|text: &str| {
    let mut hits = Vec::new();
    RULES.scan(text, &mut hits);
    for h in hits {
        assert!(h.start <= h.end && h.end <= text.len());
    }
});
