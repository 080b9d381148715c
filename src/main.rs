//! The `wafer` command: build, vet, sign and verify virtual-machine images for grid sites.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{CommandFactory, Parser, Subcommand};

mod cmd;
mod part;

/// Build, vet, sign and verify virtual-machine images ("wafers") for grid sites.
#[derive(Parser, Debug)]
#[command(
    name = "wafer",
    version,
    about = "Build, vet, sign and verify virtual-machine images (wafers) for grid sites",
    long_about = "Build, vet, sign and verify virtual-machine images (\"wafers\") for grid sites.\n\n\
        Every image is read and written by wafer's own code, in user space: nothing is mounted,\n\
        nothing needs root.\n\n\
        VO administrator:  wafer build recipe.toml -o out/squid --sign admin.key\n\
        \x20                  wafer inspect out/squid;  wafer diff out/squid-1.0 out/squid\n\
        site reviewer:     wafer vet out/squid --policy policy.toml --html report.html\n\
        \x20                  wafer approve out/squid --key alice.key --policy policy.toml\n\
        distribution:      wafer push out/squid registry.example.org/cms/squid:1.0\n\
        \x20                  wafer pull registry.example.org/cms/squid:1.0 -o squid --trust /etc/wafer/trust\n\
        site deployment:   wafer verify out/squid --trust /etc/wafer/trust\n\
        \x20                  wafer deploy out/squid --site site.toml;  wafer ps --site site.toml\n\n\
        Examples:\n  \
        wafer mkfs rootfs.tar.xz -o disk.img --profile el7\n  \
        wafer ls disk.img --long\n  \
        wafer ls rootfs.tar.gz --json > listing.json",
    after_long_help = EXIT_STATUS_HELP
)]
struct Cli {
    /// More log output on stderr (-v: info, -vv: debug, -vvv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on stderr; no progress bars.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Read an encrypted key's passphrase from the first line of FILE instead of asking on the
    /// terminal (WAFER_PASSPHRASE takes precedence).
    #[arg(long, global = true, value_name = "FILE")]
    passphrase_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    budgets: cmd::Budgets,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Mkfs(cmd::mkfs::MkfsArgs),
    Ls(cmd::ls::LsArgs),
    Build(cmd::build::BuildArgs),
    Key(cmd::key::KeyArgs),
    Inspect(cmd::inspect::InspectArgs),
    Vet(cmd::vet::VetArgs),
    Diff(cmd::vet::DiffArgs),
    Approve(cmd::trustcmd::ApproveArgs),
    Verify(cmd::trustcmd::VerifyArgs),
    Push(cmd::push::PushArgs),
    Pull(cmd::pull::PullArgs),
    Deploy(cmd::deploy::DeployArgs),
    Slots(cmd::deploy::SlotsArgs),
    Ps(cmd::deploy::PsArgs),
    Stop(cmd::deploy::StopArgs),
    Recover(cmd::deploy::RecoverArgs),
    Completions(cmd::docs::CompletionsArgs),
    Man(cmd::docs::ManArgs),
    Demo(cmd::demo::DemoArgs),
}

/// The exit statuses of every command (also in docs/exit-codes.md; `tests/cli_exit.rs` keeps the
/// two and the code in step).
const EXIT_STATUS_HELP: &str = "\
Exit status (docs/exit-codes.md):
  0    success; vet: the image passes the policy; verify: every check passed
  1    an error stopped the command (the message says why); vet: the image fails the policy;
       verify: a check failed; recover: a deployment stays held
  2    usage error (unknown option or subcommand, bad or missing value), for every command;
       vet: could not vet (no verdict); inspect, diff: an image could not be read
  141  (killed by SIGPIPE) the reader of the output went away, e.g. `wafer ls img | head -1`;
       other signals likewise show as 128 + the signal's number (130 for Ctrl-C)";

fn init_logging(verbose: u8, quiet: bool) {
    let level = if quiet {
        "error"
    } else {
        match verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // colour codes only for a person at a terminal, never in a log file or a pipe
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Set by the panic hook when a panic was a write to a closed pipe (`println!` panics on it).
static BROKEN_PIPE: AtomicBool = AtomicBool::new(false);

/// How wafer ends when the reader of its output goes away (`wafer ls img | head -1`).
///
/// SIGPIPE stays ignored, as the Rust runtime sets it, so a write to a closed pipe is an error
/// (`EPIPE`), not sudden death: the error (or `println!`'s panic) unwinds through the command,
/// whose guards remove any temporary output file on the way, and then wafer ends quietly by
/// SIGPIPE itself, the status a shell pipeline expects (141), with no message and no backtrace.
/// Restoring SIGPIPE's default action at start-up instead would kill wafer at the first write,
/// skipping that clean-up (`wafer build --json | head -1` would leave temporary files behind).
fn die_of_broken_pipe() -> ! {
    // SAFETY: restoring a signal's default action and raising it in our own process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(128 + libc::SIGPIPE)
}

/// True when the panic message is a failed write to a closed pipe.
fn is_broken_pipe_text(text: &str) -> bool {
    text.contains(&format!("(os error {})", libc::EPIPE))
        || text.contains("Broken pipe")
        || text.contains("BrokenPipe")
}

/// Installs a panic hook that keeps quiet about writes to a closed pipe (and remembers them), and
/// reports every other panic as usual.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_broken_pipe_text(text) {
            BROKEN_PIPE.store(true, Ordering::SeqCst);
            return;
        }
        default(info)
    }));
}

fn main() -> ExitCode {
    // First, before any thread: SIGINT/SIGTERM remove partial outputs and say so (rootfs::atomic).
    let _ = rootfs::atomic::install_signal_cleanup();
    install_panic_hook();
    let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(code) => code,
        Err(payload) => {
            if BROKEN_PIPE.load(Ordering::SeqCst) {
                die_of_broken_pipe();
            }
            std::panic::resume_unwind(payload)
        }
    };
    let flushed = std::io::Write::flush(&mut std::io::stdout());
    if BROKEN_PIPE.load(Ordering::SeqCst)
        || flushed.is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    {
        die_of_broken_pipe();
    }
    code
}

fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            if e.print()
                .is_err_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                die_of_broken_pipe();
            }
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                // a usage error: 2 for every command (docs/exit-codes.md); never 1, which
                // `vet` and `verify` use for a verdict against the image
                _ => ExitCode::from(cmd::USAGE_EXIT),
            };
        }
    };
    init_logging(cli.verbose, cli.quiet);
    tracing::debug!("wafer {} starting", env!("CARGO_PKG_VERSION"));
    cmd::key::set_passphrase_file(cli.passphrase_file.clone());
    let ui = cmd::Ui {
        quiet: cli.quiet,
        budgets: cli.budgets,
    };
    let result = match cli.command {
        Command::Mkfs(a) => cmd::mkfs::run(a, &ui).map(|()| 0),
        Command::Ls(a) => cmd::ls::run(a, &ui).map(|()| 0),
        Command::Build(a) => cmd::build::run(a, &ui).map(|()| 0),
        Command::Key(a) => cmd::key::run(a, &ui).map(|()| 0),
        Command::Inspect(a) => cmd::inspect::run(a, &ui),
        Command::Vet(a) => cmd::vet::run(a, &ui),
        Command::Diff(a) => cmd::vet::run_diff(a, &ui),
        Command::Approve(a) => cmd::trustcmd::run_approve(a, &ui).map(|()| 0),
        Command::Verify(a) => cmd::trustcmd::run_verify(a, &ui),
        Command::Push(a) => cmd::push::run(a, &ui).map(|()| 0),
        Command::Pull(a) => cmd::pull::run(a, &ui).map(|()| 0),
        Command::Deploy(a) => cmd::deploy::run_deploy(a, &ui).map(|()| 0),
        Command::Slots(a) => cmd::deploy::run_slots(a).map(|()| 0),
        Command::Ps(a) => cmd::deploy::run_ps(a).map(|()| 0),
        Command::Stop(a) => cmd::deploy::run_stop(a).map(|()| 0),
        Command::Recover(a) => cmd::deploy::run_recover(a),
        Command::Completions(a) => cmd::docs::run_completions(a, Cli::command()).map(|()| 0),
        Command::Man(a) => cmd::docs::run_man(a, Cli::command()).map(|()| 0),
        Command::Demo(a) => cmd::demo::run(a, &ui).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if cmd::is_broken_pipe(&e) => die_of_broken_pipe(),
        Err(e) => {
            // Errors may quote names from an image or a bundle: no raw control characters.
            eprintln!(
                "wafer: error: {}",
                rootfs::escape::escape_lines(&cmd::error_text(&e))
            );
            ExitCode::from(cmd::ERROR_EXIT)
        }
    }
}
