//! `wafer vet` (an image judged against the site policy) and `wafer diff` (what changed between
//! two images).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use vetter::policy::{EvalContext, ImageIdentity, Policy, Severity, Verdict};

use super::inspect::{emit, inventory};
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

/// Name and VO from the bundle manifest, the overrides, or the file name.
pub fn identity(
    path: &Path,
    img: &image::Image,
    name: Option<&str>,
    vo: Option<&str>,
) -> (String, Option<String>) {
    let m = img.manifest.as_ref();
    let name = name
        .map(str::to_string)
        .or_else(|| m.map(|m| m.name.clone()))
        .unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let vo = vo
        .map(str::to_string)
        .or_else(|| m.map(|m| m.vo.clone()));
    (name, vo)
}

/// sha256 (lowercase hex) of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex::encode(h.finalize()))
}

/// Loads the policy, inspects the image and evaluates: the verdict plus the inventory. For a
/// bundle the verdict records the sha256 of the `wafer.json` and `disk.img.zst` it read
/// (`Verdict::image`), hashed alongside the inspection.
pub fn vet(a: &VetArgs, ui: &Ui) -> Result<(Verdict, vetter::Inventory)> {
    let policy = Policy::load(&a.policy)
        .with_context(|| format!("loading policy {}", a.policy.display()))?;
    let zst = a.image.join("disk.img.zst");
    let (read, zst_sha) = std::thread::scope(|sc| {
        let hasher = (a.image.join("wafer.json").is_file() && zst.is_file())
            .then(|| sc.spawn(|| file_sha256(&zst)));
        let read = inventory(&a.image, true, ui);
        let zst_sha = hasher.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("hashing {} failed", zst.display())))
        });
        (read, zst_sha)
    });
    let (inv, img) = read?;
    if let (Some(Ok(have)), Some(want)) = (
        zst_sha.as_ref().filter(|_| img.kind == "bundle"),
        img.manifest
            .as_ref()
            .map(|m| m.compressed.sha256.as_str()),
    ) {
        if !have.eq_ignore_ascii_case(want) {
            anyhow::bail!(
                "{}: sha256 {have} differs from wafer.json's compressed.sha256 {want}: the disk \
                 image is not the one built (damaged, or swapped)",
                zst.display()
            );
        }
    }
    let vetted = ImageIdentity {
        kind: img.kind.clone(),
        manifest_sha256: img.manifest_sha256.clone(),
        compressed_sha256: match (img.kind.as_str(), zst_sha) {
            ("bundle", Some(h)) => Some(h?),
            _ => None,
        },
        image_sha256: img
            .manifest
            .as_ref()
            .map(|m| m.image.sha256.clone()),
    };
    let old = match &a.since {
        Some(p) => Some(
            inventory(p, true, ui)
                .with_context(|| format!("--since {}", p.display()))?
                .0,
        ),
        None => None,
    };
    let (name, vo) = identity(&a.image, &img, a.name.as_deref(), a.vo.as_deref());
    let mut ctx = EvalContext::new(now(), name, vo);
    ctx.fail_on = a.fail_on;
    ctx.since = old.as_ref();
    let mut v = vetter::policy::evaluate(&inv, &policy, &ctx);
    v.image = Some(vetted);
    v.wafer_version = img
        .manifest
        .as_ref()
        .map(|m| m.version.clone());
    Ok((v, inv))
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
