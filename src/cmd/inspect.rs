//! `wafer inspect`: the inventory of an image (system, files, packages, services and ports, ELF
//! hardening, accounts, credentials), as a summary, JSON or a CycloneDX SBOM.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use super::{image, Ui};

/// SBOM formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SbomFormat {
    /// CycloneDX 1.5 JSON.
    Cyclonedx,
}

/// Inventory of an image, read without mounting it.
#[derive(Args, Debug)]
#[command(
    long_about = "Everything a site reviewer must know about an image, read without mounting it:\n\
        distribution, architecture and kernels; every file with its sha256, setuid/setgid files and\n\
        capabilities; packages (rpm Berkeley DB/sqlite/ndb, dpkg) and an offline `rpm -V`; services\n\
        that start at boot and the ports they will listen on, with the file and line saying so; ELF\n\
        hardening of privileged binaries and daemons; accounts, ssh settings, keys and credentials.\n\n\
        IMAGE is a wafer bundle, a raw ext2/3/4 image, a raw disk with an MBR or GPT partition table\n\
        (the Linux root partition is read), a tar archive or a directory. The JSON layout is\n\
        documented in docs/inventory.md.\n\n\
        Examples:\n  \
        wafer inspect out/squid\n  \
        wafer inspect disk.img --json -o inventory.json\n  \
        wafer inspect out/squid --sbom cyclonedx -o squid.cdx.json"
)]
pub struct InspectArgs {
    /// The image to inspect.
    pub image: PathBuf,
    /// The inventory as JSON.
    #[arg(long, conflicts_with = "sbom")]
    pub json: bool,
    /// An SBOM instead of the inventory.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub sbom: Option<SbomFormat>,
    /// Write to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Do not hash file contents (faster).
    #[arg(long)]
    pub no_hash: bool,
}

/// Opens and inspects `path`.
pub fn inventory(path: &Path, hash: bool, ui: &Ui) -> Result<(vetter::Inventory, image::Image)> {
    inventory_with(path, hash, true, ui)
}

/// Opens and inspects `path`; `list_files`: one entry per inode in `files.entries` (the summary
/// does not show them: without them a million-inode image needs half the memory).
pub fn inventory_with(
    path: &Path,
    hash: bool,
    list_files: bool,
    ui: &Ui,
) -> Result<(vetter::Inventory, image::Image)> {
    let spinner = ui.spinner(&format!("reading {}", path.display()));
    let img = image::open_with(path, &ui.budgets.open_options())?;
    spinner.set_message(format!("inspecting {}", path.display()));
    let inv = vetter::vet::inventory(&opened(&img), &inspect_options(ui, hash, list_files))
        .with_context(|| format!("inspecting {}", path.display()))?;
    spinner.finish_and_clear();
    Ok((inv, img))
}

/// The inspection options of the global budgets.
pub fn inspect_options(ui: &Ui, hash: bool, list_files: bool) -> vetter::InspectOptions {
    vetter::InspectOptions {
        hash,
        hash_limit: ui.budgets.hash_max_file,
        hash_holes: ui.budgets.hash_holes,
        max_path_bytes: ui.budgets.max_path,
        list_files,
        ..Default::default()
    }
}

/// An opened image as the vetter takes it; a bundle's disk file (`Image::source`) is hashed
/// by the vetter alongside the inspection.
pub fn opened(img: &image::Image) -> vetter::vet::VetImage<'_> {
    vetter::vet::VetImage {
        tree: &img.tree,
        kind: &img.kind,
        source: &img.source,
        damage: &img.damage,
        manifest: img.manifest.as_ref(),
        manifest_sha256: img.manifest_sha256.as_deref(),
        disk: img
            .manifest
            .as_ref()
            .map(|_| Path::new(img.source.as_str())),
    }
}

/// Writes `text` to `output` or stdout.
pub fn emit(output: Option<&Path>, text: &str) -> Result<()> {
    match output {
        Some(p) => rootfs::atomic::write(p, text.as_bytes(), rootfs::atomic::Replace::Yes)
            .map(|_| ())
            .with_context(|| format!("writing {}", p.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .context("writing to standard output")
        }
    }
}

/// Writes `value` as pretty JSON (and a newline) to `output` or stdout, streaming.
fn emit_json(output: Option<&Path>, value: &impl serde::Serialize) -> Result<()> {
    let shown = output
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "standard output".into());
    let write = |w: &mut dyn Write| -> std::io::Result<()> {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, w);
        serde_json::to_writer_pretty(&mut w, value)
            .map_err(std::io::Error::from)
            .and_then(|()| w.write_all(b"\n"))
            .and_then(|()| w.flush())
    };
    match output {
        // A file: written under a temporary name and renamed into place when complete.
        Some(p) => {
            let mut f = rootfs::atomic::AtomicFile::create(p, rootfs::atomic::Replace::Yes)
                .with_context(|| format!("writing {}", p.display()))?;
            write(f.file()).with_context(|| format!("writing the inventory to {shown}"))?;
            f.commit()
                .with_context(|| format!("writing {}", p.display()))?;
            Ok(())
        }
        None => write(&mut std::io::stdout().lock())
            .with_context(|| format!("writing the inventory to {shown}")),
    }
}

/// Exit status when the image could not be read (a damaged bundle, an unknown format).
pub const COULD_NOT_READ: u8 = 2;

/// Runs `wafer inspect`: exit 0, or 2 when the image could not be read.
pub fn run(a: InspectArgs, ui: &Ui) -> Result<u8> {
    let listed = a.json || a.sbom.is_some();
    let (inv, img) = match inventory_with(&a.image, !a.no_hash, listed, ui) {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "wafer: could not read {}: {}",
                rootfs::escape::escape_lines(&a.image.display().to_string()),
                rootfs::escape::escape_lines(&super::error_text(&e))
            );
            return Ok(COULD_NOT_READ);
        }
    };
    if a.sbom == Some(SbomFormat::Cyclonedx) {
        let fallback = a
            .image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| a.image.display().to_string());
        let subject = vetter::sbom::Subject::for_image(
            img.manifest.as_ref(),
            img.manifest_sha256.as_deref(),
            &img.kind,
            &fallback,
        );
        let opts = vetter::sbom::SbomOptions {
            subject: Some(subject),
            ..Default::default()
        };
        let mut v = serde_json::to_string_pretty(&vetter::sbom::cyclonedx_with(&inv, &opts))
            .context("serializing the SBOM")?;
        v.push('\n');
        emit(a.output.as_deref(), &v)?;
    } else if a.json {
        // Streamed, not built as one string: a million-inode inventory is hundreds of MB of JSON.
        emit_json(a.output.as_deref(), &inv)?;
    } else {
        let mut s = format!("{} ({})\n", a.image.display(), img.kind);
        s.push_str(&vetter::render::summary(&inv));
        // The summary escapes every field from the image; this is the last guard.
        emit(
            a.output.as_deref(),
            &rootfs::escape::escape_lines(&s).into_owned(),
        )?;
    }
    if a.output.is_some() && !ui.quiet && std::io::stderr().is_terminal() {
        eprintln!(
            "wrote {}",
            a.output
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    Ok(0)
}
