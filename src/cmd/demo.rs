//! `wafer demo [DIR]`: the whole story end to end, offline, rootless, with nothing but this
//! binary. Each stage prints one line saying what happened and where its output lies.
//!
//! 1. a CentOS-5-like demo base (ext3 image with a Berkeley DB rpm database, real ELF programs);
//! 2. the FroNTier Squid wafer of `recipes/demo-frontier-squid/recipe.toml`, planted with four
//!    problems;
//! 3. vetted against the demo site policy: fails with exactly those four findings;
//! 4. the fixed recipe built and vetted clean;
//! 5. a reviewer key generated, the fixed wafer approved, the demo trust store written and the
//!    wafer verified against it;
//! 6. a copy with one bit flipped in `disk.img.zst`, refused;
//! 7. a dry-run deployment into a demo site under DIR/site: disk, kernel, CIDATA disk, xl.cfg and
//!    lease records written, `xl create` printed; then the xl.cfg and the CIDATA files shown.
//!
//! The recipe folder, policy and site file are compiled in from `recipes/demo-frontier-squid/`.

#[path = "../demo/base.rs"]
pub mod base;

use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, FromArgMatches};
use vetter::policy::{Evidence, Verdict};

use super::Ui;

const RECIPE: &str = include_str!("../../recipes/demo-frontier-squid/recipe.toml");
const RECIPE_FIXED: &str = include_str!("../../recipes/demo-frontier-squid/recipe-fixed.toml");
const RECIPE_README: &str = include_str!("../../recipes/demo-frontier-squid/README.md");
const SQUID_CONF_IN: &str = include_str!("../../recipes/demo-frontier-squid/files/squid.conf.in");
const POLICY: &str = include_str!("../../recipes/demo-frontier-squid/demo-policy.toml");
const SITE: &str = include_str!("../../recipes/demo-frontier-squid/site.toml");

/// Base image file names the recipes pin.
pub const BASE_IMG: &str = "centos5-demo-base.img";
/// The updated base of the fixed recipe.
pub const BASE_UPDATED_IMG: &str = "centos5-demo-base-updated.img";

/// Run the whole wafer story on a built-in demo.
#[derive(Args, Debug)]
#[command(
    long_about = "Run the whole wafer story on a built-in demo, offline and without root:\n\
    1. make a small CentOS 5 base image (ext3, rpm database readable by rpm, real ELF programs);\n\
    2. build a FroNTier Squid wafer from recipes/demo-frontier-squid/recipe.toml on it, planted with\n\
    \x20  four problems (outdated openssl, squid on port 8080, an extra setuid binary, a leftover ssh\n\
    \x20  host key);\n\
    3. vet it against the demo site policy: it fails with exactly those findings;\n\
    4. build the fixed recipe (recipe-fixed.toml) and vet it: it passes;\n\
    5. generate a reviewer key, approve the fixed wafer, write a trust store and verify against it;\n\
    6. flip one bit in a copy of the bundle and show verification refusing it;\n\
    7. deploy with --dry-run into a demo site under DIR/site and show the xl.cfg and CIDATA disk.\n\
    Everything is written under DIR (default ./wafer-demo), which must be empty or absent unless\n\
    --force is given.\n\n\
    Examples:\n  wafer demo\n  wafer demo /tmp/wafer-demo --force"
)]
pub struct DemoArgs {
    /// Output folder.
    #[arg(default_value = "wafer-demo")]
    pub dir: PathBuf,
    /// Use DIR even if it is not empty (its demo folders are replaced).
    #[arg(long)]
    pub force: bool,
}

/// Parses a subcommand's arguments exactly as the command line would (so the demo keeps working
/// when a subcommand gains options).
fn parse_args<T: Args + FromArgMatches>(argv: &[OsString]) -> Result<T> {
    let cmd = T::augment_args(clap::Command::new("wafer-demo").no_binary_name(true));
    let m = cmd
        .try_get_matches_from(argv)
        .map_err(|e| anyhow!("demo: internal arguments: {e}"))?;
    T::from_arg_matches(&m).map_err(|e| anyhow!("demo: internal arguments: {e}"))
}

fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

fn write(path: &Path, data: impl AsRef<[u8]>) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
    }
    rootfs::atomic::write(path, data.as_ref(), rootfs::atomic::Replace::Yes)
        .map(|_| ())
        .with_context(|| format!("writing {}", path.display()))
}

fn stage(n: u32, what: String) {
    println!("[{n}/7] {what}");
    let _ = std::io::stdout().flush();
}

fn pin(recipe: &str, sha: &str) -> Result<()> {
    let line = recipe
        .lines()
        .find(|l| l.trim_start().starts_with("sha256"))
        .ok_or_else(|| anyhow!("demo recipe has no [base] sha256"))?;
    if !line.contains(sha) {
        bail!(
            "the demo base this binary generates has sha256 {sha}, but the demo recipe pins {}: \
             the base generator changed without the recipe (recipes/demo-frontier-squid)",
            line.trim()
        );
    }
    Ok(())
}

fn evidence_text(e: &Evidence) -> String {
    match e {
        Evidence::File { path, line, text } => {
            let mut s = path.clone();
            if let Some(l) = line {
                s.push_str(&format!(":{l}"));
            }
            if let Some(t) = text {
                s.push_str(&format!(" ({})", t.trim()));
            }
            s
        }
        Evidence::Package {
            name,
            version,
            manager,
        } => format!("{manager} package {name}-{version}"),
        Evidence::Port {
            protocol,
            port,
            service,
            file,
            line,
            text,
            ..
        } => {
            let mut s = format!("{service} listens on {protocol}/{port}, set in {file}");
            if let Some(l) = line {
                s.push_str(&format!(":{l}"));
            }
            if let Some(t) = text {
                s.push_str(&format!(" ({})", t.trim()));
            }
            s
        }
        Evidence::Note { text } => text.clone(),
    }
}

fn print_findings(v: &Verdict) {
    for f in &v.findings {
        let ev: Vec<String> = f.evidence.iter().map(evidence_text).collect();
        let sev = if f.waived() {
            "waived".to_string()
        } else {
            f.severity.to_string()
        };
        println!(
            "      {:<16} {:<8} {:<28} {}",
            f.rule,
            sev,
            f.subject,
            ev.join("; ")
        );
    }
}

/// Findings that count (not covered by a valid waiver), and the waived ones.
fn counts(v: &Verdict) -> (usize, usize) {
    let waived = v.findings.iter().filter(|f| f.waived()).count();
    (v.findings.len() - waived, waived)
}

fn verdict_line(v: &Verdict) -> String {
    let (n, w) = counts(v);
    format!(
        "{} with {n} finding{}{}",
        if v.exit_code() == 0 { "PASS" } else { "FAIL" },
        if n == 1 { "" } else { "s" },
        if w > 0 {
            format!(" ({w} waived)")
        } else {
            String::new()
        }
    )
}

/// Stage 3 and 4: one [`vetter::vet::vet`] of the bundle (opened as `wafer vet` opens it); the
/// verdict written as JSON to `report` and as HTML beside it.
fn vet(bundle: &Path, policy: &Path, report: &Path) -> Result<Verdict> {
    let policy = vetter::policy::Policy::load(policy)
        .with_context(|| format!("loading policy {}", policy.display()))?;
    let img = super::image::open(bundle)?;
    let out = vetter::vet::vet(&vetter::vet::VetInput {
        image: super::inspect::opened(&img),
        policy: &policy,
        since: None,
        name: None,
        vo: None,
        fallback_name: "",
        fail_on: None,
        now: super::vet::now(),
        inspect: vetter::InspectOptions::default(),
    })
    .with_context(|| format!("vetting {}", bundle.display()))?;
    write(report, vetter::report::json(&out.verdict))?;
    write(
        &report.with_extension("html"),
        vetter::report::html(&out.verdict, &out.inventory),
    )?;
    Ok(out.verdict)
}

fn build(recipe: &Path, out: &Path) -> Result<builder::BuildReport> {
    // The builder writes beside the final name and renames into place when complete
    // (bundle::BundleWriter over rootfs::atomic); the demo replaces its own earlier output.
    let mut opts = builder::BuildOptions::new(out);
    opts.replace = rootfs::atomic::Replace::Yes;
    builder::build(recipe, &opts, &builder::NoProgress)
        .with_context(|| format!("building {}", recipe.display()))
}

/// One verification of the bundle in `dir` against `store` now ([`trust::verify_dir`], as
/// `wafer verify` without --sha256): the verified bundle, or the report of what failed.
fn verify(
    dir: &Path,
    store: &trust::store::TrustStore,
) -> std::result::Result<trust::Verified<bundle::Bundle>, trust::VerifyReport> {
    trust::verify_dir(
        dir,
        store,
        super::vet::now(),
        &trust::verify::BundleOptions {
            sha256: false,
            threads: 0,
        },
    )
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for e in std::fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)
                .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

/// The folders the demo writes under DIR.
const OUTPUTS: [&str; 7] = [
    "recipe",
    "wafers",
    "reports",
    "keys",
    "trust",
    "site",
    "README.txt",
];

fn prepare(dir: &Path, force: bool) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                if !force {
                    bail!(
                        "{} is not empty: give another folder, or --force to reuse it",
                        dir.display()
                    );
                }
                for o in OUTPUTS {
                    let p = dir.join(o);
                    if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                            .with_context(|| format!("removing {}", p.display()))?;
                    } else if p.exists() {
                        std::fs::remove_file(&p)
                            .with_context(|| format!("removing {}", p.display()))?;
                    }
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Runs `wafer demo`.
pub fn run(a: DemoArgs, ui: &Ui) -> Result<()> {
    let t0 = Instant::now();
    prepare(&a.dir, a.force)?;
    let dir =
        std::fs::canonicalize(&a.dir).with_context(|| format!("resolving {}", a.dir.display()))?;
    let quiet = Ui {
        quiet: true,
        ..Ui::default()
    };
    let _ = ui;

    // 1. the base, and the recipe folder around it
    let rdir = dir.join("recipe");
    write(&rdir.join("recipe.toml"), RECIPE)?;
    write(&rdir.join("recipe-fixed.toml"), RECIPE_FIXED)?;
    write(&rdir.join("README.md"), RECIPE_README)?;
    write(&rdir.join("files/squid.conf.in"), SQUID_CONF_IN)?;
    write(&rdir.join("demo-policy.toml"), POLICY)?;
    write(&rdir.join("files/helper"), base::HELLO_PIE)?;
    let sha = base::write_image(&rdir.join(BASE_IMG), base::Variant::Original)?;
    pin(RECIPE, &sha)?;
    let sha_up = base::write_image(&rdir.join(BASE_UPDATED_IMG), base::Variant::Updated)?;
    pin(RECIPE_FIXED, &sha_up)?;
    stage(1, format!(
        "made a CentOS 5.11 demo base (ext3, rpm Berkeley DB with {} packages, x86-64 ELF programs): {} (sha256 {}), with the updated-openssl variant beside it",
        base::PACKAGES.len(),
        rdir.join(BASE_IMG).display(),
        &sha[..16]
    ));

    // 2. the planted wafer
    let wdir = dir.join("wafers");
    let planted = wdir.join("squid-planted");
    let r = build(&rdir.join("recipe.toml"), &planted)?;
    stage(
        2,
        format!(
            "built wafer {} {} from {} ({} steps): {}",
            r.name,
            r.version,
            rdir.join("recipe.toml").display(),
            r.steps.len(),
            planted.display()
        ),
    );

    // 3. vetted: four findings
    let policy = rdir.join("demo-policy.toml");
    let reports = dir.join("reports");
    let v = vet(&planted, &policy, &reports.join("vet-planted.json"))?;
    stage(
        3,
        format!(
            "vetted it against {}: {} (report {}, for a browser {})",
            policy.display(),
            verdict_line(&v),
            reports.join("vet-planted.json").display(),
            reports.join("vet-planted.html").display()
        ),
    );
    print_findings(&v);
    if v.exit_code() == 0 {
        bail!("the planted wafer passed the demo policy: the vetter missed the planted problems");
    }

    // 4. fixed
    let fixed = wdir.join("squid-fixed");
    let r = build(&rdir.join("recipe-fixed.toml"), &fixed)?;
    let v2 = vet(&fixed, &policy, &reports.join("vet-fixed.json"))?;
    stage(
        4,
        format!(
            "built the fixed recipe ({} {}) into {} and vetted it: {} (report {}, for a browser {})",
            r.name,
            r.version,
            fixed.display(),
            verdict_line(&v2),
            reports.join("vet-fixed.json").display(),
            reports.join("vet-fixed.html").display()
        ),
    );
    if v2.exit_code() != 0 {
        print_findings(&v2);
        bail!("the fixed wafer does not pass the demo policy");
    }

    // 5. key, approval, trust store, verify
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).with_context(|| format!("creating {}", keys.display()))?;
    let key = trust::key::PrivateKey::generate();
    let key_path = keys.join("demo-reviewer.key");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .with_context(|| format!("creating {}", key_path.display()))?;
        f.write_all(
            key.to_pem(None)
                .context("encoding the reviewer key")?
                .as_bytes(),
        )
        .with_context(|| format!("writing {}", key_path.display()))?;
    }
    let pub_pem = key
        .public()
        .to_pem()
        .context("encoding the reviewer's public key")?;
    write(&keys.join("demo-reviewer.pub"), &pub_pem)?;
    // The approval signs the verdict stage 4 wrote (`wafer approve --report`): not vetted again.
    // Approving a saved verdict joins two floor-4/floor-3 libraries (vetter reads and checks the
    // verdict against the policy, trust checks it is about these bytes and signs), so that
    // composition lives in the command, and the demo runs the command's own `run_approve`.
    let approve: super::trustcmd::ApproveArgs = parse_args(&os(&[
        &fixed,
        &"--key",
        &key_path,
        &"--policy",
        &policy,
        &"--report",
        &reports.join("vet-fixed.json"),
        &"--expires",
        &"30d",
    ]))?;
    super::trustcmd::run_approve(approve, &quiet).context("approving the fixed wafer")?;
    let tdir = dir.join("trust");
    write(&tdir.join("reviewers/demo-reviewer.pub"), &pub_pem)?;
    write(
        &tdir.join("trust.toml"),
        "# The demo site's trust store (keys/README.md): one reviewer, whose approval suffices.\n\
         format = 1\nmax_approval_age_days = 90\n\n[reviewers]\nthreshold = 1\nkeys = [\"reviewers/demo-reviewer.pub\"]\n",
    )?;
    let store = trust::store::TrustStore::load(&tdir)
        .with_context(|| format!("loading trust store {}", tdir.display()))?;
    let verified = verify(&fixed, &store);
    let report = match &verified {
        Ok(v) => v.report(),
        Err(r) => r,
    };
    let approvals: Vec<String> = std::fs::read_dir(fixed.join("attestations"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default();
    stage(5, format!(
        "generated reviewer key {} (id {}), approved the fixed wafer ({}), wrote trust store {}; verify: {}",
        key_path.display(),
        &key.public().keyid()[..16],
        approvals.join(", "),
        tdir.display(),
        if report.passed() { "ACCEPTED" } else { "REFUSED" }
    ));
    for c in &report.checks {
        println!(
            "      {} {}: {}",
            if c.passed { "PASS" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    if !report.passed() {
        bail!("the approved wafer did not verify against the demo trust store");
    }

    // 6. tampered copy
    let tampered = wdir.join("squid-fixed-tampered");
    copy_dir(&fixed, &tampered)?;
    let zst = tampered.join("disk.img.zst");
    let len = std::fs::metadata(&zst)
        .with_context(|| format!("reading {}", zst.display()))?
        .len();
    let at = len / 2;
    {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&zst)
            .with_context(|| format!("opening {}", zst.display()))?;
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut b)?;
        b[0] ^= 0x10;
        f.seek(SeekFrom::Start(at))?;
        f.write_all(&b)?;
    }
    let bad = match verify(&tampered, &store) {
        Ok(v) => v.report().clone(),
        Err(r) => r,
    };
    let why: Vec<String> = bad
        .failures()
        .iter()
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    stage(
        6,
        format!(
            "flipped bit 4 of byte {at} in {}; verify: {}",
            zst.display(),
            if bad.passed() { "ACCEPTED" } else { "REFUSED" }
        ),
    );
    for w in &why {
        println!("      FAIL {w}");
    }
    if bad.passed() {
        bail!("the tampered copy verified: verification is broken");
    }

    // 7. deploy (dry run) into the demo site
    let sdir = dir.join("site");
    let site_file = sdir.join("site.toml");
    let trust_toml = tdir
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    write(
        &site_file,
        SITE.replace("\"TRUST_STORE\"", &format!("\"{trust_toml}\"")),
    )?;
    let site = deploy::site::Site::from_file(&site_file)
        .with_context(|| format!("loading site configuration {}", site_file.display()))?;
    // The wafer verified in stage 5 is the one deployed: deploy takes only a Verified<Bundle>.
    let Ok(verified) = verified else {
        bail!(
            "{} refused by verification before deployment",
            fixed.display()
        );
    };
    let opts = deploy::deployment::DeployOptions {
        name: None,
        slot: None,
        user_data: None,
        ttl: Some(7 * 86_400),
        now: super::vet::now().max(0) as u64,
    };
    // The demo site is made up: never ask the host's Xen about it (an `xl` without a running
    // hypervisor fails `xl list`), only print what would run.
    let hv = deploy::deployment::XlTool {
        xl: None,
        dry_run: true,
    };
    let rec = deploy::deployment::deploy(&site, &verified, &opts, &hv)
        .with_context(|| format!("deploying {}", fixed.display()))?;
    let launch = match &rec.launch {
        Some(deploy::deployment::Launch::Printed(c)) | Some(deploy::deployment::Launch::Ran(c)) => {
            c.clone()
        }
        None => String::new(),
    };
    let leases: Vec<String> = rec
        .leases
        .iter()
        .map(|l| format!("{} {} mac {}", l.network, l.ip, l.mac))
        .collect();
    stage(7, format!(
        "deployed (dry run) as {} in slot {} of {} with lease {}; files in {}, leases in {}; would run: {}",
        rec.name,
        rec.slot,
        site_file.display(),
        leases.join(", "),
        sdir.join("storage").display(),
        sdir.join("state").display(),
        launch
    ));
    for f in &rec.files {
        println!("      wrote {}", f.display());
    }
    show_outputs(&rec.files)?;

    write(
        &dir.join("README.txt"),
        format!(
            "wafer demo output (see `wafer demo --help`):\n  recipe/   the recipe folder, demo base images, demo policy\n  \
             wafers/   squid-planted, squid-fixed (approved), squid-fixed-tampered\n  reports/  vet verdicts: vet-planted.json/.html, vet-fixed.json/.html (open the .html in a browser)\n  \
             keys/     the demo reviewer's key pair\n  trust/    the demo trust store\n  site/     site.toml, storage/ (disk, kernel, CIDATA, xl.cfg), state/ (leases, records)\n\n\
             Try: wafer inspect {0}\n     wafer diff {0} {1}\n     wafer verify {1} --trust {2}\n     wafer ps --site {3}\n",
            planted.display(),
            fixed.display(),
            tdir.display(),
            site_file.display()
        ),
    )?;
    println!(
        "done in {:.1}s; everything is under {}; open the HTML reports {} and {} in a browser",
        t0.elapsed().as_secs_f64(),
        dir.display(),
        reports.join("vet-planted.html").display(),
        reports.join("vet-fixed.html").display()
    );
    Ok(())
}

/// Prints the xl.cfg and the files of the CIDATA disk (read back with a FAT reader).
fn show_outputs(files: &[PathBuf]) -> Result<()> {
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".cfg") {
            println!("\n---- {} ----", f.display());
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            print!("{text}");
        }
    }
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.to_ascii_lowercase().contains("cidata") {
            continue;
        }
        let img = std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?;
        let fs = fatfs::FileSystem::new(img, fatfs::FsOptions::new())
            .with_context(|| format!("reading the FAT filesystem {}", f.display()))?;
        let label = fs.volume_label();
        println!("\n---- {} (FAT, label {}) ----", f.display(), label.trim());
        let root = fs.root_dir();
        let mut names: Vec<String> = root
            .iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.is_file())
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            let mut file = root
                .open_file(&n)
                .with_context(|| format!("{}: {n}", f.display()))?;
            let mut data = Vec::new();
            (&mut file)
                .take(1 << 20)
                .read_to_end(&mut data)
                .with_context(|| format!("{}: reading {n}", f.display()))?;
            println!("== {n} ({} bytes)", data.len());
            let text = String::from_utf8_lossy(&data);
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
    }
    Ok(())
}
