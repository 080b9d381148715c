//! The `wafer` command: build, vet, sign and verify virtual-machine images for grid sites.

use std::process::ExitCode;

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
        site deployment:   wafer verify out/squid --trust /etc/wafer/trust\n\
        \x20                  wafer deploy out/squid --site site.toml;  wafer ps --site site.toml\n\n\
        Examples:\n  \
        wafer mkfs rootfs.tar.xz -o disk.img --profile el7\n  \
        wafer ls disk.img --long\n  \
        wafer ls rootfs.tar.gz --json > listing.json"
)]
struct Cli {
    /// More log output on stderr (-v: info, -vv: debug, -vvv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on stderr; no progress bars.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
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
    Deploy(cmd::deploy::DeployArgs),
    Slots(cmd::deploy::SlotsArgs),
    Ps(cmd::deploy::PsArgs),
    Stop(cmd::deploy::StopArgs),
    Recover(cmd::deploy::RecoverArgs),
    Completions(cmd::docs::CompletionsArgs),
    Man(cmd::docs::ManArgs),
    Demo(cmd::demo::DemoArgs),
}

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
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    // First, before any thread: SIGINT/SIGTERM remove partial outputs and say so (rootfs::atomic).
    let _ = rootfs::atomic::install_signal_cleanup();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::FAILURE,
            };
        }
    };
    init_logging(cli.verbose, cli.quiet);
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
