//! `wafer pull`: a wafer from a registry or layout into a bundle folder, with its attestations;
//! [`resolve`], the wafer's manifest and `wafer.json` without the disk (`wafer approve --push`).
//!
//! Nothing is trusted to the store: the manifest is read by digest (or its digest computed and
//! checked against `Docker-Content-Digest`), checked as wafer pushes it (media types, artifact
//! type, sizes), every blob is checked against its descriptor's digest and size while it
//! streams, and the disk layer must be the disk `wafer.json` states (its `compressed.sha256` and
//! `compressed.size`) before a byte of it is fetched. Everything is written into a temporary
//! sibling of the destination ([`bundle::BundleWriter`]); with a trust store, the complete
//! folder is verified ([`trust::verify_dir`]: signatures, roles, threshold, expiry, revocation,
//! rollback, the dm-verity root of the whole disk) before it is renamed into place. A failure
//! leaves nothing under the destination's name.

use std::path::{Path, PathBuf};

use bundle::{BundleWriter, Manifest};
use rootfs::atomic::Replace;
use rootfs::escape::Escaped;
use rootfs::safe::Folder;
use trust::store::TrustStore;

use crate::artifact::{
    attestation_name, check_attestation, check_wafer, referrers_tag, Descriptor, ImageIndex,
    ImageManifest, WaferLayers, ATTESTATION_ARTIFACT, INDEX_ARTIFACT, INDEX_TITLE, OCI_MANIFEST,
};
use crate::fetch::RepoRange;
use crate::open::open_repo;
use crate::reference::Reference;
use crate::repo::{fetch_manifest, Repo};
use crate::transfer::fetch_small;
use crate::{Event, OciError, Progress, RegistryOptions};

/// A wafer found in a store: its manifest checked, its `wafer.json` fetched and checked.
pub struct Resolved {
    /// The store.
    pub repo: Box<dyn Repo>,
    /// The wafer manifest's descriptor (digest, size, media type): the referrers' subject.
    pub subject: Descriptor,
    /// Its layers.
    pub layers: WaferLayers,
    /// The exact `wafer.json` bytes.
    pub manifest_bytes: Vec<u8>,
    /// The parsed manifest.
    pub manifest: Manifest,
}

fn refused(what: &str, why: String) -> OciError {
    OciError::Manifest {
        what: what.to_string(),
        why,
    }
}

/// Finds the wafer `reference` names: the manifest (by digest, or by tag with its digest
/// computed), checked ([`check_wafer`]); `wafer.json` fetched, checked by digest, parsed
/// strictly; and the disk layer checked to be the disk `wafer.json` states.
pub fn resolve(
    reference: &Reference,
    opts: &RegistryOptions,
    for_push: bool,
    progress: Progress<'_>,
) -> Result<Resolved, OciError> {
    let Some(mref) = reference.manifest_ref() else {
        return Err(OciError::Reference {
            input: reference.to_string(),
            why: "name a tag or a digest (e.g. HOST/REPO:1.0 or HOST/REPO@sha256:HEX)".into(),
        });
    };
    let mref = mref.to_string();
    let mut repo = open_repo(reference, opts, for_push)?;
    let what = reference.to_string();
    let Some(f) = fetch_manifest(repo.as_mut(), &mref)? else {
        return Err(OciError::NotFound {
            what: mref,
            repo: repo.name(),
        });
    };
    if let Some(mt) = f.media_type.as_deref() {
        if mt != OCI_MANIFEST {
            return Err(refused(
                &what,
                format!("served as {}, not {OCI_MANIFEST}", Escaped(mt)),
            ));
        }
    }
    let m = ImageManifest::parse(&what, &f.bytes)?;
    let layers = check_wafer(&what, &m)?;
    progress(&Event::Manifest {
        what: "wafer".into(),
        digest: f.digest.clone(),
    });
    let manifest_bytes = fetch_small(repo.as_mut(), bundle::MANIFEST_FILE, &layers.config)?;
    let manifest = Manifest::from_json(&manifest_bytes).map_err(|e| {
        refused(
            &format!("{what}: wafer.json ({})", layers.config.digest),
            e.to_string(),
        )
    })?;
    // The disk layer must be the disk the (signed) wafer.json states: a manifest pointing at
    // another wafer's disk stops here, before a byte of it is fetched.
    let stated = format!("sha256:{}", manifest.compressed.sha256);
    if layers.disk.digest != stated || layers.disk.size != manifest.compressed.size {
        return Err(refused(
            &what,
            format!(
                "the disk layer is {} ({} bytes), but its wafer.json states {} ({} bytes): refused (a manifest pointing at another disk)",
                layers.disk.digest,
                layers.disk.size,
                Escaped(&stated),
                manifest.compressed.size
            ),
        ));
    }
    Ok(Resolved {
        subject: Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: f.digest.clone(),
            size: f.bytes.len() as u64,
            artifact_type: None,
            annotations: Default::default(),
        },
        repo,
        layers,
        manifest_bytes,
        manifest,
    })
}

/// The referrers of `subject` of the attestation type: from the referrers API when the store
/// has one, else from the `sha256-HEX` tag's index (empty when there is none).
pub fn list_referrers(repo: &mut dyn Repo, subject: &str) -> Result<Vec<Descriptor>, OciError> {
    let ix = match repo.referrers(subject, ATTESTATION_ARTIFACT)? {
        Some(ix) => ix,
        None => {
            let tag = referrers_tag(subject);
            match fetch_manifest(repo, &tag)? {
                Some(f) => ImageIndex::parse(&format!("{}: {tag}", repo.name()), &f.bytes)?,
                None => ImageIndex::empty(),
            }
        }
    };
    Ok(ix
        .manifests
        .into_iter()
        .filter(|d| {
            d.media_type == OCI_MANIFEST
                && d.artifact_type
                    .as_deref()
                    .is_none_or(|t| t == ATTESTATION_ARTIFACT)
        })
        .collect())
}

/// Most referrers a pull examines (each costs a request; a hostile index may list thousands).
pub const MAX_REFERRERS: usize = 4 * bundle::MAX_ATTESTATIONS;

/// How a pull is done.
pub struct PullOptions<'a> {
    /// The bundle folder to write.
    pub dest: PathBuf,
    /// Replace an existing bundle there (`--force`).
    pub replace: Replace,
    /// Verify against this trust store before the folder gets its name.
    pub trust: Option<&'a TrustStore>,
    /// The time verification judges expiry by (Unix seconds).
    pub now: i64,
    /// Threads for the verification's hashing (0: all).
    pub threads: usize,
    /// An earlier version's bundle folder (`--from`): a delta pull against its disk.
    pub from: Option<PathBuf>,
}

/// What a pull wrote.
#[derive(Debug)]
pub struct PullOutcome {
    /// The bundle folder.
    pub dest: PathBuf,
    /// The wafer manifest's digest.
    pub digest: String,
    /// The wafer's manifest.
    pub manifest: Manifest,
    /// The attestation files written.
    pub attestations: Vec<String>,
    /// Referrers left out, and why (escaped text): missing from the store, or not an
    /// attestation of this wafer as wafer pushes it.
    pub skipped: Vec<String>,
    /// The verification report, when a trust store was given (all checks passed).
    pub verified: Option<trust::verify::Report>,
    /// The disk layer's size.
    pub layer_size: u64,
    /// Bytes of the disk layer fetched by this run (a delta or a resumed pull fetches fewer).
    pub fetched: u64,
    /// Bytes of the disk layer found in a partial file of an interrupted pull.
    pub resumed_from: u64,
    /// Why the pull was not a delta, when `--from` was given but could not be used.
    pub delta_ignored: Option<String>,
    /// Warnings (escaped text): an unusable block index or earlier version.
    pub warnings: Vec<String>,
}

/// Where a pull into `dest` keeps its partial disk file between runs: `DEST.wafer-partial/`,
/// beside the destination.
pub fn partial_dir(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "wafer".into());
    name.push(".wafer-partial");
    dest.with_file_name(name)
}

/// Creates (or opens) the partial folder: a real folder (not a link) owned by whoever owns
/// `owner_of` (the pull's own temporary folder), mode 0700.
fn open_partial_dir(dir: &Path, owner_of: &Path) -> Result<(), OciError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(OciError::io(dir)(e)),
    }
    let md = std::fs::symlink_metadata(dir).map_err(OciError::io(dir))?;
    let me = std::fs::symlink_metadata(owner_of).map_err(OciError::io(owner_of))?;
    if !md.file_type().is_dir() || md.uid() != me.uid() || md.mode() & 0o022 != 0 {
        return Err(OciError::Config {
            path: dir.to_path_buf(),
            why: "the pull's partial folder exists but is not a folder owned by this user and writable only by it: refused (remove it)".into(),
        });
    }
    Ok(())
}

/// The block index published for `subject` (a referrer of [`INDEX_ARTIFACT`]): `None`, with
/// the reason, when there is none or it cannot be fetched (a delta pull then fetches everything).
fn fetch_index(repo: &mut dyn Repo, subject: &str) -> Result<Vec<u8>, String> {
    let ix = match repo
        .referrers(subject, INDEX_ARTIFACT)
        .map_err(|e| e.to_string())?
    {
        Some(ix) => ix,
        None => {
            let tag = referrers_tag(subject);
            match fetch_manifest(repo, &tag).map_err(|e| e.to_string())? {
                Some(f) => ImageIndex::parse(&format!("{}: {tag}", repo.name()), &f.bytes)
                    .map_err(|e| e.to_string())?,
                None => return Err("no block index published".into()),
            }
        }
    };
    let Some(d) = ix.manifests.into_iter().find(|d| {
        d.media_type == OCI_MANIFEST && d.artifact_type.as_deref() == Some(INDEX_ARTIFACT)
    }) else {
        return Err("no block index published".into());
    };
    let f = fetch_manifest(repo, &d.digest)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("block index referrer {} not in the store", d.digest))?;
    let m = ImageManifest::parse(&d.digest, &f.bytes).map_err(|e| e.to_string())?;
    let Some(layer) = m
        .layers
        .iter()
        .find(|l| l.media_type == bundle::delta::INDEX_MEDIA_TYPE)
    else {
        return Err(format!("block index referrer {}: no index layer", d.digest));
    };
    if layer.size > bundle::delta::MAX_INDEX_BYTES {
        return Err(format!(
            "block index {}: {} bytes, more than {}",
            layer.digest,
            layer.size,
            bundle::delta::MAX_INDEX_BYTES
        ));
    }
    fetch_small(repo, INDEX_TITLE, layer).map_err(|e| e.to_string())
}

/// Pulls the wafer `reference` names into `opts.dest` (see the module's documentation).
pub fn pull(
    reference: &Reference,
    ropts: &RegistryOptions,
    opts: &PullOptions<'_>,
    progress: Progress<'_>,
) -> Result<PullOutcome, OciError> {
    BundleWriter::check_dest(&opts.dest, opts.replace)?;
    let Resolved {
        mut repo,
        subject,
        layers,
        manifest_bytes,
        manifest,
    } = resolve(reference, ropts, false, progress)?;
    let repo = repo.as_mut();
    let w = BundleWriter::create(&opts.dest, opts.replace)?;
    let tmp = w.path().to_path_buf();
    let folder = Folder::open(&tmp)?;
    let small = |name: &str, d: &Descriptor, bytes: &[u8], progress: Progress<'_>| {
        progress(&Event::BlobStart {
            what: name.into(),
            digest: d.digest.clone(),
            size: d.size,
        });
        progress(&Event::Bytes { n: d.size });
        progress(&Event::BlobDone {
            what: name.into(),
            digest: d.digest.clone(),
            size: d.size,
            skipped: false,
        });
        let _ = bytes;
    };
    folder.write_file(bundle::MANIFEST_FILE, &manifest_bytes)?;
    small(
        bundle::MANIFEST_FILE,
        &layers.config,
        &manifest_bytes,
        progress,
    );
    if let Some(r) = &layers.report {
        let bytes = fetch_small(repo, bundle::REPORT_FILE, r)?;
        folder.write_file(bundle::REPORT_FILE, &bytes)?;
        small(bundle::REPORT_FILE, r, &bytes, progress);
    }

    // Attestations (small) before the disk (large).
    let att_dir = folder.open_dir(bundle::ATTESTATIONS_DIR)?;
    let mut attestations: Vec<String> = Vec::new();
    let mut skipped = Vec::new();
    let listed = list_referrers(repo, &subject.digest)?;
    if listed.len() > MAX_REFERRERS {
        skipped.push(format!(
            "{} referrers listed; only the first {MAX_REFERRERS} are examined",
            listed.len()
        ));
    }
    for d in listed.into_iter().take(MAX_REFERRERS) {
        if attestations.len() >= bundle::MAX_ATTESTATIONS {
            skipped.push(format!(
                "{}: more than {} attestations",
                d.digest,
                bundle::MAX_ATTESTATIONS
            ));
            continue;
        }
        let label = format!("{}: referrer {}", repo.name(), d.digest);
        let Some(f) = fetch_manifest(repo, &d.digest)? else {
            skipped.push(format!("{label}: listed, but not in the store"));
            continue;
        };
        let env = match ImageManifest::parse(&label, &f.bytes)
            .and_then(|m| check_attestation(&label, &m, &subject.digest))
        {
            Ok(env) => env,
            Err(e) => {
                skipped.push(e.to_string());
                continue;
            }
        };
        let mut name = attestation_name(env.title(), &d.digest);
        if attestations.contains(&name) {
            name = attestation_name(None, &d.digest);
        }
        // A blob whose bytes are not its digest is tampering: the pull stops.
        let bytes = fetch_small(repo, &format!("attestations/{name}"), &env)?;
        att_dir.write_file(&name, &bytes)?;
        small(&format!("attestations/{name}"), &env, &bytes, progress);
        attestations.push(name);
    }

    // With a trust store, the small objects are verified before a byte of the disk is fetched:
    // signatures, roles, threshold, expiry, revocation, rollback (the disk's digests come after).
    if let Some(store) = opts.trust {
        let atts = bundle::BundleDir::open(&tmp)?.read_attestations()?;
        let (r, _) = trust::verify::verify_metadata(&manifest_bytes, &atts, store, opts.now);
        if !r.passed() {
            return Err(verify_refused(reference, &opts.dest, &r));
        }
    }

    // The disk, checked against the signed wafer.json as it streams (bundle::stream), into a
    // partial file kept beside the destination between runs: an interrupted pull resumes.
    let expected = bundle::stream::Expected::from_manifest(&manifest)?;
    let pdir = partial_dir(&opts.dest);
    open_partial_dir(&pdir, &tmp)?;
    // One pull at a time into a partial folder (a second one would interleave its writes).
    let lock_path = pdir.join("lock");
    let lock = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock_path)
            .map_err(OciError::io(&lock_path))?
    };
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(OciError::Config {
                path: pdir.clone(),
                why: "another pull into the same folder is running".into(),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(OciError::io(&lock_path)(e)),
    }
    let hex = layers.disk.digest.trim_start_matches("sha256:");
    let ppath = pdir.join(format!("{hex}.disk.img.zst"));
    let mut warnings = Vec::new();
    let sink = match bundle::stream::StreamSink::open(&ppath, expected.clone()) {
        Ok(s) => s,
        Err(e) => {
            warnings.push(format!("partial file unusable, starting again: {e}"));
            std::fs::remove_file(&ppath).map_err(OciError::io(&ppath))?;
            bundle::stream::StreamSink::create(&ppath, expected)?
        }
    };
    let resumed_from = sink.position();
    // The earlier version and the block index, for a delta pull.
    let old = match &opts.from {
        Some(p) => match bundle::Bundle::open(p) {
            Ok(b) => Some(b),
            Err(e) => {
                warnings.push(format!("--from: {e}: fetching the whole disk"));
                None
            }
        },
        None => None,
    };
    let index = match &old {
        Some(_) => match fetch_index(repo, &subject.digest) {
            Ok(i) => Some(i),
            Err(e) => {
                warnings.push(format!("{}: fetching the whole disk", Escaped(&e)));
                None
            }
        },
        None => None,
    };
    progress(&Event::BlobStart {
        what: bundle::DISK_FILE.into(),
        digest: layers.disk.digest.clone(),
        size: layers.disk.size,
    });
    progress(&Event::Bytes { n: resumed_from });
    let mut fetch = RepoRange {
        repo,
        digest: layers.disk.digest.clone(),
        progress,
        fetched: 0,
    };
    let pulled = bundle::delta::pull(
        old.as_ref().map(|b| b.disk()),
        index.as_deref(),
        &mut fetch,
        sink,
    );
    let (streamed, summary) = match pulled {
        Ok(v) => v,
        Err(e) => {
            // Bytes that are not the signed disk are not kept for a resume; an interrupted
            // transfer's are.
            if matches!(e, bundle::delta::DeltaError::Stream(_)) {
                let _ = std::fs::remove_file(&ppath);
                let _ = std::fs::remove_file(&lock_path);
                drop(lock);
                let _ = std::fs::remove_dir(&pdir);
            }
            return Err(OciError::DiskLayer {
                what: format!(
                    "{}: {} (digest {})",
                    fetch.repo.name(),
                    bundle::DISK_FILE,
                    layers.disk.digest
                ),
                source: e,
            });
        }
    };
    let fetched = fetch.fetched;
    let progress = fetch.progress;
    let repo = fetch.repo;
    // Locally rebuilt bytes count as progress too.
    progress(&Event::Bytes {
        n: layers
            .disk
            .size
            .saturating_sub(resumed_from)
            .saturating_sub(fetched),
    });
    let delta_ignored = opts.from.as_ref().and(summary.index_ignored.clone());
    if let Some(why) = &delta_ignored {
        if index.is_some() {
            warnings.push(format!("block index not used: {}", Escaped(why)));
        }
    }
    let path = tmp.join(bundle::DISK_FILE);
    drop(streamed.file);
    std::fs::rename(&streamed.path, &path).map_err(OciError::io(&path))?;
    let _ = std::fs::remove_file(&lock_path);
    drop(lock);
    let _ = std::fs::remove_dir(&pdir);
    progress(&Event::BlobDone {
        what: bundle::DISK_FILE.into(),
        digest: layers.disk.digest.clone(),
        size: layers.disk.size,
        skipped: false,
    });
    let _ = repo;

    // The complete folder, checked before it gets its name.
    let verified = match opts.trust {
        Some(store) => {
            let r = trust::verify_dir(
                &tmp,
                store,
                opts.now,
                &trust::verify::BundleOptions {
                    sha256: false,
                    threads: opts.threads,
                },
            );
            match r {
                Ok(v) => Some(v.report().clone()),
                Err(report) => {
                    return Err(verify_refused(reference, &opts.dest, &report));
                }
            }
        }
        None => {
            bundle::Bundle::open(&tmp)?;
            None
        }
    };
    let dest = w.commit()?;
    Ok(PullOutcome {
        dest,
        digest: subject.digest,
        manifest,
        attestations,
        skipped,
        verified,
        layer_size: layers.disk.size,
        fetched,
        resumed_from,
        delta_ignored,
        warnings,
    })
}

/// The pull refused by verification: every failed check, named and escaped.
fn verify_refused(reference: &Reference, dest: &Path, report: &trust::report::Report) -> OciError {
    let failures: Vec<String> = report
        .failures()
        .iter()
        .map(|c| format!("{}: {}", Escaped(&c.name), Escaped(&c.detail)))
        .collect();
    OciError::Verify {
        reference: reference.to_string(),
        dest: dest.to_path_buf(),
        failures: failures.join("; "),
    }
}

/// The temporary path check for tests: true when no entry of `dir`'s parent is a leftover
/// temporary of a pull into `dir`.
pub fn no_leftovers(dir: &Path) -> bool {
    let Some(parent) = dir.parent() else {
        return true;
    };
    std::fs::read_dir(parent)
        .map(|rd| {
            rd.flatten()
                .all(|e| !rootfs::atomic::is_temp_name(&e.file_name().to_string_lossy()))
        })
        .unwrap_or(true)
}
