//! What a client sends the reports API in a LIST's query: label and field selectors,
//! continue tokens, and the request path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stellaops_reports::selector::{parse_fields, parse_labels};
use stellaops_reports::token::Continue;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(selector) = parse_labels(text) {
        let labels = [("verdict".to_string(), "Fail".to_string())].into();
        let _ = selector.matches(&labels);
    }
    if let Ok(fields) = parse_fields(text) {
        let _ = fields.matches(Some("ns"), "name");
    }
    if let Ok(token) = Continue::decode(text, 1_764_633_600, 900) {
        // What decodes re-encodes to a token that decodes the same.
        assert_eq!(
            Continue::decode(&token.encode(), 1_764_633_600, 900),
            Ok(token)
        );
    }
    let _ = stellaops_reports::server::route(text, &Default::default());
});
