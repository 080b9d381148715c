//! `wafer approve` (a reviewer's signed approval of a vetted bundle) and `wafer verify` (a bundle
//! checked against the site trust store).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde_json::json;
use sha2::{Digest, Sha256};
use trust::digest::{digest_seekable, DigestOptions};
use trust::store::TrustStore;
use trust::verify::{
    approval_statement, sign_statement, verify, ApprovalRequest, Report, Streamed,
};

use super::build::load_private_key;
use super::vet::{now, VetArgs};
use super::Ui;
use vetter::policy::ImageIdentity;

/// Largest wafer.json or attestation read.
pub const MAX_JSON: u64 = 16 << 20;
/// Most attestations read from a bundle.
pub const MAX_ATTESTATIONS: usize = 256;

fn read_capped(path: &Path) -> Result<Vec<u8>> {
    let md = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if md.len() > MAX_JSON {
        bail!(
            "{}: {} bytes, larger than the {} accepted",
            path.display(),
            md.len(),
            MAX_JSON
        );
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// A bundle's verification: the report, and the exact manifest bytes it was run over.
pub struct BundleCheck {
    /// Every check.
    pub report: Report,
    /// The wafer.json bytes verified (parse these, never the file again).
    pub manifest_bytes: Vec<u8>,
}

/// Verifies the bundle in `dir`: reads wafer.json and attestations once, streams disk.img.zst
/// (dm-verity root with the manifest's salt, sha256 of the compressed file, optionally the
/// raw sha256; frames decompressed in parallel), then checks everything against `store`.
pub fn verify_bundle(
    dir: &Path,
    store: &TrustStore,
    sha256: bool,
    threads: usize,
) -> Result<BundleCheck> {
    let manifest_bytes = read_capped(&dir.join("wafer.json"))?;
    let mut attestations = Vec::new();
    let adir = dir.join("attestations");
    match std::fs::read_dir(&adir) {
        Ok(rd) => {
            let mut paths = Vec::new();
            for e in rd {
                let e = e.with_context(|| format!("listing {}", adir.display()))?;
                let p = e.path();
                if p.extension().is_some_and(|x| x == "json") {
                    paths.push(p);
                }
                if paths.len() > MAX_ATTESTATIONS {
                    bail!(
                        "{}: more than {MAX_ATTESTATIONS} attestations",
                        adir.display()
                    );
                }
            }
            paths.sort();
            for p in paths {
                let label = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                attestations.push((label, read_capped(&p)?));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("listing {}", adir.display())),
    }
    // The salt is read before the signatures are checked; changing it changes the manifest's
    // digest, which every approval binds, so a forged salt cannot pass.
    let salt = serde_json::from_slice::<trust::verify::Manifest>(&manifest_bytes)
        .ok()
        .and_then(|m| hex::decode(m.image.verity.salt).ok());
    let zst = dir.join("disk.img.zst");
    let streamed = match salt {
        None => Streamed {
            error: Some("wafer.json has no valid image.verity.salt".into()),
            ..Default::default()
        },
        Some(salt) => match std::fs::File::open(&zst) {
            Err(e) => Streamed {
                error: Some(format!("{}: {e}", zst.display())),
                ..Default::default()
            },
            Ok(f) => {
                let opts = DigestOptions {
                    salt,
                    sha256,
                    compressed_sha256: sha256,
                    threads,
                };
                match digest_seekable(std::io::BufReader::with_capacity(1 << 20, f), &opts) {
                    Ok(d) => Streamed::from(&d),
                    Err(e) => Streamed {
                        error: Some(format!("{}: {e}", zst.display())),
                        ..Default::default()
                    },
                }
            }
        },
    };
    let report = verify(&manifest_bytes, &attestations, store, now(), &streamed);
    Ok(BundleCheck {
        report,
        manifest_bytes,
    })
}

/// Loads the trust store in `dir`.
pub fn load_store(dir: &Path) -> Result<TrustStore> {
    TrustStore::load(dir).with_context(|| format!("loading trust store {}", dir.display()))
}

/// Check a bundle against the site trust store.
#[derive(Args, Debug)]
#[command(
    long_about = "Check a wafer bundle against the site trust store (keys/README.md): decompress and hash\n\
        disk.img.zst in one parallel pass (the dm-verity root and size of the image, which cover every\n\
        byte that will be booted; with --sha256 also the plain sha256 of the raw image and of the\n\
        compressed file), then every attestation's signature, the reviewer threshold,\n\
        roles, expiry, revocation and rollback. Prints each check, PASS or FAIL with the reason, and\n\
        exits 1 on any failure.\n\n\
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
    let check = verify_bundle(&a.bundle, &store, a.sha256, a.threads)?;
    sp.finish_and_clear();
    let r = &check.report;
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
                    c.name,
                    c.detail
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
        wafer approve out/squid --key alice.key --policy policy.toml --report verdict.json --expires 30d"
)]
pub struct ApproveArgs {
    /// The bundle directory.
    pub bundle: PathBuf,
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
    /// The policy's URI in the approval (default: file:// of its absolute path).
    #[arg(long)]
    pub policy_uri: Option<String>,
    /// The verifier id URI in the approval.
    #[arg(long, default_value = "https://wafer.invalid/site-reviewer")]
    pub verifier_id: String,
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

/// Runs `wafer approve`.
pub fn run_approve(a: ApproveArgs, ui: &Ui) -> Result<()> {
    let key = load_private_key(&a.key)?;
    let mpath = a.bundle.join("wafer.json");
    let manifest_bytes = read_capped(&mpath)?;
    let m: trust::verify::Manifest = serde_json::from_slice(&manifest_bytes)
        .with_context(|| format!("parsing {}", mpath.display()))?;
    let policy = vetter::policy::Policy::load(&a.policy)
        .with_context(|| format!("loading policy {}", a.policy.display()))?;

    // The verdict: given, or computed now.
    let (report_bytes, vetted) = match &a.report {
        Some(p) => {
            let bytes = read_capped(p)?;
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing verdict {}", p.display()))?;
            let vetted: Option<ImageIdentity> = match v.get("image") {
                None => None,
                Some(x) => Some(
                    serde_json::from_value(x.clone())
                        .with_context(|| format!("{}: field \"image\"", p.display()))?,
                ),
            };
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
            if field("schema") != vetter::policy::VERDICT_SCHEMA {
                bail!(
                    "{}: not a wafer verdict (schema {:?})",
                    p.display(),
                    field("schema")
                );
            }
            if field("wafer") != m.name
                || v.get("vo")
                    .and_then(|x| x.as_str())
                    .is_some_and(|vo| vo != m.vo)
            {
                bail!(
                    "{}: the verdict is for wafer {} (VO {}), not this bundle's {} (VO {})",
                    p.display(),
                    field("wafer"),
                    field("vo"),
                    m.name,
                    m.vo
                );
            }
            if field("policy_digest") != policy.digest {
                bail!(
                    "{}: the verdict was made with policy digest {}, not {}'s {}",
                    p.display(),
                    field("policy_digest"),
                    a.policy.display(),
                    policy.digest
                );
            }
            if field("outcome") != "pass" {
                bail!(
                    "{}: the verdict is {:?}; only a passing wafer is approved",
                    p.display(),
                    field("outcome")
                );
            }
            (bytes, vetted)
        }
        None => {
            let va = VetArgs {
                image: a.bundle.clone(),
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
                    a.bundle.display(),
                    a.policy.display()
                );
            }
            (vetter::report::json(&v).into_bytes(), v.image.clone())
        }
    };
    // The verdict must be about these bytes: the wafer.json being signed and the disk.img.zst
    // hashed below, exactly as `wafer vet` read them.
    let which = match &a.report {
        Some(p) => p.display().to_string(),
        None => "the verdict".into(),
    };
    let revet = format!(
        "vet this bundle again (wafer vet {} --policy {} --report FILE)",
        a.bundle.display(),
        a.policy.display()
    );
    let (vetted_manifest, vetted_zst) = match vetted {
        Some(ImageIdentity {
            manifest_sha256: Some(m),
            compressed_sha256: Some(z),
            ..
        }) => (m, z),
        Some(id) => bail!(
            "{which}: the verdict (of a {} image) does not record the sha256 of the wafer.json and \
             disk.img.zst it judged; {revet}",
            id.kind
        ),
        None => bail!(
            "{which}: the verdict does not record which bytes it judged (no \"image\" digests; made by \
             an older wafer?); {revet}"
        ),
    };
    let manifest_sha = hex::encode(Sha256::digest(&manifest_bytes));
    if !vetted_manifest.eq_ignore_ascii_case(&manifest_sha) {
        bail!(
            "{which}: the verdict judged a wafer.json with sha256 {vetted_manifest}, but {} has sha256 \
             {manifest_sha}: it is about other bytes; {revet}",
            mpath.display()
        );
    }

    // The bundle must be what its manifest says before anyone signs the manifest.
    let salt = hex::decode(&m.image.verity.salt)
        .map_err(|e| anyhow!("{}: image.verity.salt: {e}", mpath.display()))?;
    let zst = a.bundle.join("disk.img.zst");
    let f = std::fs::File::open(&zst).with_context(|| format!("opening {}", zst.display()))?;
    let d = digest_seekable(
        std::io::BufReader::with_capacity(1 << 20, f),
        &DigestOptions {
            salt,
            sha256: false,
            compressed_sha256: true,
            threads: 0,
        },
    )
    .with_context(|| format!("hashing {}", zst.display()))?;
    let root = d.verity.root_hex();
    if root != m.image.verity.root {
        bail!(
            "{}: dm-verity root {root} differs from wafer.json's {}: the bundle is damaged",
            zst.display(),
            m.image.verity.root
        );
    }
    let csha = d.compressed_sha256.map(hex::encode).unwrap_or_default();
    if csha != m.compressed.sha256 {
        bail!(
            "{}: sha256 {csha} differs from wafer.json's {}: the bundle is damaged",
            zst.display(),
            m.compressed.sha256
        );
    }
    if !vetted_zst.eq_ignore_ascii_case(&csha) {
        bail!(
            "{which}: the verdict judged a disk.img.zst with sha256 {vetted_zst}, but {} has sha256 \
             {csha}: it is about other bytes; {revet}",
            zst.display()
        );
    }

    let policy_uri = match &a.policy_uri {
        Some(u) => u.clone(),
        None => {
            let abs = std::fs::canonicalize(&a.policy)
                .with_context(|| format!("resolving {}", a.policy.display()))?;
            format!("file://{}", abs.display())
        }
    };
    let t = now();
    let req = ApprovalRequest {
        manifest_bytes: &manifest_bytes,
        verifier_id: a.verifier_id.clone(),
        policy_uri,
        policy_sha256: policy.digest.clone(),
        report_sha256: hex::encode(Sha256::digest(&report_bytes)),
        time: t,
        expires: t + a.expires,
    };
    let st =
        approval_statement(&req).with_context(|| format!("approving {}", a.bundle.display()))?;
    let env = sign_statement(&st, &key);
    let dir = a.bundle.join("attestations");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let kid = key.public().keyid();
    let path = dir.join(format!("approval-{}.json", kid.get(..16).unwrap_or(&kid)));
    std::fs::write(&path, env).with_context(|| format!("writing {}", path.display()))?;
    if !ui.quiet {
        println!(
            "approved {} {} (VO {}) by key {kid}, valid until {}",
            m.name,
            m.version,
            m.vo,
            trust::time::format_rfc3339(t + a.expires)
        );
        println!("wrote {}", path.display());
    }
    Ok(())
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
