//! `qbo-bench`: see `qbo_bench` and the README's "Benchmark" section.

use std::process::ExitCode;

use clap::Parser;
use qbo_bench::{BenchArgs, CHILD_ENV};

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The same program runs the contenders that are not qbo, as children (see `qbo_bench`).
    if let Ok(kind) = std::env::var(CHILD_ENV) {
        return match runtime.block_on(qbo_bench::run_child(&kind)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", qbo_core::errors::chain(&e));
                ExitCode::FAILURE
            }
        };
    }
    let args = BenchArgs::parse();
    match runtime.block_on(qbo_bench::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(qbo_bench::BenchError::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {}", qbo_core::errors::chain(&e));
            ExitCode::FAILURE
        }
    }
}
