//! `wafer vet` (an image judged against the site policy) and `wafer diff` (what changed between
//! two images).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use vetter::policy::{Policy, Severity, Verdict};

use super::inspect::{emit, inspect_options, inventory, opened};
use super::{image, Ui};

/// Exit status when the image could not be vetted.
pub const COULD_NOT_VET: u8 = 2;

/// Judge an image against the site policy.
#[derive(Args, Debug)]
#[command(
    long_about = "Judge an image against the site policy (TOML, docs/policy.md): ports, setuid/setgid and\n\
        capabilities, package versions and advisories, files, ELF hardening, boot; waivers with\n\
        expiry. Prints the verdict (totals first, findings by severity with their evidence and a\n\
        remedy) and exits 0 when the image passes, 1 when it fails, 2 when it could not be vetted.\n\n\
        The wafer name and VO that policy rules match come from the bundle's wafer.json; for other\n\
        images (or to override) give --name and --vo. --since OLD marks findings already present in\n\
        an older image as known, so a reviewer of version N+1 reads only what is new.\n\n\
        Examples:\n  \
        wafer vet out/squid --policy /etc/wafer/policy.toml\n  \
        wafer vet out/squid-1.1 --policy policy.toml --since out/squid-1.0 --html report.html\n  \
        wafer vet disk.img --policy policy.toml --name cms-squid --vo cms --json > verdict.json\n  \
        wafer vet out/squid --policy policy.toml --fail-on high --sarif squid.sarif"
)]
pub struct VetArgs {
    /// The image to vet (bundle, ext image, disk, tar or directory).
    pub image: PathBuf,
    /// The site policy file.
    #[arg(long, value_name = "POLICY")]
    pub policy: PathBuf,
    /// Fail on findings at or above this severity (info, low, medium, high, critical).
    #[arg(long, value_name = "SEV")]
    pub fail_on: Option<Severity>,
    /// An older version of the wafer: findings present there are marked known.
    #[arg(long, value_name = "OLD")]
    pub since: Option<PathBuf>,
    /// Print the verdict as JSON instead of the terminal report.
    #[arg(long)]
    pub json: bool,
    /// Also write a SARIF 2.1.0 report.
    #[arg(long, value_name = "FILE")]
    pub sarif: Option<PathBuf>,
    /// Also write a self-contained HTML report.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also write the verdict JSON (for `wafer approve --report`).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Wafer name the policy matches (default: the bundle's, else the file name).
    #[arg(long)]
    pub name: Option<String>,
    /// VO the policy matches (default: the bundle's).
    #[arg(long)]
    pub vo: Option<String>,
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Loads the policy, opens the image (and the older one of `--since`) and vets it with
/// [`vetter::vet::vet`]: the verdict plus the inventory. For a bundle the verdict records the
/// sha256 of the `wafer.json` and `disk.img.zst` it read (`Verdict::image`).
pub fn vet(a: &VetArgs, ui: &Ui) -> Result<(Verdict, vetter::Inventory)> {
    let policy = Policy::load(&a.policy)
        .with_context(|| format!("loading policy {}", a.policy.display()))?;
    let spinner = ui.spinner(&format!("reading {}", a.image.display()));
    let img = image::open_with(&a.image, &ui.budgets.open_options())?;
    let old = match &a.since {
        Some(p) => Some(
            image::open_with(p, &ui.budgets.open_options())
                .with_context(|| format!("--since {}", p.display()))?,
        ),
        None => None,
    };
    spinner.set_message(format!("vetting {}", a.image.display()));
    let fallback = a
        .image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let input = vetter::vet::VetInput {
        image: opened(&img),
        policy: &policy,
        since: old.as_ref().map(opened),
        name: a.name.as_deref(),
        vo: a.vo.as_deref(),
        fallback_name: &fallback,
        fail_on: a.fail_on,
        now: now(),
        inspect: inspect_options(ui, true, true),
    };
    let out = vetter::vet::vet(&input).map_err(|e| match e {
        vetter::vet::VetError::InspectSince { .. } => {
            let since = a.since.as_deref().unwrap_or(Path::new(""));
            anyhow::Error::new(e).context(format!("--since {}", since.display()))
        }
        e => anyhow::Error::new(e),
    })?;
    spinner.finish_and_clear();
    Ok((out.verdict, out.inventory))
}

/// A report file: replaced atomically (a report is regenerated; never half-written).
fn write_report(p: &std::path::Path, bytes: &[u8]) -> Result<()> {
    rootfs::atomic::write(p, bytes, rootfs::atomic::Replace::Yes)
        .with_context(|| format!("writing {}", p.display()))?;
    Ok(())
}

fn write_reports(a: &VetArgs, v: &Verdict, inv: &vetter::Inventory) -> Result<()> {
    if let Some(p) = &a.sarif {
        let s =
            serde_json::to_string_pretty(&vetter::report::sarif(v)).context("serializing SARIF")?;
        write_report(p, s.as_bytes())?;
    }
    if let Some(p) = &a.html {
        write_report(p, vetter::report::html(v, inv).as_bytes())?;
    }
    if let Some(p) = &a.report {
        write_report(p, vetter::report::json(v).as_bytes())?;
    }
    if a.json {
        let mut j = vetter::report::json(v);
        if !j.ends_with('\n') {
            j.push('\n');
        }
        emit(None, &j)?;
    } else {
        emit(
            None,
            &vetter::report::terminal(v, std::io::stdout().is_terminal()),
        )?;
    }
    Ok(())
}

/// Runs `wafer vet`: exit 0 pass, 1 fail, 2 could not vet.
pub fn run(a: VetArgs, ui: &Ui) -> Result<u8> {
    let result = vet(&a, ui).and_then(|(v, inv)| {
        write_reports(&a, &v, &inv)?;
        Ok(v)
    });
    match result {
        Ok(v) => Ok(match v.exit_code() {
            0 => 0,
            1 => 1,
            _ => {
                // Paths and reasons come from the image: no control characters to the terminal.
                let clean = |t: &str| -> String {
                    t.chars()
                        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                        .collect()
                };
                for u in v.unvetted.iter().filter(|u| !u.waived) {
                    eprintln!(
                        "wafer: could not vet {}: {} could not be read: {}",
                        a.image.display(),
                        clean(&u.path),
                        clean(&u.reason)
                    );
                }
                COULD_NOT_VET
            }
        }),
        Err(e) if super::is_broken_pipe(&e) => Err(e),
        Err(e) => {
            eprintln!(
                "wafer: could not vet {}: {}",
                a.image.display(),
                super::error_text(&e)
            );
            Ok(COULD_NOT_VET)
        }
    }
}

/// What changed between two images.
#[derive(Args, Debug)]
#[command(
    long_about = "What changed between two images, so the reviewer of version N+1 reads only the delta:\n\
        packages upgraded, downgraded, added or removed; setuid/setgid and capability changes; ports\n\
        opened and closed; files changed in system directories.\n\n\
        Examples:\n  \
        wafer diff out/squid-1.0 out/squid-1.1\n  \
        wafer diff old.img new.img --json > delta.json"
)]
pub struct DiffArgs {
    /// The older image.
    pub old: PathBuf,
    /// The newer image.
    pub new: PathBuf,
    /// The difference as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `wafer diff`: exit 0, or 2 when either image could not be read (a diff against a
/// damaged bundle would show every package as added or removed).
pub fn run_diff(a: DiffArgs, ui: &Ui) -> Result<u8> {
    let read = |p: &Path| match inventory(p, true, ui) {
        Ok((inv, _)) => Some(inv),
        Err(e) => {
            eprintln!(
                "wafer: could not read {}: {}",
                p.display(),
                super::error_text(&e)
            );
            None
        }
    };
    let (Some(old), Some(new)) = (read(&a.old), read(&a.new)) else {
        return Ok(super::inspect::COULD_NOT_READ);
    };
    for (p, inv) in [(&a.old, &old), (&a.new, &new)] {
        let incomplete = inv.packages.damaged.len() + inv.reader_damage.len();
        if incomplete > 0 {
            eprintln!(
                "wafer: warning: {} was read only in part ({incomplete} damaged source(s); see \
                 wafer inspect): the difference may be incomplete",
                p.display()
            );
        }
    }
    let d = vetter::diff::diff(&old, &new);
    if a.json {
        let mut s = serde_json::to_string_pretty(&d).context("serializing the difference")?;
        s.push('\n');
        emit(None, &s)?;
    } else {
        emit(
            None,
            &rootfs::escape::escape_lines(&vetter::diff::render(&d)),
        )?;
    }
    Ok(0)
}
