//! Opening whatever IMAGE names: a wafer bundle, a raw ext image, a raw disk with an MBR or GPT
//! partition table (the Linux root partition), a tar archive or a directory.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use rootfs::content::FileSource;
use rootfs::open::{open_source, OpenError, OpenOptions, SourceKind};
use rootfs::{ReadAt, Tree};

use crate::part::{self, Partition, Slice};

/// An opened image.
pub struct Image {
    /// Its tree.
    pub tree: Tree,
    /// What it was, for messages and JSON (`bundle`, `ext`, `tar`, `directory`, `disk (gpt partition 2)`).
    pub kind: String,
    /// The bundle's manifest (`wafer.json`), when IMAGE is a bundle.
    pub manifest: Option<bundle::Manifest>,
    /// sha256 (lowercase hex) of the `wafer.json` bytes parsed into `manifest`.
    pub manifest_sha256: Option<String>,
    /// The file the tree was read from (the bundle's `disk.img.zst`, else IMAGE itself).
    pub source: String,
    /// What the reader skipped over (`rootfs::open::Opened::damage`): the vetter cannot vet it.
    pub damage: Vec<String>,
}

fn ext_magic_at(src: &dyn ReadAt, offset: u64) -> bool {
    let mut m = [0u8; 2];
    src.read_exact_at(offset + rootfs::open::EXT_MAGIC_OFFSET, &mut m)
        .is_ok()
        && u16::from_le_bytes(m) == 0xEF53
}

/// The partition holding the root filesystem: a GPT "Linux root" partition with an ext
/// filesystem, else the first Linux-typed one with ext, else the first with an ext superblock.
pub fn root_partition(src: &dyn ReadAt, parts: &[Partition]) -> Option<Partition> {
    let ext: Vec<&Partition> = parts
        .iter()
        .filter(|p| ext_magic_at(src, p.offset))
        .collect();
    ext.iter()
        .find(|p| p.root)
        .or_else(|| ext.iter().find(|p| p.linux))
        .or_else(|| ext.first())
        .map(|p| (*p).clone())
}

/// Opens `path` into a tree with the default budgets.
#[allow(dead_code)] // kept for callers without budgets of their own
pub fn open(path: &Path) -> Result<Image> {
    open_with(path, &OpenOptions::default())
}

/// Opens `path` into a tree with `opts` (budgets of the readers). A tar archive whose entries
/// all sit under one top-level directory is read from inside it (the kind says so). A bundle's
/// manifest must parse and its disk file must have the size the manifest records.
pub fn open_with(path: &Path, opts: &OpenOptions) -> Result<Image> {
    let opts = OpenOptions {
        descend_single_dir: true,
        ..opts.clone()
    };
    // A bundle is the bundle crate's to recognise and read (rootfs knows no bundle).
    if bundle::source::is_bundle(path) {
        return open_bundle(path, &opts);
    }
    match open_source(path, &opts) {
        Ok(o) => {
            let kind = match o.kind {
                SourceKind::Ext => "ext".to_string(),
                SourceKind::Directory => "directory".to_string(),
                SourceKind::Tar(_) => match &o.descended {
                    Some(top) => format!("tar, read from {top}/"),
                    None => "tar".to_string(),
                },
            };
            for n in &o.notes {
                tracing::info!("{}: {n}", path.display());
            }
            let source = path.to_path_buf();
            Ok(Image {
                tree: o.tree,
                kind,
                manifest: None,
                manifest_sha256: None,
                source: source.display().to_string(),
                damage: o.damage,
            })
        }
        Err(OpenError::Unknown { .. }) => open_disk(path),
        Err(e) => Err(anyhow!(e)).with_context(|| format!("opening {}", path.display())),
    }
}

/// Opens a bundle with [`bundle::Bundle::open`] (the manifest parses strictly; the disk is
/// there, not empty, as long as `compressed.size`, its seek table declares `image.size`) and
/// reads the ext image from its disk.
fn open_bundle(path: &Path, opts: &OpenOptions) -> Result<Image> {
    let b = bundle::Bundle::open(path).map_err(|e| anyhow!(e))?;
    let disk = b.disk();
    let img = bundle::source::read_disk(disk, &opts.ext).map_err(|e| anyhow!(e))?;
    let damage = rootfs::open::ext_damage(&img.info);
    Ok(Image {
        tree: img.tree,
        kind: "bundle".into(),
        manifest_sha256: Some(b.manifest_sha256()),
        manifest: Some(b.manifest().clone()),
        source: disk.path().display().to_string(),
        damage,
    })
}

fn open_disk(path: &Path) -> Result<Image> {
    let shown = path.display();
    let src: Arc<dyn ReadAt> =
        Arc::new(FileSource::open(path).with_context(|| format!("opening {shown}"))?);
    let table = match part::read_table(src.as_ref()) {
        Ok(t) => t,
        Err(part::PartError::NoTable) => {
            return Err(anyhow!(
                "{shown}: not a wafer bundle, ext2/3/4 image, tar archive, directory or partitioned disk"
            ))
        }
        Err(e) => return Err(anyhow!("{shown}: {e}")),
    };
    let p = root_partition(src.as_ref(), &table.partitions).ok_or_else(|| {
        anyhow!(
            "{shown}: {:?} partition table with {} partitions, none holds an ext2/3/4 filesystem",
            table.kind,
            table.partitions.len()
        )
    })?;
    tracing::info!(
        partition = p.number,
        offset = p.offset,
        "reading the root partition"
    );
    let slice: Arc<dyn ReadAt> = Arc::new(Slice::new(src, p.offset, p.size));
    let img = rootfs::ext::read_image(slice, &rootfs::ext::ReadOptions::default())
        .with_context(|| format!("{shown}: partition {} (byte {})", p.number, p.offset))?;
    let kind = format!(
        "disk ({} partition {})",
        if table.kind == part::TableKind::Gpt {
            "gpt"
        } else {
            "mbr"
        },
        p.number
    );
    let damage = rootfs::open::ext_damage(&img.info);
    Ok(Image {
        tree: img.tree,
        kind,
        manifest: None,
        manifest_sha256: None,
        source: path.display().to_string(),
        damage,
    })
}
