//! Rendering an error with its causes on one line. Our error types keep causes as
//! `source()`, never in their own message, so each cause is printed exactly once; libraries
//! that repeat their source in their message (sqlx, hyper) are de-duplicated here.

use std::error::Error;

/// `outer: cause: root cause`, skipping a cause whose text the line already ends with.
pub fn chain(err: &(dyn Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot reach Postgres")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_cause_once() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert_eq!(chain(&e), "cannot reach Postgres: refused");
    }
}
