//! The whole engine on arbitrary bytes read as text and as JSON: no panic, scores in [0, 1],
//! redaction leaves nothing to redact.
#![no_main]
use bastion_detect::{Engine, RedactKinds};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static ENGINE: LazyLock<Engine> = LazyLock::new(|| Engine::new().expect("engine builds"));

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let report = ENGINE.scan_text(&text);
    assert!((0.0..=1.0).contains(&report.score));
    let kinds = RedactKinds { secrets: true, personal_data: true };
    if let Some((clean, _)) = ENGINE.redact(&text, kinds) {
        assert!(ENGINE.redact(&clean, kinds).is_none() || clean.len() >= text.len() / 2);
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        assert!((0.0..=1.0).contains(&ENGINE.scan_definition(&value, &["send_message"]).score));
        assert!((0.0..=1.0).contains(&ENGINE.scan_value(&value).score));
    }
});
