//! `wafer mkfs`: make an ext2/3/4 image from a tar archive, a directory or another ext image.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bundle::source::{open_source, SourceKind};
use clap::{Args, ValueEnum};
use rootfs::atomic::{AtomicFile, Replace};
use rootfs::ext::{self, FsKind, Profile, WriteOptions, WriteReport};
use rootfs::{NodeKind, Tree};

use super::{parse_size, Ui};

/// Filesystem type to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fs {
    /// ext2: no journal.
    Ext2,
    /// ext3: ext2 plus an (empty) journal.
    Ext3,
    /// ext4: extents, huge_file, dir_nlink, extra_isize, journal.
    Ext4,
}

/// Make an ext2/3/4 filesystem image from a tar archive, a directory or an ext image.
#[derive(Args, Debug)]
#[command(
    long_about = "Make an ext2/3/4 filesystem image from SOURCE, without root and without mounting.\n\n\
        SOURCE is a tar archive (plain, gzip, xz, bzip2 or zstd; ustar, GNU or pax, with sparse files\n\
        and xattrs), a directory (read with lstat; owners, devices and xattrs kept) or an ext2/3/4\n\
        image (re-written). The kind is told by content, not by name.\n\n\
        The output is reproducible: UUID, hash seed and every timestamp derive from the input and\n\
        the epoch (--epoch, else SOURCE_DATE_EPOCH, else the newest mtime in SOURCE).\n\n\
        Examples:\n  \
        wafer mkfs rootfs.tar.xz -o disk.img                      # ext4, size from content + headroom\n  \
        wafer mkfs ./tree -o disk.img --profile el5                 # ext3 that an EL5 kernel mounts\n  \
        wafer mkfs rootfs.tar -o disk.img --fs ext2 --size 2G --block-size 1024\n  \
        SOURCE_DATE_EPOCH=1700000000 wafer mkfs old.img -o new.img --metadata-csum --64bit --json"
)]
pub struct MkfsArgs {
    /// Tar archive, directory or ext image to make the filesystem from.
    pub source: PathBuf,
    /// Image file to write (written sparse under a temporary name beside it, renamed into place
    /// when complete; an existing IMAGE needs --force).
    #[arg(short, long, value_name = "IMAGE")]
    pub output: PathBuf,
    /// Replace an existing IMAGE (only once the new one is complete: a failed or interrupted
    /// run leaves it as it was).
    #[arg(long)]
    pub force: bool,
    /// Filesystem type (default: the profile's, else ext4).
    #[arg(long = "fs", value_enum)]
    pub fs: Option<Fs>,
    /// Feature profile for the guest kernel: el4, el5, el6, el7, el8, el9, fedora, debian12, ext2, ext3, ext4.
    #[arg(long)]
    pub profile: Option<String>,
    /// Image size (bytes or with K/M/G/T suffix); default: content plus headroom.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// Free space to add when the size is computed, in percent of the content.
    #[arg(long, value_name = "PCT", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub headroom: Option<u32>,
    /// Timestamp (seconds since 1970) that UUID, hash seed and filesystem times derive from.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub epoch: Option<i64>,
    /// Block size in bytes.
    #[arg(long, value_parser = ["1024", "2048", "4096"])]
    pub block_size: Option<String>,
    /// Inode size in bytes.
    #[arg(long, value_parser = ["128", "256"])]
    pub inode_size: Option<String>,
    /// Enable metadata checksums (ext4 only; needs a kernel >= 3.18 / EL8).
    #[arg(long)]
    pub metadata_csum: bool,
    /// Enable 64-bit block numbers (ext4 only).
    #[arg(long = "64bit")]
    pub sixty_four_bit: bool,
    /// Volume label (at most 16 bytes).
    #[arg(long)]
    pub label: Option<String>,
    /// Do not fsync the image before exiting (by default it is on disk when wafer returns, as
    /// with mke2fs); for images that are only an intermediate step.
    #[arg(long)]
    pub no_sync: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Profile names [`Profile::from_name`] accepts (the ext writer defines what each means).
pub const PROFILES: &[&str] = &[
    "el4", "el5", "el6", "el7", "el8", "el9", "fedora", "debian12", "ext2", "ext3", "ext4",
];

/// The epoch: explicit, else SOURCE_DATE_EPOCH, else the newest mtime in the tree.
pub fn choose_epoch(explicit: Option<i64>, tree: &Tree) -> Result<(i64, &'static str)> {
    if let Some(e) = explicit {
        return Ok((e, "--epoch"));
    }
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        let e: i64 = v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not an integer"))?;
        return Ok((e, "SOURCE_DATE_EPOCH"));
    }
    let mut newest = i64::MIN;
    tree.walk(|_, id| newest = newest.max(tree.node(id).meta.mtime.sec));
    Ok((if newest == i64::MIN { 0 } else { newest }, "newest mtime"))
}

/// Counts for the summary.
#[derive(Debug, Default, serde::Serialize)]
pub struct TreeCounts {
    /// Paths (entries), including the root.
    pub paths: u64,
    /// Distinct regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Bytes of regular-file data (holes excluded).
    pub data_bytes: u64,
}

fn counts(tree: &Tree) -> TreeCounts {
    let mut c = TreeCounts::default();
    let mut seen = vec![false; tree.node_slots()];
    tree.walk(|_, id| {
        c.paths += 1;
        if std::mem::replace(&mut seen[id.0 as usize], true) {
            return;
        }
        match &tree.node(id).kind {
            NodeKind::Regular(content) => {
                c.files += 1;
                c.data_bytes += content.stored_bytes();
            }
            NodeKind::Directory(_) => c.dirs += 1,
            _ => {}
        }
    });
    c
}

/// Run `wafer mkfs`.
pub fn run(args: MkfsArgs, ui: &Ui) -> Result<()> {
    if let Some(p) = &args.profile {
        if Profile::from_name(p).is_none() {
            bail!(
                "unknown profile {p:?}; known profiles: {}",
                PROFILES.join(", ")
            );
        }
    }
    if let Some(l) = &args.label {
        if l.len() > 16 {
            bail!(
                "label {l:?} is {} bytes; ext labels hold at most 16",
                l.len()
            );
        }
    }
    let replace = Replace::from_force(args.force);
    // Refused before the source is read; checked again when the image is renamed into place.
    check_not_same_file(&args.source, &args.output)?;
    rootfs::atomic::check_file_target(&args.output, replace)?;
    let start = Instant::now();
    let spinner = ui.spinner(&format!("reading {}", args.source.display()));
    let opened = open_source(&args.source, &ui.budgets.open_options())
        .with_context(|| format!("reading {}", args.source.display()));
    spinner.finish_and_clear();
    let opened = opened?;
    check_output_is_not_source(&args.source, &args.output, opened.kind)?;
    let read_secs = start.elapsed().as_secs_f64();
    let (epoch, epoch_from) = choose_epoch(args.epoch, &opened.image.tree)?;
    let c = counts(&opened.image.tree);
    tracing::info!(source = %args.source.display(), kind = ?opened.kind, paths = c.paths, read_secs, epoch, epoch_from, "source read");
    let written = write_image(&opened.image.tree, &args, epoch, c.data_bytes, ui)?;
    let total = start.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "image": args.output.display().to_string(),
        "source": args.source.display().to_string(),
        "source_kind": opened.kind,
        "epoch": epoch,
        "epoch_from": epoch_from,
        "counts": c,
        "image_bytes": written.size,
        "fs": written.fs,
        "block_size": written.block_size,
        "blocks_count": written.report.blocks_count,
        "blocks_used": written.report.blocks_used,
        "inodes_count": written.report.inodes_count,
        "inodes_used": written.report.inodes_used,
        "uuid": hex::encode(written.report.uuid),
        "seconds": total,
    });
    if args.json {
        println!("{summary}");
    } else if !ui.quiet {
        println!(
            "{}: {:?} {} bytes ({}-byte blocks) from {} ({}): {} paths, {} files, {} dirs, {} data bytes, epoch {} ({}), {:.2}s",
            args.output.display(),
            written.fs,
            written.size,
            written.block_size,
            args.source.display(),
            kind_name(opened.kind),
            c.paths,
            c.files,
            c.dirs,
            c.data_bytes,
            epoch,
            epoch_from,
            total
        );
    }
    Ok(())
}

/// Refuses an output that is the source itself (it would be truncated while it is read: the
/// image would get whatever the half-written file held) or, for a directory source, a path
/// inside that directory.
fn check_output_is_not_source(source: &Path, output: &Path, kind: SourceKind) -> Result<()> {
    check_not_same_file(source, output)?;
    if kind == SourceKind::Directory {
        let src = std::fs::canonicalize(source)
            .with_context(|| format!("resolving {}", source.display()))?;
        let parent = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Ok(dir) = std::fs::canonicalize(&parent) {
            if dir.starts_with(&src) {
                bail!(
                    "{} is inside the source directory {}: write the image outside it (it \
                     would otherwise be part of the tree it is made from)",
                    output.display(),
                    source.display()
                );
            }
        }
    }
    Ok(())
}

/// Refuses an output that is the source file itself.
fn check_not_same_file(source: &Path, output: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(s), Ok(o)) = (std::fs::metadata(source), std::fs::metadata(output)) {
        if s.dev() == o.dev() && s.ino() == o.ino() {
            bail!(
                "{} is the source itself: write the image to another file (the source would be \
                 overwritten while it is read)",
                output.display()
            );
        }
    }
    Ok(())
}

fn kind_name(k: SourceKind) -> String {
    match k {
        SourceKind::Tar(c) => format!("tar, {c:?}").to_lowercase(),
        SourceKind::Directory => "directory".into(),
        SourceKind::Ext => "ext image".into(),
        SourceKind::Bundle => "wafer bundle".into(),
    }
}

/// What was written.
pub struct Written {
    /// Filesystem type.
    pub fs: Fs,
    /// Image size in bytes.
    pub size: u64,
    /// Block size.
    pub block_size: u32,
    /// The writer's report.
    pub report: WriteReport,
}

/// The writer options the command line asks for.
pub fn write_options(args: &MkfsArgs, epoch: i64) -> Result<WriteOptions> {
    let mut opts = match &args.profile {
        Some(p) => {
            let profile = Profile::from_name(p).with_context(|| {
                format!(
                    "unknown profile {p:?}; known profiles: {}",
                    PROFILES.join(", ")
                )
            })?;
            WriteOptions::for_profile(profile)
        }
        None => WriteOptions::new(fs_kind(args.fs.unwrap_or(Fs::Ext4))),
    };
    if let (Some(_), Some(fs)) = (&args.profile, args.fs) {
        opts.fs = fs_kind(fs);
    }
    opts.epoch = epoch;
    opts.size = args.size;
    if let Some(h) = args.headroom {
        opts.headroom_percent = h;
    }
    if let Some(b) = &args.block_size {
        opts.block_size = b.parse().context("--block-size")?;
    }
    if let Some(i) = &args.inode_size {
        opts.inode_size = i.parse().context("--inode-size")?;
    }
    if args.metadata_csum {
        opts.metadata_csum = true;
    }
    if args.sixty_four_bit {
        opts.sixty_four_bit = true;
    }
    opts.sync = !args.no_sync;
    if let Some(l) = &args.label {
        opts.label = l.as_bytes().to_vec();
    }
    Ok(opts)
}

fn fs_kind(fs: Fs) -> FsKind {
    match fs {
        Fs::Ext2 => FsKind::Ext2,
        Fs::Ext3 => FsKind::Ext3,
        Fs::Ext4 => FsKind::Ext4,
    }
}

/// Writes the image under a temporary name beside `args.output` (registered for removal on an
/// interrupt; removed on any error, a full disk included) and renames it into place.
fn write_image(
    tree: &Tree,
    args: &MkfsArgs,
    epoch: i64,
    data_bytes: u64,
    ui: &Ui,
) -> Result<Written> {
    let opts = write_options(args, epoch)?;
    let fs = match opts.fs {
        FsKind::Ext2 => Fs::Ext2,
        FsKind::Ext3 => Fs::Ext3,
        FsKind::Ext4 => Fs::Ext4,
    };
    let mut out = AtomicFile::create(&args.output, Replace::from_force(args.force))?;
    out.set_sync(opts.sync);
    let temp = out.temp_path().to_path_buf();
    let bar = ui.bytes_progress(data_bytes, &format!("writing {}", args.output.display()));
    let done = AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        // Progress from the space the image takes so far: the writer needs no hook for it.
        s.spawn(|| {
            use std::os::unix::fs::MetadataExt;
            while !done.load(Ordering::Relaxed) {
                if let Ok(m) = std::fs::metadata(&temp) {
                    bar.set_position((m.blocks() * 512).min(data_bytes));
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        let r = ext::write_image(tree, &temp, &opts);
        done.store(true, Ordering::Relaxed);
        r
    });
    bar.finish_and_clear();
    let report = report.with_context(|| format!("writing {}", args.output.display()))?;
    let spinner = ui.spinner(&format!("syncing {}", args.output.display()));
    let committed = out.commit();
    spinner.finish_and_clear();
    committed?;
    Ok(Written {
        fs,
        size: report.size,
        block_size: report.block_size,
        report,
    })
}
