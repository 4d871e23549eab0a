use std::process::ExitCode;

use clap::Parser;
use qbo::cli::{self, Cli, Outcome};

fn main() -> ExitCode {
    let cli = Cli::parse();
    qbo::telemetry::init(cli.log_format, &cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Outcome::SomeFailed.into();
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(outcome) => outcome.into(),
        Err(e) => {
            let cause: &(dyn std::error::Error + 'static) = e.error.as_ref();
            eprintln!("error: {}", qbo::errors::chain(cause));
            e.outcome.into()
        }
    }
}
