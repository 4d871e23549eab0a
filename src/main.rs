use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
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

/// clap's usage line after an error lists every flag that has a value, and a value from the
/// environment counts: `--database-url <DATABASE_URL> --client-id ...` read as if they were
/// required. Each command's usage is fixed to the one `--help` shows (its own arguments, no
/// values), and the error above it names what is missing.
fn usage_without_given_values(cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    let mut cmd = cmd;
    for name in names {
        cmd = cmd.mut_subcommand(name, usage_without_given_values);
    }
    if cmd.has_subcommands() {
        return cmd;
    }
    let usage = cmd.clone().render_usage().to_string();
    let usage = usage.trim_start_matches("Usage:").trim().to_string();
    cmd.override_usage(usage)
}

fn main() -> ExitCode {
    forget_empty_env_vars(&Cli::command());
    // clap reads each variable when an argument is defined, so define the command again now
    // that the empty ones are gone.
    let mut cmd = Cli::command();
    cmd.build();
    let cmd = usage_without_given_values(cmd);
    let cli = match Cli::from_arg_matches(&cmd.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
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
