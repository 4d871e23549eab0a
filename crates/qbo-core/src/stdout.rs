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
