//! Property tests: the query builder's escaping, date parsing and window planning, and the
//! response parser. Case counts stay moderate so the suite stays fast.

mod chunks;
mod query;
mod response;

use proptest::prelude::*;

/// Strings rich in what breaks quoting: quotes, backslashes, the query's own keywords and
/// punctuation, whitespace, control characters, and any other character.
pub fn tricky_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => Just("'".to_string()),
        4 => Just("\\".to_string()),
        2 => Just("\\'".to_string()),
        1 => Just("''".to_string()),
        1 => Just("\"".to_string()),
        1 => Just(" AND Id = '1".to_string()),
        1 => Just(" OR 1=1 --".to_string()),
        1 => Just("%".to_string()),
        1 => Just("(".to_string()),
        1 => Just(")".to_string()),
        1 => Just("\n\t\r".to_string()),
        1 => Just("\u{0}".to_string()),
        3 => "[a-zA-Z0-9 ]{1,4}",
        3 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|parts| parts.concat())
}

pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures are reported with their shrunk input; no regression files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
