//! `wafer approve` (a reviewer's signed approval of a vetted bundle) and `wafer verify` (a bundle
//! checked against the site trust store).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use rootfs::escape::Escaped;
use rootfs::safe::Folder;
use serde_json::json;
use trust::approve::{ApproveInput, Candidate, Judged, Verdict};
use trust::store::TrustStore;
use trust::verify::Report;

use super::key::load_private_key;
use super::vet::{now, VetArgs};
use super::Ui;
use vetter::policy::ImageIdentity;

/// Largest wafer.json, attestation or verdict read.
pub const MAX_JSON: u64 = trust::verify::MAX_JSON;

/// Reads a file the user named (a verdict): a regular file, at most [`MAX_JSON`] bytes.
fn read_capped(path: &Path) -> Result<Vec<u8>> {
    let (dir, name) = match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(d), Some(n)) => (
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            },
            n,
        ),
        _ => bail!("{}: not a file name", path.display()),
    };
    let folder = Folder::open(dir).with_context(|| format!("reading {}", path.display()))?;
    folder
        .read_file(name, MAX_JSON)
        .with_context(|| format!("reading {}", path.display()))
}

/// [`trust::verify_dir`] at the current time, for `wafer deploy` and the demo (the checks and
/// their order are trust's: `keys/README.md`).
pub fn verify_bundle(
    dir: &Path,
    store: &TrustStore,
    sha256: bool,
    threads: usize,
) -> std::result::Result<trust::Verified<bundle::Bundle>, Report> {
    trust::verify_dir(
        dir,
        store,
        now(),
        &trust::verify::BundleOptions { sha256, threads },
    )
}

/// [`TrustStore::load`], with the store named in the error (for `verify`, `deploy`, the demo).
pub fn load_store(dir: &Path) -> Result<TrustStore> {
    TrustStore::load(dir).with_context(|| format!("loading trust store {}", dir.display()))
}

/// Check a bundle against the site trust store.
#[derive(Args, Debug)]
#[command(
    long_about = "Check a wafer bundle against the site trust store (keys/README.md). The cheap checks\n\
        come first: the manifest, every attestation's signature and subjects, roles, expiry, the\n\
        reviewer threshold, revocation, rollback, and the seek table's total size against the\n\
        manifest's image.size. Only when they all pass is disk.img.zst decompressed and hashed in one\n\
        parallel pass (the dm-verity root and size of the image, which cover every byte that will be\n\
        booted; with --sha256 also the plain sha256 of the raw image and of the compressed file).\n\
        Links in the bundle are refused, never followed; only regular files are opened. Prints each\n\
        check, PASS or FAIL with the reason (text from the bundle escaped), and exits 1 on any\n\
        failure.\n\n\
        Examples:\n  \
        wafer verify out/squid --trust /etc/wafer/trust\n  \
        wafer verify out/squid --trust /etc/wafer/trust --sha256 --json"
)]
pub struct VerifyArgs {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The trust store directory (trust.toml and public keys).
    #[arg(long, value_name = "DIR")]
    pub trust: PathBuf,
    /// Also compute and check the plain sha256 of the raw image and of disk.img.zst (slower: two
    /// sequential hashes on top of the parallel dm-verity pass).
    #[arg(long)]
    pub sha256: bool,
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// Runs `wafer verify`: exit 0 when every check passed, 1 otherwise.
pub fn run_verify(a: VerifyArgs, ui: &Ui) -> Result<u8> {
    let store = load_store(&a.trust)?;
    let sp = ui.spinner(&format!("verifying {}", a.bundle.display()));
    let opts = trust::verify::BundleOptions {
        sha256: a.sha256,
        threads: a.threads,
    };
    let check = trust::verify_dir(&a.bundle, &store, now(), &opts);
    sp.finish_and_clear();
    let r = match &check {
        Ok(v) => v.report(),
        Err(r) => r,
    };
    if a.json {
        let checks: Vec<_> = r
            .checks
            .iter()
            .map(|c| json!({"name": c.name, "passed": c.passed, "detail": c.detail}))
            .collect();
        println!(
            "{}",
            json!({"bundle": a.bundle, "passed": r.passed(), "checks": checks})
        );
    } else {
        print!("{r}");
        std::io::stdout().flush().ok();
    }
    if r.passed() {
        Ok(0)
    } else {
        if !a.json {
            for c in r.failures() {
                eprintln!(
                    "wafer: verify {}: {}: {}",
                    a.bundle.display(),
                    Escaped(&c.name),
                    Escaped(&c.detail)
                );
            }
        }
        Ok(1)
    }
}

/// Approve a vetted bundle: a signed SLSA verification summary.
#[derive(Args, Debug)]
#[command(
    long_about = "Approve a wafer bundle as the site's security reviewer. Vets the bundle against the\n\
        policy (or takes the passing verdict of `wafer vet --report FILE`, checked to be for this\n\
        wafer, VO and policy), refuses a failing verdict, checks the bundle's digests, and writes a\n\
        DSSE envelope of an in-toto Statement with the SLSA verification-summary predicate (policy\n\
        uri and digest, PASSED, report digest, expiry) into BUNDLE/attestations/.\n\n\
        Examples:\n  \
        wafer approve out/squid --key ~/.wafer/alice.key --policy /etc/wafer/policy.toml\n  \
        wafer vet out/squid --policy policy.toml --report verdict.json && \\\n    \
        wafer approve out/squid --key alice.key --policy policy.toml --report verdict.json --expires 30d\n  \
        wafer approve --push registry.example.org/cms/squid:1.0 --key alice.key --policy policy.toml --report verdict.json"
)]
pub struct ApproveArgs {
    /// The bundle directory (not with --push).
    #[arg(required_unless_present = "push")]
    pub bundle: Option<PathBuf>,
    /// The reviewer's private key.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// The site policy the bundle is judged by.
    #[arg(long, value_name = "POLICY")]
    pub policy: PathBuf,
    /// A passing verdict from `wafer vet --report` instead of vetting again.
    #[arg(long, value_name = "VERDICT.json")]
    pub report: Option<PathBuf>,
    /// How long the approval is valid: days (`90d`), hours (`12h`) or weeks (`4w`).
    #[arg(long, default_value = "90d", value_parser = parse_duration)]
    pub expires: i64,
    /// The policy's URI in the approval (default `wafer:policy:NAME`, NAME the policy's
    /// `[policy] name`; never a local path unless given here). Its sha256 is recorded either way.
    #[arg(long, value_name = "URI")]
    pub policy_uri: Option<String>,
    /// The verifier id URI in the approval: who approves, e.g. `https://grid.example.org/security`
    /// (default `wafer:reviewer:KEYID`, the reviewer key's id).
    #[arg(long, value_name = "URI")]
    pub verifier_id: Option<String>,
    /// Approve the wafer at REF in a registry or OCI layout instead of a bundle folder, without
    /// downloading its disk: needs --report (a passing verdict about exactly the wafer.json and
    /// disk REF holds); the approval is attached to it as a referrer.
    #[arg(
        long,
        value_name = "REF",
        conflicts_with = "bundle",
        requires = "report"
    )]
    pub push: Option<String>,
    #[command(flatten)]
    pub registry: super::push::RegistryArgs,
}

/// Parses `90d`, `12h`, `4w`, `3600s` into seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, e.g. 90d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use s, m, h, d or w)"
            ))
        }
    };
    if n <= 0 || n > 3650 * 86_400 / mult {
        return Err(format!("{s:?}: must be positive and at most ten years"));
    }
    Ok(n * mult)
}

/// Runs `wafer approve`: argument handling, the passphrase prompt, vetting (or reading the given
/// verdict and checking it against the policy), then [`trust::approve`] and the rendering.
pub fn run_approve(a: ApproveArgs, ui: &Ui) -> Result<()> {
    if let Some(r) = a.push.clone() {
        return run_approve_push(&a, &r, ui);
    }
    let Some(bundle) = a.bundle.clone() else {
        bail!("name a bundle directory, or --push REF");
    };
    let key = load_private_key(&a.key)?;
    // The bundle's cheap checks (manifest, a linked attestations/, the seek table) come first.
    let candidate = Candidate::open(&bundle)?;
    let m = candidate.manifest().clone();
    let policy = vetter::policy::Policy::load(&a.policy)
        .with_context(|| format!("loading policy {}", a.policy.display()))?;
    let policy_name = a.policy.display().to_string();

    // The verdict: given, or computed now.
    let verdict = match &a.report {
        Some(p) => {
            let bytes = read_capped(p)?;
            let label = p.display().to_string();
            let saved =
                vetter::policy::SavedVerdict::parse(&bytes, &label).map_err(|e| anyhow!("{e}"))?;
            let verdict = saved_verdict(label, &saved, bytes);
            candidate.check_verdict(&verdict, &policy_name, &policy.digest)?;
            let today = vetter::policy::date_string(now().div_euclid(86_400));
            if let Err(why) = saved.check_consistent(&policy, &today) {
                bail!(
                    "{}: the verdict is inconsistent: {why}; not approved (vet again: wafer vet {} --policy {} --report FILE)",
                    p.display(),
                    bundle.display(),
                    a.policy.display()
                );
            }
            verdict
        }
        None => {
            let va = VetArgs {
                image: bundle.clone(),
                policy: a.policy.clone(),
                fail_on: None,
                since: None,
                json: false,
                sarif: None,
                html: None,
                report: None,
                name: None,
                vo: None,
            };
            let (v, _) = super::vet::vet(&va, ui)?;
            if v.exit_code() != 0 {
                eprint!("{}", vetter::report::terminal(&v, false));
                let what = if v.outcome == vetter::policy::Outcome::CouldNotVet {
                    "could not be vetted (part of it could not be read) under policy"
                } else {
                    "fails policy"
                };
                bail!(
                    "{} {what} {}: not approved",
                    bundle.display(),
                    a.policy.display()
                );
            }
            Verdict {
                label: "the verdict".into(),
                bytes: vetter::report::json(&v).into_bytes(),
                outcome: "pass".into(),
                judged: v.image.clone().map(judged),
                ..Default::default()
            }
        }
    };

    // Who and what policy, as URIs; no local path unless asked for (the digest binds the policy).
    let uri_arg = |flag: &str, v: &Option<String>| -> Result<Option<String>> {
        match v {
            Some(u) if !trust::statement::is_uri(u) => bail!(
                "{flag} {}: not a URI (scheme:rest, no spaces), e.g. https://grid.example.org/security",
                Escaped(u)
            ),
            v => Ok(v.clone()),
        }
    };
    let policy_uri = uri_arg("--policy-uri", &a.policy_uri)?.unwrap_or_else(|| {
        trust::statement::default_policy_uri(&policy.file.policy.name, &policy.digest)
    });
    let input = ApproveInput {
        key: &key,
        policy: policy_name,
        policy_sha256: policy.digest.clone(),
        policy_uri,
        verifier_id: uri_arg("--verifier-id", &a.verifier_id)?,
        now: now(),
        valid_for: a.expires,
        threads: 0,
    };
    let done = candidate.approve(&verdict, &input).map_err(|e| {
        if e.is_stale_verdict() {
            anyhow!(
                "{e}; vet this bundle again (wafer vet {} --policy {} --report FILE)",
                bundle.display(),
                a.policy.display()
            )
        } else {
            anyhow::Error::new(e)
        }
    })?;
    if !ui.quiet {
        println!(
            "approved {} {} (VO {}) by key {}, valid until {}",
            Escaped(&m.name),
            Escaped(&m.version),
            Escaped(&m.vo),
            done.keyid,
            trust::time::format_rfc3339(done.expires)
        );
        println!("wrote {}", done.path.display());
    }
    Ok(())
}

/// `wafer approve --push REF`: the verdict of --report checked (passing, consistent with the
/// policy), then [`oci::approve::approve_remote`].
fn run_approve_push(a: &ApproveArgs, reference: &str, ui: &Ui) -> Result<()> {
    let r = super::push::parse_ref(reference)?;
    let Some(p) = &a.report else {
        bail!("--push needs --report VERDICT.json (from wafer vet --report)");
    };
    let key = load_private_key(&a.key)?;
    let policy = vetter::policy::Policy::load(&a.policy)
        .with_context(|| format!("loading policy {}", a.policy.display()))?;
    let bytes = read_capped(p)?;
    let label = p.display().to_string();
    let saved = vetter::policy::SavedVerdict::parse(&bytes, &label).map_err(|e| anyhow!("{e}"))?;
    let today = vetter::policy::date_string(now().div_euclid(86_400));
    if let Err(why) = saved.check_consistent(&policy, &today) {
        bail!(
            "{}: the verdict is inconsistent: {why}; not approved",
            p.display()
        );
    }
    let verdict = saved_verdict(label, &saved, bytes);
    let uri = |flag: &str, v: &Option<String>| -> Result<Option<String>> {
        match v {
            Some(u) if !trust::statement::is_uri(u) => {
                bail!("{flag} {}: not a URI (scheme:rest, no spaces)", Escaped(u))
            }
            v => Ok(v.clone()),
        }
    };
    let input = ApproveInput {
        key: &key,
        policy: a.policy.display().to_string(),
        policy_sha256: policy.digest.clone(),
        policy_uri: uri("--policy-uri", &a.policy_uri)?.unwrap_or_else(|| {
            trust::statement::default_policy_uri(&policy.file.policy.name, &policy.digest)
        }),
        verifier_id: uri("--verifier-id", &a.verifier_id)?,
        now: now(),
        valid_for: a.expires,
        threads: 0,
    };
    let mut rep = super::push::Reporter::new(ui, false);
    let done =
        oci::approve::approve_remote(&r, &a.registry.options(), &verdict, &input, &mut |e| {
            rep.event(e)
        })
        .with_context(|| format!("approving {}", Escaped(reference)))?;
    if !ui.quiet {
        let m = &done.manifest;
        println!(
            "approved {} {} (VO {}) by key {}, valid until {}",
            Escaped(&m.name),
            Escaped(&m.version),
            Escaped(&m.vo),
            done.keyid,
            trust::time::format_rfc3339(done.expires)
        );
        println!(
            "attached {} to {}@{} as referrer {}",
            done.name,
            Escaped(reference),
            done.subject,
            done.referrer
        );
    }
    Ok(())
}

/// The bytes a vetter verdict judged, as trust takes them.
/// What trust needs of a saved verdict (`wafer vet --report`), `bytes` being the file's.
fn saved_verdict(label: String, saved: &vetter::policy::SavedVerdict, bytes: Vec<u8>) -> Verdict {
    Verdict {
        label,
        outcome: saved.outcome.clone(),
        wafer: Some(saved.wafer.clone()),
        vo: saved.vo.clone(),
        policy_sha256: Some(saved.policy_digest.clone()),
        judged: saved.image.clone().map(judged),
        bytes,
    }
}

fn judged(id: ImageIdentity) -> Judged {
    Judged {
        kind: id.kind,
        manifest_sha256: id.manifest_sha256,
        compressed_sha256: id.compressed_sha256,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d"), Ok(90 * 86_400));
        assert_eq!(parse_duration("12h"), Ok(12 * 3600));
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400));
        assert!(parse_duration("0d").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_duration("").is_err());
    }
}
