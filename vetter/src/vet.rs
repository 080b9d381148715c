//! Vetting an opened image: the one library entry point behind `wafer vet` (and the demo's and
//! `wafer approve`'s vetting).
//!
//! The caller opens the image (a bundle, an ext image, a disk, a tar archive or a directory) into
//! a [`rootfs::Tree`] and describes it with a [`VetImage`]; [`vet`] builds the inventory under the
//! given budgets, records the damage the reader skipped over (so a damaged source is "could not
//! vet"), settles the wafer's name and VO (overrides, else the bundle's manifest, else the
//! caller's fallback), compares with an older image (`since`) when given, evaluates the policy,
//! and fills the verdict's image facts ([`ImageIdentity`]) and `wafer_version`. For a bundle it
//! also hashes the compressed disk file alongside the inspection and refuses a disk whose sha256
//! differs from the manifest's `compressed.sha256`.

use std::io::Read;
use std::path::{Path, PathBuf};

use rootfs::Tree;
use sha2::{Digest, Sha256};

use crate::policy::{EvalContext, ImageIdentity, Policy, Severity, Verdict};
use crate::{InspectOptions, Inventory};

/// An image opened by the caller, and what the opener knows about it.
#[derive(Clone, Copy, Debug)]
pub struct VetImage<'a> {
    /// The image's tree.
    pub tree: &'a Tree,
    /// What it is, for the verdict (`bundle`, `ext`, `tar`, `directory`,
    /// `disk (gpt partition 2)`).
    pub kind: &'a str,
    /// The file the tree was read from (a bundle's `disk.img.zst`, else the image itself): where
    /// [`VetImage::damage`] is reported.
    pub source: &'a str,
    /// What the reader skipped over (`rootfs::open::Opened::damage`); each entry makes the
    /// verdict "could not vet" unless waived.
    pub damage: &'a [String],
    /// The bundle's manifest, when the image is a bundle.
    pub manifest: Option<&'a bundle::Manifest>,
    /// sha256 (lowercase hex) of the `wafer.json` bytes parsed into `manifest`.
    pub manifest_sha256: Option<&'a str>,
    /// A bundle's compressed disk file (`disk.img.zst`): hashed alongside the inspection into
    /// [`ImageIdentity::compressed_sha256`] and checked against the manifest's
    /// `compressed.sha256`. `None` for other images.
    pub disk: Option<&'a Path>,
}

/// Everything [`vet`] needs.
#[derive(Clone, Debug)]
pub struct VetInput<'a> {
    /// The image to vet.
    pub image: VetImage<'a>,
    /// The site policy.
    pub policy: &'a Policy,
    /// An older version of the wafer: findings present there are marked known.
    pub since: Option<VetImage<'a>>,
    /// Wafer name the policy matches; `None`: the manifest's, else [`VetInput::fallback_name`].
    pub name: Option<&'a str>,
    /// VO the policy matches; `None`: the manifest's (none for other images).
    pub vo: Option<&'a str>,
    /// The name used when neither [`VetInput::name`] nor a manifest gives one (the command uses
    /// the image's file name).
    pub fallback_name: &'a str,
    /// Overrides the policy's `fail_on` threshold.
    pub fail_on: Option<Severity>,
    /// Now, seconds since the epoch (waivers expire against it).
    pub now: i64,
    /// How to inspect (hashing budgets, path limit); used for `image` and `since`.
    pub inspect: InspectOptions,
}

/// A verdict and the inventory it judged (the HTML report shows both).
#[derive(Clone, Debug)]
pub struct VetOutcome {
    /// The verdict, with its image facts and wafer version filled in.
    pub verdict: Verdict,
    /// The inventory of the vetted image.
    pub inventory: Inventory,
}

/// Why an image could not be vetted at all (what could not be read inside a readable image goes
/// into the verdict as "could not vet" instead).
#[derive(Debug, thiserror::Error)]
pub enum VetError {
    /// The image could not be inspected.
    #[error("inspecting {source_file}: {error}")]
    Inspect {
        /// [`VetImage::source`].
        source_file: String,
        /// The inspection error.
        #[source]
        error: crate::Error,
    },
    /// The older image (`since`) could not be inspected.
    #[error("inspecting the older image {source_file}: {error}")]
    InspectSince {
        /// The older image's [`VetImage::source`].
        source_file: String,
        /// The inspection error.
        #[source]
        error: crate::Error,
    },
    /// The bundle's compressed disk could not be read.
    #[error("hashing {}: {source}", path.display())]
    HashDisk {
        /// The disk file.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// The bundle's compressed disk is not the one its manifest records.
    #[error(
        "{}: sha256 {have} differs from wafer.json's compressed.sha256 {want}: the disk image is \
         not the one built (damaged, or swapped)",
        path.display()
    )]
    DiskMismatch {
        /// The disk file.
        path: PathBuf,
        /// Its sha256.
        have: String,
        /// The manifest's `compressed.sha256`.
        want: String,
    },
}

/// The inventory of an opened image, with the damage its reader skipped over recorded
/// ([`Inventory::add_reader_damage`]).
pub fn inventory(image: &VetImage<'_>, opts: &InspectOptions) -> Result<Inventory, crate::Error> {
    let mut inv = crate::inspect(image.tree, opts)?;
    inv.add_reader_damage(image.source, image.damage.iter().cloned());
    Ok(inv)
}

/// Name and VO the policy matches: the overrides, else the manifest's, else `fallback` (name;
/// no VO).
pub fn identity(
    manifest: Option<&bundle::Manifest>,
    name: Option<&str>,
    vo: Option<&str>,
    fallback: &str,
) -> (String, Option<String>) {
    let name = name
        .map(str::to_string)
        .or_else(|| manifest.map(|m| m.name.clone()))
        .unwrap_or_else(|| fallback.to_string());
    let vo = vo
        .map(str::to_string)
        .or_else(|| manifest.map(|m| m.vo.clone()));
    (name, vo)
}

/// sha256 (lowercase hex) of a file, streamed.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex::encode(h.finalize()))
}

/// Vets `input.image` against `input.policy`: see the [module documentation](self).
pub fn vet(input: &VetInput<'_>) -> Result<VetOutcome, VetError> {
    let img = &input.image;
    let (inv, disk_sha) = std::thread::scope(|sc| {
        let hasher = img.disk.map(|p| sc.spawn(move || (p, file_sha256(p))));
        let inv = inventory(img, &input.inspect);
        let disk_sha = hasher.map(|h| match h.join() {
            Ok((p, r)) => r.map_err(|source| VetError::HashDisk {
                path: p.to_path_buf(),
                source,
            }),
            Err(_) => Err(VetError::HashDisk {
                path: img.disk.map(Path::to_path_buf).unwrap_or_default(),
                source: std::io::Error::other("the hashing thread panicked"),
            }),
        });
        (inv, disk_sha)
    });
    let inv = inv.map_err(|error| VetError::Inspect {
        source_file: img.source.to_string(),
        error,
    })?;
    let compressed_sha256 = match (disk_sha, img.disk) {
        (Some(r), Some(path)) => {
            let have = r?;
            if let Some(want) = img.manifest.map(|m| m.compressed.sha256.as_str()) {
                if !have.eq_ignore_ascii_case(want) {
                    return Err(VetError::DiskMismatch {
                        path: path.to_path_buf(),
                        have,
                        want: want.to_string(),
                    });
                }
            }
            Some(have)
        }
        _ => None,
    };
    let old = match &input.since {
        Some(o) => Some(
            inventory(o, &input.inspect).map_err(|error| VetError::InspectSince {
                source_file: o.source.to_string(),
                error,
            })?,
        ),
        None => None,
    };
    let (name, vo) = identity(img.manifest, input.name, input.vo, input.fallback_name);
    let mut ctx = EvalContext::new(input.now, name, vo);
    ctx.fail_on = input.fail_on;
    ctx.since = old.as_ref();
    let mut verdict = crate::policy::evaluate(&inv, input.policy, &ctx);
    verdict.image = Some(ImageIdentity {
        kind: img.kind.to_string(),
        manifest_sha256: img.manifest_sha256.map(str::to_string),
        compressed_sha256,
        image_sha256: img.manifest.map(|m| m.image.sha256.clone()),
    });
    verdict.wafer_version = img.manifest.map(|m| m.version.clone());
    Ok(VetOutcome {
        verdict,
        inventory: inv,
    })
}
