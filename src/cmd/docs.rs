//! `wafer completions` (shell completion scripts) and `wafer man` (manual pages).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

/// Print a shell completion script.
#[derive(Args, Debug)]
#[command(
    long_about = "Print the completion script for SHELL on standard output.\n\n\
    Examples:\n  wafer completions bash > /etc/bash_completion.d/wafer\n  \
    wafer completions zsh > \"${fpath[1]}/_wafer\"\n  wafer completions fish > ~/.config/fish/completions/wafer.fish"
)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Write the manual pages.
#[derive(Args, Debug)]
#[command(
    long_about = "Write roff manual pages: wafer.1 and one wafer-COMMAND.1 per subcommand, into DIR\n\
    (default: print wafer.1 on standard output).\n\n\
    Examples:\n  wafer man -o /usr/local/share/man/man1\n  wafer man | man -l -"
)]
pub struct ManArgs {
    /// Directory to write the pages into.
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// Runs `wafer completions`.
pub fn run_completions(a: CompletionsArgs, mut cmd: clap::Command) -> Result<()> {
    // into memory first: clap_complete panics when its writer fails (a closed pipe)
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "wafer", &mut script);
    std::io::Write::write_all(&mut std::io::stdout(), &script).context("writing to standard output")
}

fn render(cmd: &clap::Command, title: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(title.to_string())
        .render(&mut buf)
        .context("rendering a manual page")?;
    Ok(buf)
}

/// Runs `wafer man`.
pub fn run_man(a: ManArgs, cmd: clap::Command) -> Result<()> {
    let mut cmd = cmd;
    cmd.build();
    match a.output {
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(&render(&cmd, "wafer")?)
                .context("writing to standard output")
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut pages = vec![("wafer.1".to_string(), render(&cmd, "wafer")?)];
            for sub in cmd.get_subcommands() {
                let name = format!("wafer-{}", sub.get_name());
                pages.push((format!("{name}.1"), render(sub, &name)?));
            }
            let n = pages.len();
            for (file, bytes) in pages {
                let p = dir.join(&file);
                // Each page complete or not there; a page from an earlier run is replaced.
                rootfs::atomic::write(&p, &bytes, rootfs::atomic::Replace::Yes)
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            println!(
                "wrote {n} manual pages into {}: wafer.1 and wafer-COMMAND.1 for each command \
                 (read one with: man -l {}/wafer.1)",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
    }
}
