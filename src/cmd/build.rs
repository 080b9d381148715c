//! `wafer build`: a recipe turned into a wafer bundle, optionally signed (SLSA provenance).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use super::key::load_private_key;
use builder::{BuildOptions, Event, Phase, Progress};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rootfs::atomic::Replace;
use serde_json::json;

use super::Ui;

/// Build a wafer bundle from a recipe.
#[derive(Args, Debug)]
#[command(
    long_about = "Build a wafer bundle from a recipe (TOML, see docs/recipe.md): open the pinned base,\n\
        apply the steps in order, write the ext image, compress it to seekable zstd and write\n\
        OUT/wafer.json (manifest and digests), OUT/disk.img.zst and OUT/build-report.json.\n\
        The same recipe and inputs give the same bytes (SOURCE_DATE_EPOCH is honoured).\n\n\
        With --sign KEY, the VO administrator's private key signs a SLSA provenance v1\n\
        attestation (recipe and base digests) into OUT/attestations/provenance.json.\n\n\
        Everything the recipe reads (copy, template and rpm sources, the base) is resolved\n\
        beneath the recipe's folder: no absolute path, no '..', no symlink leading out, only\n\
        regular files. A base elsewhere needs --allow-host-path from the operator.\n\n\
        An encrypted key's passphrase comes from WAFER_PASSPHRASE, --passphrase-file FILE, or a prompt on\n\
        the terminal (typed without echo; standard input is never read).\n\n\
        Examples:\n  \
        wafer build recipes/sl5-frontier-squid/recipe.toml -o out/squid\n  \
        wafer build recipe.toml -o out/squid --sign ~/.wafer/atlas-admin.key\n  \
        SOURCE_DATE_EPOCH=1700000000 wafer build recipe.toml -o out/squid --json > events.jsonl"
)]
pub struct BuildArgs {
    /// The recipe file.
    pub recipe: PathBuf,
    /// The bundle directory to create (must not exist, or be empty; --force replaces it). It is
    /// written as a hidden sibling folder and renamed into place when complete.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace an existing bundle OUT, once the new one is complete (a failed or interrupted
    /// build leaves it as it was).
    #[arg(long)]
    pub force: bool,
    /// Sign a build provenance with this private key (PKCS#8 PEM).
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
    /// The provenance's `builder.id` URI: who built it, e.g. `https://cms.example.org/wafer-builder`
    /// (default: the recipe's `[wafer] builder_id`, else `wafer:builder:VO:KEYID`, the wafer's VO
    /// and the signing key's id).
    #[arg(long, value_name = "URI", requires = "sign")]
    pub builder_id: Option<String>,
    /// Print the builder's progress events as JSON lines on stdout, then the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also keep the raw image as OUT/disk.img.
    #[arg(long)]
    pub keep_raw: bool,
    /// Worker threads for hashing and compression (0: all cores; never changes the output).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Let `[base] path` name this host path, or anything beneath it, outside the recipe's
    /// folder (repeatable). The base is then read confined beneath PATH. A recipe can never
    /// allow this itself.
    #[arg(long, value_name = "PATH")]
    pub allow_host_path: Vec<PathBuf>,
    /// Largest output of one template step (e.g. "16M").
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = parse_size)]
    pub max_template_output: u64,
    /// Largest output of all template steps of the build together.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    pub max_template_total: u64,
    /// Most bytes of recipe files (copy sources up to 16 MiB each) held in memory.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    pub max_input_memory: u64,
}

fn parse_size(s: &str) -> std::result::Result<u64, String> {
    builder::recipe::parse_size(s)
}

/// Progress as JSON lines on stdout.
struct JsonProgress;

impl Progress for JsonProgress {
    fn event(&self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }
    }
}

/// Progress bars on stderr: one for the steps, one per byte phase.
struct BarProgress {
    multi: MultiProgress,
    steps: Mutex<Option<ProgressBar>>,
    phase: Mutex<Option<ProgressBar>>,
}

impl BarProgress {
    fn new(visible: bool) -> Self {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        BarProgress {
            multi: MultiProgress::with_draw_target(target),
            steps: Mutex::new(None),
            phase: Mutex::new(None),
        }
    }
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Base => "reading base",
        Phase::Image => "writing image",
        Phase::Compress => "compressing and hashing",
    }
}

impl Progress for BarProgress {
    fn event(&self, event: &Event) {
        match event {
            Event::StepStarted {
                index,
                total,
                kind,
                line,
            } => {
                if let Ok(mut s) = self.steps.lock() {
                    let pb = s.get_or_insert_with(|| {
                        let pb = self.multi.add(ProgressBar::new(*total as u64));
                        if let Ok(st) =
                            ProgressStyle::with_template("steps    [{bar:30}] {pos}/{len} {msg}")
                        {
                            pb.set_style(st.progress_chars("=> "));
                        }
                        pb
                    });
                    pb.set_message(format!("step {index} ({kind}, line {line})"));
                }
            }
            Event::StepFinished { .. } => {
                if let Ok(s) = self.steps.lock() {
                    if let Some(pb) = s.as_ref() {
                        pb.inc(1);
                    }
                }
            }
            Event::PhaseStarted { phase, total } => {
                if let Ok(mut p) = self.phase.lock() {
                    let pb = self.multi.add(ProgressBar::new(*total));
                    if let Ok(st) = ProgressStyle::with_template(
                        "{msg:14} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    ) {
                        pb.set_style(st.progress_chars("=> "));
                    }
                    pb.set_message(phase_name(*phase));
                    *p = Some(pb);
                }
            }
            Event::Bytes { done, total, .. } => {
                if let Ok(p) = self.phase.lock() {
                    if let Some(pb) = p.as_ref() {
                        if pb.length() != Some(*total) {
                            pb.set_length(*total);
                        }
                        pb.set_position(*done);
                    }
                }
            }
            Event::PhaseFinished { .. } => {
                if let Ok(mut p) = self.phase.lock() {
                    if let Some(pb) = p.take() {
                        pb.finish_and_clear();
                    }
                }
            }
        }
    }
}

/// Runs `wafer build`.
pub fn run(a: BuildArgs, ui: &Ui) -> Result<()> {
    // The builder fills the bundle under a temporary sibling name (removed on error or
    // interrupt); it is renamed to OUT once complete and signed: OUT never holds a partial
    // bundle. An existing OUT is refused (without --force) before anything else, the passphrase
    // prompt included.
    let replace = Replace::from_force(a.force);
    bundle::BundleWriter::check_dest(&a.output, replace)?;
    // Read the key first: a wrong key or passphrase stops before a long build.
    let key = match &a.sign {
        Some(p) => Some(load_private_key(p)?),
        None => None,
    };
    // The recipe is read once here: its `[wafer] builder_id` is the provenance's builder.id
    // unless --builder-id names another.
    let recipe = builder::recipe::Recipe::load(&a.recipe)
        .with_context(|| format!("building {}", a.recipe.display()))?;
    let builder_id = match (&a.builder_id, &recipe.doc.wafer.builder_id) {
        (Some(id), _) => Some((id.clone(), "--builder-id".to_string())),
        (None, Some(id)) => Some((
            id.get_ref().clone(),
            format!("{}: wafer.builder_id", a.recipe.display()),
        )),
        (None, None) => None,
    };
    if let Some((id, from)) = &builder_id {
        if !trust::statement::is_uri(id) {
            bail!(
                "{from} {}: not a URI (scheme:rest, no spaces), e.g. https://cms.example.org/wafer-builder",
                rootfs::escape::Escaped(id)
            );
        }
        if key.is_none() {
            tracing::debug!("{from} given without --sign: no provenance is written");
        }
    }
    let mut opts = BuildOptions::new(&a.output);
    opts.replace = replace;
    opts.keep_raw = a.keep_raw;
    opts.threads = a.threads;
    opts.allow_host_paths = a.allow_host_path.clone();
    opts.limits = builder::Limits {
        template_file: a.max_template_output,
        template_total: a.max_template_total,
        input_memory: a.max_input_memory,
    };
    let staged = if a.json {
        builder::stage_recipe(&recipe, &opts, &JsonProgress)
    } else {
        let bars = BarProgress::new(!ui.quiet && std::io::stderr().is_terminal());
        let r = builder::stage_recipe(&recipe, &opts, &bars);
        let _ = bars.multi.clear();
        r
    }
    .with_context(|| format!("building {}", a.recipe.display()))?;
    let signed = match &key {
        Some(k) => {
            trust::provenance::sign_bundle(
                staged.path(),
                k,
                builder_id.as_ref().map(|(id, _)| id.as_str()),
                env!("CARGO_PKG_VERSION"),
            )
            .context("signing the provenance")?;
            Some(a.output.join("attestations").join("provenance.json"))
        }
        None => None,
    };
    let report = staged
        .commit()
        .with_context(|| format!("moving the bundle into place at {}", a.output.display()))?;
    let m = report.manifest.as_ref();
    if a.json {
        let summary = json!({
            "event": "done",
            "name": report.name,
            "version": report.version,
            "bundle": a.output,
            "image_sha256": m.map(|m| m.image.sha256.clone()),
            "provenance": signed,
            "warnings": report.warnings,
            "scriptlets_skipped": report.scriptlets_skipped,
        });
        println!("{summary}");
    } else if !ui.quiet {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "built {} {} into {}",
            report.name,
            report.version,
            a.output.display()
        )?;
        for s in &report.steps {
            writeln!(
                out,
                "  step {} {} (line {}): +{} ~{} -{}",
                s.index,
                s.kind,
                s.line,
                s.added.len(),
                s.changed.len(),
                s.removed.len()
            )?;
        }
        if let Some(m) = m {
            writeln!(out, "  image sha256 {}", m.image.sha256)?;
        }
        for p in &report.packages_added {
            writeln!(
                out,
                "  package {}-{}.{} ({} files)",
                p.name, p.evr, p.arch, p.files
            )?;
        }
        for s in &report.scriptlets_skipped {
            writeln!(out, "  scriptlet not run: {s}")?;
        }
        for w in &report.warnings {
            writeln!(out, "  warning: {w}")?;
        }
        if let Some(p) = &signed {
            writeln!(out, "  provenance signed: {}", p.display())?;
        }
    }
    Ok(())
}
