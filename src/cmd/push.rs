//! `wafer push` (a bundle to an OCI registry or layout), and what `pull` and `approve --push`
//! share with it: the registry options and the progress/`--json` event reporter.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use rootfs::escape::Escaped;
use serde_json::json;

use super::Ui;

/// How registries are reached (shared by push, pull and approve --push).
#[derive(Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// Reach HOST[:PORT] over plain HTTP, or HTTPS without certificate checks (repeatable). Only
    /// the hosts named; every other registry needs valid TLS.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure: Vec<String>,
    /// Trust the CA certificates of this PEM file besides the system's (repeatable).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Vec<PathBuf>,
}

impl RegistryArgs {
    /// The library's options (credentials are looked up in the auth files).
    pub fn options(&self) -> oci::RegistryOptions {
        oci::RegistryOptions {
            insecure: self.insecure.clone(),
            ca_files: self.ca_file.clone(),
            credentials: None,
        }
    }
}

/// Parses a reference, with the text escaped in the error.
pub fn parse_ref(s: &str) -> Result<oci::Reference> {
    oci::Reference::parse(s).map_err(|e| anyhow::anyhow!("{}", Escaped(&e.to_string())))
}

/// Draws [`oci::Event`]s as byte progress bars (hidden when stderr is not a terminal or with
/// --quiet), or prints them as JSON lines on stdout (`--json`).
pub struct Reporter<'a> {
    ui: &'a Ui,
    json: bool,
    bar: Option<ProgressBar>,
}

impl<'a> Reporter<'a> {
    /// A reporter for one command.
    pub fn new(ui: &'a Ui, json: bool) -> Self {
        Reporter {
            ui,
            json,
            bar: None,
        }
    }

    /// Handles one event.
    pub fn event(&mut self, e: &oci::Event) {
        match e {
            oci::Event::BlobStart { what, digest, size } => {
                if self.json {
                    println!(
                        "{}",
                        json!({"event": "blob-start", "what": what, "digest": digest, "size": size})
                    );
                }
                self.bar = Some(self.ui.bytes_progress(*size, &Escaped(what).to_string()));
            }
            oci::Event::Bytes { n } => {
                if let Some(b) = &self.bar {
                    b.inc(*n);
                }
            }
            oci::Event::BlobDone {
                what,
                digest,
                size,
                skipped,
            } => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                if self.json {
                    println!(
                        "{}",
                        json!({"event": "blob-done", "what": what, "digest": digest, "bytes": size, "skipped": skipped})
                    );
                }
            }
            oci::Event::Manifest { what, digest } => {
                if self.json {
                    println!(
                        "{}",
                        json!({"event": "manifest", "what": what, "digest": digest})
                    );
                }
            }
        }
    }
}

/// Push a wafer bundle to an OCI registry or image layout.
#[derive(Args, Debug)]
#[command(
    long_about = "Push a wafer bundle to an OCI registry (distribution spec) or an OCI image layout\n\
        folder, as an OCI artifact (docs/bundle.md, \"In an OCI registry\"): wafer.json is the config\n\
        blob, disk.img.zst and build-report.json are layers (their bytes as they are), under the tag\n\
        of REF (default: the wafer's version). Each attestation (approvals, provenance) becomes a\n\
        referrer of the wafer's manifest (OCI 1.1 subject; the sha256-HEX tag schema on registries\n\
        without the referrers API). Blobs the registry already holds are not sent again.\n\n\
        Credentials come from $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,\n\
        ~/.config/containers/auth.json or ~/.docker/config.json (what `podman login` and\n\
        `docker login` write; credential helpers are not run).\n\n\
        Examples:\n  \
        wafer push out/squid registry.example.org/cms/frontier-squid:2.7.9-1\n  \
        wafer push out/squid oci:/srv/wafers:2.7.9-1\n  \
        wafer push out/squid 127.0.0.1:5000/cms/squid --insecure 127.0.0.1:5000 --json"
)]
pub struct PushArgs {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Where: HOST[:PORT]/REPOSITORY[:TAG] or oci:FOLDER[:TAG].
    pub reference: String,
    /// Print one JSON object per line: blob-start, blob-done, manifest events, then the result.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Runs `wafer push`.
pub fn run(a: PushArgs, ui: &Ui) -> Result<()> {
    let r = parse_ref(&a.reference)?;
    let mut rep = Reporter::new(ui, a.json);
    let out = oci::push::push(&a.bundle, &r, &a.registry.options(), &mut |e| rep.event(e))
        .with_context(|| {
            format!(
                "pushing {} to {}",
                a.bundle.display(),
                Escaped(&a.reference)
            )
        })?;
    if a.json {
        let atts: Vec<_> = out
            .attestations
            .iter()
            .map(|(n, d)| json!({"name": n, "digest": d}))
            .collect();
        println!(
            "{}",
            json!({"event": "pushed", "reference": out.reference, "digest": out.digest,
                   "attestations": atts, "referrers": out.referrers_via})
        );
    } else if !ui.quiet {
        println!("pushed {} {}", Escaped(&out.reference), out.digest);
        for (n, d) in &out.attestations {
            println!("  attestation {} {d} ({})", Escaped(n), out.referrers_via);
        }
    }
    Ok(())
}
