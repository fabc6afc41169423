//! The `tether` command: parse, load config, run, exit with the right code. Thin by design:
//! the work is in the library.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tether::cli::{call, calls, check};
use tether::config::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "A sidecar that runs allowlisted verbs on a remote machine over warm, multiplexed SSH"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar.
    Serve {
        /// TOML config file (else $TETHER_CONFIG, else /etc/tether/tether.toml if it exists).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run a verb on the remote through the sidecar, like `ssh host VERB ARG…`.
    Call(call::CallArgs),
    /// Exit 0 when the remote is up, 1 when not, 2 when the sidecar does not answer.
    Check(check::CheckArgs),
    /// The calls in flight, oldest first: state, age, time queued, caller uid, trace id.
    Calls(calls::CallsArgs),
    /// Cancel the call(s) with this request id: a queued one is never sent, a running one
    /// has its channel closed. Exit 1 when nothing matched.
    Cancel(calls::CancelArgs),
    /// Print the effective configuration as TOML, secrets redacted.
    Config {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Preflight against the real remote: config, key, TCP, banner, host key, auth, forced
    /// command, MaxSessions, latency. Exit 0 when nothing failed, 1 otherwise, 78 for an
    /// invalid config.
    Doctor(tether::doctor::DoctorArgs),
    /// Try tether with nothing else: a throwaway SSH server on loopback running the real
    /// shim, and the real sidecar in front of it. Prints commands to paste.
    Demo(tether::demo::DemoArgs),
    /// The laptop half, run by sshd as the forced command: runs allowlisted verbs, and a keyed
    /// call exactly once (docs/shim.md).
    Shim(tether::shim::ShimArgs),
    /// The demo's stand-in for the assistant, run by the demo's shim.
    #[command(hide = true)]
    DemoAssistant { words: Vec<String> },
}

fn main() -> ExitCode {
    // The shim starts on every remote call: it parses only its own arguments (building the
    // whole CLI costs a third of its own start-up) and needs no runtime.
    if std::env::args_os().nth(1).is_some_and(|a| a == "shim") {
        let args = tether::shim::ShimArgs::parse_from(std::env::args_os().skip(1));
        return ExitCode::from(tether::shim::main(args));
    }
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Shim(args) => return ExitCode::from(tether::shim::main(args)),
        Command::DemoAssistant { words } => return tether::demo::assistant::main(&words),
        command => command,
    };
    // The sidecar wants every core; a one-shot client command starts faster on one thread.
    let mut builder = match command {
        Command::Serve { .. } | Command::Demo(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = builder.enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        match command {
            Command::Serve { config } => serve(config).await,
            Command::Call(args) => ExitCode::from(call::run(args).await as u8),
            Command::Check(args) => ExitCode::from(check::run(args).await as u8),
            Command::Calls(args) => ExitCode::from(calls::list(args).await as u8),
            Command::Cancel(args) => ExitCode::from(calls::cancel(args).await as u8),
            Command::Config { config } => show_config(config),
            Command::Demo(args) => demo(args).await,
            Command::Doctor(args) => ExitCode::from(tether::doctor::run(args).await),
            Command::Shim(_) | Command::DemoAssistant { .. } => unreachable!("handled above"),
        }
    })
}

fn load(path: Option<PathBuf>) -> Result<config::Loaded, ExitCode> {
    config::load(path.as_deref()).map_err(|errors| {
        eprint!("tether: {errors}");
        ExitCode::from(tether::exit::CONFIG_UNUSABLE)
    })
}

async fn serve(path: Option<PathBuf>) -> ExitCode {
    let loaded = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    init_logging(loaded.config.server.log_format);
    raise_open_files_limit();
    match tether::run(loaded, tether::shutdown::first_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "tether could not start");
            eprintln!("tether: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(args: tether::demo::DemoArgs) -> ExitCode {
    // The demo is read by a person, not a log pipeline.
    init_logging(LogFormat::Text);
    match tether::demo::run(args, tether::shutdown::first_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every RPC client, SSH connection and channel task holds a file descriptor; container
/// runtimes often start processes with a soft limit of 1024 (and a much higher hard limit),
/// at which tether would stop accepting. Raise the soft limit to the hard one.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-files limit"),
            Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-files limit"),
    }
}

fn show_config(path: Option<PathBuf>) -> ExitCode {
    match load(path) {
        Ok(loaded) => match toml::to_string_pretty(&loaded.config) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tether: cannot print the config: {e}");
                ExitCode::FAILURE
            }
        },
        Err(code) => code,
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,russh=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        // The module path would be a second "target" key beside the call's target field.
        LogFormat::Json => builder.json().flatten_event(true).with_target(false).init(),
        LogFormat::Text => builder.init(),
    }
}
