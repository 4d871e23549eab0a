//! What commands print on stdout (reports, summaries, lists). A reader that goes away early
//! (`qbo report --format json | head -1`) closes the pipe; Unix tools then stop printing
//! quietly, and so does qbo: `outln!` and `out!` drop the rest of the output instead of
//! panicking as `println!` does, and the command ends with the code it would have had.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout has failed: nothing more is written to it.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` to stdout, unless stdout has gone away.
pub fn write(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        // A closed pipe is the reader's choice; anything else (a full disk) is worth a line.
        if e.kind() != ErrorKind::BrokenPipe {
            tracing::warn!("cannot write to stdout ({e}); the rest of the output is dropped");
        }
    }
}

/// `print!` to stdout that a closed pipe does not turn into a panic.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!($($arg)*))
    };
}

/// `println!` to stdout that a closed pipe does not turn into a panic.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::stdout::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// A table for people: the header, then one line per row; each column as wide as its widest
/// cell, counted in characters (company names carry accents and dashes), two spaces between
/// columns and no trailing spaces. Every list qbo prints as a table goes through here.
pub fn table<R: AsRef<[String]>>(header: &[&str], rows: &[R]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let start = out.len();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            out.extend(std::iter::repeat_n(
                ' ',
                w.saturating_sub(cell.chars().count()),
            ));
        }
        out.truncate(start + out[start..].trim_end().len());
        out.push('\n');
    };
    let mut out = String::new();
    line(&mut out, &mut header.iter().copied());
    for row in rows {
        line(&mut out, &mut row.as_ref().iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_aligns_columns_by_characters_and_trims_each_line() {
        let rows = [
            vec!["Zoë – Café".to_string(), "1".into(), String::new()],
            vec!["Acme".to_string(), "22".into(), "why".into()],
        ];
        assert_eq!(
            super::table(&["NAME", "N", "REASON"], &rows),
            "NAME        N   REASON\n\
             Zoë – Café  1\n\
             Acme        22  why\n"
        );
    }
}
