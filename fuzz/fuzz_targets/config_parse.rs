//! Arbitrary bytes to `config::parse_config` (after the same UTF-8 check `load_config`
//! makes). No panic; every error renders as one line, as SPEC section 6 promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrator::config::file::parse_config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = parse_config(text, "fuzz.json") {
        let shown = e.to_string();
        assert!(
            !shown.contains('\n') && !shown.contains('\r'),
            "multi-line error: {shown:?}"
        );
        assert!(!shown.is_empty(), "empty error");
    }
});
