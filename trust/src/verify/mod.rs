//! Verification of a wafer bundle against the site trust store.
//!
//! ## What verification expects of the bundle (agreement with the builder)
//!
//! `wafer.json` is the bundle crate's [`bundle::Manifest`], parsed strictly (docs/bundle.md).
//! `disk.img.zst` is seekable zstd; `attestations/*.json` are DSSE envelopes of in-toto
//! statements (see [`crate::statement`] for subjects and predicates).
//!
//! ## Order (fail closed)
//!
//! Cheap checks first, and the image is decompressed only when all of them passed: every
//! envelope's signatures are checked over the exact PAE bytes first; only the verified payload
//! bytes are then parsed, once. The manifest is bound by its sha256 subject; the approvals'
//! image and compressed-file subjects must equal the digests the manifest states; roles, expiry,
//! threshold, revocation and rollback follow ([`verify_metadata`]); then the seek table's total
//! against `image.size` ([`check_image_facts`]); last, the one streaming pass whose digests must
//! equal the manifest's ([`check_streamed`]). Every attestation present must verify under a
//! trusted, unrevoked key: a bundle carrying anything unverifiable is refused.
//!
//! Files are read through [`rootfs::safe::Folder`]: never through a link, regular files only.
//!
//! Each check is a small named function in `checks.rs` (re-exported here), with its unit tests;
//! the table of check names and what each refuses is in `keys/README.md`.

mod checks;

use std::path::Path;

use bundle::{Attestation, Bundle, BundleDir, BundleError, Manifest};

use crate::digest::DigestOptions;
use crate::store::TrustStore;
use crate::verified::Verified;

pub use crate::approve::statement::{
    approval_statement, sign_statement, wafer_subjects, ApprovalRequest,
};
pub use crate::approve::ApproveError;
pub use crate::report::{Check, Report};
pub use checks::{
    check_approval, check_attestations, check_expiry, check_image_facts, check_manifest,
    check_provenance, check_revocation, check_rollback, check_signature, check_streamed,
    check_subjects, check_threshold, ImageFacts, RollbackException, Signed, Streamed, CLOCK_SKEW,
    ROLLBACK_EXCEPTION_V1,
};

/// Verifies a bundle's manifest and attestations against `store` at time `now` (Unix seconds),
/// given the digests streamed from its image: [`verify_metadata`], then the streamed digests
/// against the manifest.
pub fn verify_parts(
    manifest_bytes: &[u8],
    attestations: &[Attestation],
    store: &TrustStore,
    now: i64,
    streamed: &Streamed,
) -> Report {
    let (mut r, manifest) = verify_metadata(manifest_bytes, attestations, store, now);
    if let Some(m) = manifest {
        check_streamed(&mut r, &m, streamed);
    }
    r
}

/// Every check that needs no decompression, cheapest first: the manifest's own sanity, every
/// envelope's signatures, the approvals' subjects (against the manifest's digests), roles,
/// expiry, threshold, revoked digests and rollback. Returns the report and the parsed manifest
/// (`None` when it does not parse: nothing else can be checked then).
pub fn verify_metadata(
    manifest_bytes: &[u8],
    attestations: &[Attestation],
    store: &TrustStore,
    now: i64,
) -> (Report, Option<Manifest>) {
    let mut r = Report::default();
    let msha = checks::sha256_hex(manifest_bytes);
    r.add("manifest digest", true, format!("sha256 {msha}"));

    // 1. Signatures first; only verified payloads are parsed.
    let signed: Vec<Signed> = attestations
        .iter()
        .filter_map(|a| check_signature(&mut r, &a.name, &a.bytes, store))
        .collect();

    // 2. The manifest: bound by the approvals' subject digest (checked below); parsed now.
    let manifest = match Manifest::from_json(manifest_bytes) {
        Ok(m) => m,
        Err(e) => {
            r.add("manifest", false, format!("wafer.json {e}"));
            return (r, None);
        }
    };
    check_manifest(&mut r, &manifest);
    let approvers = check_attestations(&mut r, &signed, &msha, &manifest, store, now);
    check_threshold(&mut r, &approvers, store);
    check_revocation(&mut r, &msha, &manifest, store);
    check_rollback(&mut r, &manifest, store, now);
    (r, Some(manifest))
}

/// Options of [`verify_dir`] and [`verify_bundle`].
#[derive(Debug, Clone, Default)]
pub struct BundleOptions {
    /// Also compute the raw image's and the compressed file's plain sha256.
    pub sha256: bool,
    /// Worker threads (0 = all).
    pub threads: usize,
}

/// Largest `wafer.json` or attestation read from a bundle.
pub const MAX_JSON: u64 = bundle::MAX_JSON;
/// Most attestations read from a bundle.
pub const MAX_ATTESTATIONS: usize = bundle::MAX_ATTESTATIONS;

/// The detail of the `image digests` check when a cheap check refused the bundle.
const NOT_COMPUTED: &str =
    "not computed: the checks above refused the bundle before its image was decompressed";

fn failed(name: &str, detail: String) -> Report {
    let mut r = Report::default();
    r.add(name, false, detail);
    r
}

/// Verifies the bundle folder `dir` against `store` at time `now` (Unix seconds), cheapest
/// checks first, and returns the only value deployment accepts, [`Verified<Bundle>`], or the
/// report of every check with the failed ones. Nothing is followed through a link and only
/// regular files are opened (a FIFO named `disk.img.zst` is refused, it does not hang). Then:
///
/// 1. [`verify_metadata`]: manifest sanity, signatures, subjects, roles, expiry, threshold,
///    revocation, rollback;
/// 2. [`check_image_facts`]: the seek table's total decompressed size against `image.size` and
///    the file's length against `compressed.size`;
/// 3. only if all of that passed, the image is streamed once (dm-verity root with the manifest's
///    salt; with `opts.sha256` also the raw image's and the compressed file's sha256) and
///    [`check_streamed`] compares it with the manifest.
///
/// A bundle refused by a cheap check is never decompressed: a small zstd bomb claiming tens of GB
/// costs nothing. I/O problems become failed checks naming the file.
pub fn verify_dir(
    dir: &Path,
    store: &TrustStore,
    now: i64,
    opts: &BundleOptions,
) -> Result<Verified<Bundle>, Report> {
    let d = BundleDir::open(dir).map_err(|e| failed("bundle", e.to_string()))?;
    let manifest_bytes = d
        .read_manifest_bytes()
        .map_err(|e| failed("manifest", e.to_string()))?;
    let attestations = d
        .read_attestations()
        .map_err(|e| failed("attestations", e.to_string()))?;
    let (mut r, manifest) = verify_metadata(&manifest_bytes, &attestations, store, now);
    let Some(manifest) = manifest else {
        return Err(r);
    };
    let disk = open_disk(&d, &manifest, &mut r);
    let disk = match disk {
        Some(disk) if r.passed() => disk,
        _ => {
            r.add("image digests", false, NOT_COMPUTED);
            return Err(r);
        }
    };
    check_streamed(&mut r, &manifest, &stream(&disk, &manifest, opts));
    if !r.passed() {
        return Err(r);
    }
    match Bundle::from_parts(d, manifest_bytes, attestations, disk) {
        Ok(b) => Ok(Verified::new(b, r)),
        Err(e) => {
            r.add("bundle", false, e.to_string());
            Err(r)
        }
    }
}

/// Verifies an opened [`Bundle`] (see [`verify_dir`] for the checks and their order):
/// the bundle comes back as [`Verified<Bundle>`], or the report lists every failed check.
pub fn verify_bundle(
    bundle: Bundle,
    store: &TrustStore,
    now: i64,
    opts: &BundleOptions,
) -> Result<Verified<Bundle>, Report> {
    let (mut r, parsed) =
        verify_metadata(bundle.manifest_bytes(), bundle.attestations(), store, now);
    if parsed.is_none() {
        return Err(r);
    }
    let m = bundle.manifest();
    check_image_facts(&mut r, m, &facts(bundle.disk()));
    if !r.passed() {
        r.add("image digests", false, NOT_COMPUTED);
        return Err(r);
    }
    check_streamed(&mut r, m, &stream(bundle.disk(), m, opts));
    if r.passed() {
        Ok(Verified::new(bundle, r))
    } else {
        Err(r)
    }
}

fn facts(disk: &bundle::Disk) -> ImageFacts {
    ImageFacts {
        file_size: disk.compressed_size(),
        decompressed_size: disk.size(),
        frames: disk.frames(),
    }
}

/// The one streaming pass over the disk: the digests [`check_streamed`] compares.
fn stream(disk: &bundle::Disk, m: &Manifest, opts: &BundleOptions) -> Streamed {
    let salt = match hex::decode(&m.image.verity.salt) {
        Ok(s) => s,
        Err(e) => {
            return Streamed {
                error: Some(format!("wafer.json image.verity.salt: {e}")),
                ..Default::default()
            }
        }
    };
    let d = DigestOptions {
        salt,
        sha256: opts.sha256,
        compressed_sha256: opts.sha256,
        threads: opts.threads,
    };
    match disk.digest(&d) {
        Ok(d) => Streamed::from(&d),
        Err(e) => Streamed {
            error: Some(e.to_string()),
            ..Default::default()
        },
    }
}

/// Opens `disk.img.zst` (a regular file, not through a link), reads its seek table and checks it
/// against the manifest with [`check_image_facts`]. Problems are added to `r` as failed checks
/// (`image file`, `image stream`); the disk is returned when it could be read.
pub fn open_disk(d: &BundleDir, manifest: &Manifest, r: &mut Report) -> Option<bundle::Disk> {
    match d.open_disk(None) {
        Ok(disk) => {
            check_image_facts(r, manifest, &facts(&disk));
            Some(disk)
        }
        Err(e @ BundleError::SeekTable { .. }) => {
            r.add("image stream", false, e.to_string());
            None
        }
        Err(e) => {
            r.add("image file", false, e.to_string());
            None
        }
    }
}

/// [`verify_dir`], the report only.
pub fn verify_bundle_dir(dir: &Path, store: &TrustStore, now: i64, opts: &BundleOptions) -> Report {
    match verify_dir(dir, store, now, opts) {
        Ok(v) => v.report().clone(),
        Err(r) => r,
    }
}
