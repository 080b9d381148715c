//! `wafer pull`: a wafer from an OCI registry or image layout into a bundle folder.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use rootfs::atomic::Replace;
use rootfs::escape::Escaped;
use serde_json::json;

use super::push::{parse_ref, RegistryArgs, Reporter};
use super::Ui;

/// Pull a wafer from an OCI registry or image layout into a bundle folder.
#[derive(Args, Debug)]
#[command(
    long_about = "Pull a wafer (pushed by `wafer push`) into a bundle folder, with every attestation\n\
        attached to it as a referrer (approvals, provenance). The registry is not trusted: the\n\
        manifest is checked by its digest and media types, every blob by its digest and size as it\n\
        streams, and the disk layer must be the disk wafer.json states before it is fetched. The\n\
        bundle is written into a temporary folder beside DIR and gets its name only when complete;\n\
        with --trust it must also pass `wafer verify` against the store first (signatures, roles,\n\
        threshold, expiry, revocation, rollback, the dm-verity root of the whole disk): a wafer\n\
        that fails, or an attestation signed by an unknown key, leaves nothing under DIR.\n\
        Without --trust nothing is verified beyond the digests: run `wafer verify` before use.\n\n\
        The disk is checked as it streams (its sha256, the image's sha256 and dm-verity root against\n\
        wafer.json; with --trust the signatures are checked before it is fetched) into\n\
        DIR.wafer-partial/: an interrupted pull resumes there on the next run. With --from OLD, only\n\
        the disk frames the earlier version does not hold are fetched.\n\n\
        Examples:\n  \
        wafer pull registry.example.org/cms/frontier-squid:2.7.9-1 -o /srv/wafers/squid --trust /etc/wafer/trust\n  \
        wafer pull registry.example.org/cms/frontier-squid@sha256:HEX -o squid\n  \
        wafer pull oci:/mnt/usb/wafers:2.7.9-1 -o squid --json\n  \
        wafer pull registry.example.org/cms/frontier-squid:2.7.9-2 -o squid-2 --from squid"
)]
pub struct PullArgs {
    /// What: HOST[:PORT]/REPOSITORY:TAG, HOST[:PORT]/REPOSITORY@sha256:HEX, or oci:FOLDER:TAG.
    pub reference: String,
    /// The bundle folder to write.
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// Replace an existing bundle at DIR (in one rename, once the new one is complete).
    #[arg(long)]
    pub force: bool,
    /// Verify against this trust store before DIR appears; refuse the pull when any check fails.
    #[arg(long, value_name = "DIR")]
    pub trust: Option<PathBuf>,
    /// An earlier version's bundle folder: fetch only the disk frames it does not hold (a delta
    /// pull, using the block index `wafer push` publishes; without one, the whole disk).
    #[arg(long, value_name = "OLD_BUNDLE_DIR")]
    pub from: Option<PathBuf>,
    /// Worker threads for verification (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print one JSON object per line: blob-start, blob-done, manifest events, then the result.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Runs `wafer pull`.
pub fn run(a: PullArgs, ui: &Ui) -> Result<()> {
    let r = parse_ref(&a.reference)?;
    let store = match &a.trust {
        Some(t) => Some(super::trustcmd::load_store(t)?),
        None => None,
    };
    let opts = oci::pull::PullOptions {
        dest: a.output.clone(),
        replace: Replace::from_force(a.force),
        trust: store.as_ref(),
        now: super::vet::now(),
        threads: a.threads,
        from: a.from.clone(),
    };
    let mut rep = Reporter::new(ui, a.json);
    let out = oci::pull::pull(&r, &a.registry.options(), &opts, &mut |e| rep.event(e))
        .with_context(|| format!("pulling {}", Escaped(&a.reference)))?;
    for w in &out.warnings {
        eprintln!("wafer: warning: {w}");
    }
    for s in &out.skipped {
        eprintln!("wafer: warning: referrer left out: {}", Escaped(s));
    }
    if a.json {
        println!(
            "{}",
            json!({"event": "pulled", "reference": r.to_string(), "digest": out.digest,
                   "dest": out.dest, "name": out.manifest.name, "version": out.manifest.version,
                   "attestations": out.attestations, "skipped": out.skipped,
                   "verified": out.verified.is_some(), "layer_size": out.layer_size,
                   "fetched": out.fetched, "resumed_from": out.resumed_from,
                   "delta": a.from.is_some() && out.delta_ignored.is_none(),
                   "delta_ignored": out.delta_ignored})
        );
    } else if !ui.quiet {
        println!(
            "pulled {} {} ({}) into {}: {} attestation(s){}; disk: {} of {} bytes fetched{}",
            Escaped(&out.manifest.name),
            Escaped(&out.manifest.version),
            out.digest,
            out.dest.display(),
            out.attestations.len(),
            if out.verified.is_some() {
                ", verified against the trust store"
            } else {
                ", not verified (no --trust)"
            },
            out.fetched,
            out.layer_size,
            if out.resumed_from > 0 {
                format!(" (resumed at byte {})", out.resumed_from)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
