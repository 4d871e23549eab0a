use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use qbo::cli::{self, Cli, Outcome};

/// `QBO_API_BASE_URL=` in a shell or a compose file means "not set" to most people, but clap
/// would read it as an empty value and reject it. Drop such variables before parsing (we are
/// still single-threaded here, so changing the environment is safe).
fn forget_empty_env_vars(cmd: &clap::Command) {
    for arg in cmd.get_arguments() {
        if let Some(name) = arg.get_env() {
            if std::env::var_os(name).is_some_and(|v| v.is_empty()) {
                std::env::remove_var(name);
            }
        }
    }
    for sub in cmd.get_subcommands() {
        forget_empty_env_vars(sub);
    }
}

fn main() -> ExitCode {
    forget_empty_env_vars(&Cli::command());
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
