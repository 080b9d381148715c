//! Evaluation of an inventory against a policy.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use globset::GlobMatcher;
use serde::Serialize;

use super::format::{
    self, Bind, ElfTarget, FileCheck, GuestType, Hardening, PrivilegeKind, Severity,
};
use super::{glob, waiver_day, Policy};
use crate::services::BindClass;
use crate::Inventory;

/// The version of the verdict's JSON layout.
pub const VERDICT_SCHEMA: &str = "wafer-verdict/1";

/// Who and when: the wafer being judged and the time of judgement.
#[derive(Clone, Debug)]
pub struct EvalContext<'a> {
    /// Now, seconds since the Unix epoch (UTC); waivers expire against it.
    pub now: i64,
    /// Wafer name (matched by rules' `wafers` globs).
    pub wafer: String,
    /// Virtual Organisation (matched by rules' `vos` globs; absent matches only rules without `vos`).
    pub vo: Option<String>,
    /// `--fail-on`: overrides the policy's threshold.
    pub fail_on: Option<Severity>,
    /// `--since OLD`: the previous version's inventory; findings are marked new or known.
    pub since: Option<&'a Inventory>,
}

impl<'a> EvalContext<'a> {
    /// A context for `wafer` at time `now` (seconds since the epoch).
    pub fn new(now: i64, wafer: impl Into<String>, vo: Option<String>) -> Self {
        EvalContext {
            now,
            wafer: wafer.into(),
            vo,
            fail_on: None,
            since: None,
        }
    }
}

/// Pass, fail, or could not vet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// No blocking finding.
    #[serde(rename = "pass")]
    Pass,
    /// At least one blocking finding.
    #[serde(rename = "fail")]
    Fail,
    /// Part of the image could not be read (a damaged package database, filesystem damage the
    /// reader skipped) and the policy does not waive it: the vetter would see less than is there.
    #[serde(rename = "could-not-vet")]
    CouldNotVet,
}

impl Outcome {
    /// `pass`, `fail` or `could-not-vet`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::CouldNotVet => "could-not-vet",
        }
    }
}

/// A part of the image the vetter could not read completely.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unvetted {
    /// `package-database` or `filesystem`.
    pub source: String,
    /// The damaged file: a path in the image (`/var/lib/rpm/Packages`) or, for filesystem
    /// damage, the image file read.
    pub path: String,
    /// What is wrong.
    pub reason: String,
    /// The policy's `[waive] damaged` accepts it: vetting went on with what could be read.
    pub waived: bool,
}

/// One piece of evidence for a finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Evidence {
    /// A file, optionally a line of it.
    File {
        /// Path in the image.
        path: String,
        /// 1-based line.
        #[serde(skip_serializing_if = "Option::is_none")]
        line: Option<u32>,
        /// The line's text or a description (mode, owner, kind).
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// An installed package.
    Package {
        /// Name.
        name: String,
        /// Installed version (`[E:]V-R` for rpm, the dpkg version).
        version: String,
        /// `rpm` or `dpkg`.
        manager: String,
    },
    /// A listening port and where it is set.
    Port {
        /// `tcp` / `udp`.
        protocol: String,
        /// Port number.
        port: u16,
        /// Bind address (absent: all).
        #[serde(skip_serializing_if = "Option::is_none")]
        address: Option<String>,
        /// Address class.
        bind: BindClass,
        /// The service.
        service: String,
        /// The daemon's default (no setting found).
        default: bool,
        /// File that sets it.
        file: String,
        /// Line in it.
        #[serde(skip_serializing_if = "Option::is_none")]
        line: Option<u32>,
        /// The line's text.
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// Anything else.
    Note {
        /// The fact.
        text: String,
    },
}

impl Evidence {
    /// The file and line it points at, if any.
    pub fn location(&self) -> Option<(&str, Option<u32>)> {
        match self {
            Evidence::File { path, line, .. } => Some((path, *line)),
            Evidence::Port { file, line, .. } => Some((file, *line)),
            _ => None,
        }
    }

    /// One line of text.
    pub fn describe(&self) -> String {
        let at = |f: &str, l: &Option<u32>| match l {
            Some(l) => format!("{f}:{l}"),
            None => f.to_string(),
        };
        match self {
            Evidence::File { path, line, text } => match text {
                Some(t) => format!("{}: {t}", at(path, line)),
                None => at(path, line),
            },
            Evidence::Package {
                name,
                version,
                manager,
            } => format!("package {name} {version} ({manager})"),
            Evidence::Port {
                protocol,
                port,
                address,
                service,
                default,
                file,
                line,
                text,
                ..
            } => {
                let addr = address.as_deref().unwrap_or("*");
                let how = if *default { " (daemon default)" } else { "" };
                let txt = text
                    .as_deref()
                    .map(|t| format!(": {t}"))
                    .unwrap_or_default();
                format!(
                    "{service} listens on {protocol}/{port} at {addr}{how}, set in {}{txt}",
                    at(file, line)
                )
            }
            Evidence::Note { text } => text.clone(),
        }
    }
}

/// How a waiver bears on a finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum WaiverState {
    /// A valid waiver applies: the finding does not count.
    Applied {
        /// Why.
        justification: String,
        /// Last valid day.
        expires: String,
        /// Who.
        #[serde(skip_serializing_if = "Option::is_none")]
        approved_by: Option<String>,
    },
    /// A waiver matched but has expired: the finding counts again.
    Expired {
        /// Why it had been granted.
        justification: String,
        /// The day it expired after.
        expired: String,
    },
}

/// One finding.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// Rule id.
    pub rule: String,
    /// Rule kind (`ports`, `privileged`, `packages`, `files`, `elf`, `boot`).
    pub kind: String,
    /// Severity.
    pub severity: Severity,
    /// What it is about: a path, a package, `tcp/23`, an account, `service:NAME`, `arch`, `kernel`.
    pub subject: String,
    /// What is wrong.
    pub message: String,
    /// Why we say so.
    pub evidence: Vec<Evidence>,
    /// What to do, in one line.
    pub remedy: String,
    /// A waiver that matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiver: Option<WaiverState>,
    /// Counts towards failing (not waived, severity at or above the threshold).
    pub blocking: bool,
    /// With `--since`: true when the old wafer did not have it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<bool>,
}

impl Finding {
    /// Whether a valid waiver covers it.
    pub fn waived(&self) -> bool {
        matches!(self.waiver, Some(WaiverState::Applied { .. }))
    }
}

/// The result of one rule.
#[derive(Clone, Debug, Serialize)]
pub struct RuleResult {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Severity.
    pub severity: Severity,
    /// What it checks.
    pub description: String,
    /// The one-line remedy of its findings.
    pub remedy: String,
    /// `pass`, `fail` (a blocking finding), `warn` (findings below the threshold), `waived` (all
    /// findings waived) or `not-applicable` (scope excludes this wafer).
    pub status: String,
    /// Number of findings (waived included).
    pub findings: usize,
}

/// Counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    /// All findings.
    pub findings: usize,
    /// Findings not covered by a valid waiver, by severity.
    pub critical: usize,
    /// High.
    pub high: usize,
    /// Medium.
    pub medium: usize,
    /// Low.
    pub low: usize,
    /// Info.
    pub info: usize,
    /// Findings that fail the wafer.
    pub blocking: usize,
    /// Findings covered by a valid waiver.
    pub waived: usize,
    /// Findings whose waiver has expired.
    pub expired_waivers: usize,
    /// With `--since`: new findings.
    pub new: usize,
    /// With `--since`: findings the old wafer had too.
    pub known: usize,
}

impl Totals {
    /// Active findings of a severity.
    pub fn of(&self, s: Severity) -> usize {
        match s {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Info => self.info,
        }
    }
}

/// A waiver of the policy and what it did.
#[derive(Clone, Debug, Serialize)]
pub struct WaiverUse {
    /// Rule id.
    pub rule: String,
    /// Subject glob.
    pub subject: String,
    /// Justification.
    pub justification: String,
    /// Last valid day.
    pub expires: String,
    /// `active` or `expired`.
    pub state: String,
    /// Findings it matched.
    pub matched: usize,
}

/// The verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// [`VERDICT_SCHEMA`].
    pub schema: String,
    /// Policy name.
    pub policy: String,
    /// Policy digest (sha256 of the policy and its advisory files).
    pub policy_digest: String,
    /// Wafer name.
    pub wafer: String,
    /// VO.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vo: Option<String>,
    /// Wafer version (from the bundle's manifest; set by the caller that read it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wafer_version: Option<String>,
    /// The program that judged: `wafer VERSION`.
    pub tool: String,
    /// Evaluation time, seconds since the epoch.
    pub evaluated_at: i64,
    /// Evaluation day, `YYYY-MM-DD`.
    pub date: String,
    /// Threshold in force.
    pub fail_on: Severity,
    /// Pass or fail.
    pub outcome: Outcome,
    /// Counts.
    pub totals: Totals,
    /// Per-rule results, in policy order.
    pub rules: Vec<RuleResult>,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// Every waiver of the policy and whether it applied.
    pub waivers: Vec<WaiverUse>,
    /// Whether findings were compared with an older wafer.
    pub since: bool,
    /// What could not be read; any entry not waived makes the outcome `could-not-vet`.
    pub unvetted: Vec<Unvetted>,
    /// Rule kinds the policy checked (at least one rule of the kind applied to this wafer).
    pub checked: Vec<String>,
    /// Rule kinds not checked (the policy has no rule of the kind, or none applied).
    pub not_checked: Vec<String>,
    /// Which bytes were vetted (set by the caller that read them; `wafer approve --report`
    /// refuses a verdict whose identity is not the bundle being approved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageIdentity>,
}

/// The identity of the vetted image's bytes: for a wafer bundle, the sha256 of the exact
/// `wafer.json` and `disk.img.zst` that were read (docs/bundle.md; the manifest digest is the
/// subject every approval signs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageIdentity {
    /// What was vetted: `bundle`, `ext`, `tar`, `directory`, `disk (gpt partition 2)`.
    pub kind: String,
    /// sha256 (lowercase hex) of the bundle's `wafer.json` bytes as read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// sha256 (lowercase hex) of the bundle's `disk.img.zst` as read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_sha256: Option<String>,
    /// The raw image's sha256 that the manifest claims (`image.sha256`), for the reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_sha256: Option<String>,
}

impl Verdict {
    /// Exit status: 0 pass, 1 fail, 2 could not vet.
    pub fn exit_code(&self) -> i32 {
        match self.outcome {
            Outcome::Pass => 0,
            Outcome::Fail => 1,
            Outcome::CouldNotVet => 2,
        }
    }
}

fn matchers(patterns: &[String]) -> Vec<GlobMatcher> {
    patterns.iter().filter_map(|p| glob(p).ok()).collect()
}

fn any_match(m: &[GlobMatcher], s: &str) -> bool {
    m.iter().any(|g| g.is_match(s))
}

fn in_scope(wafers: &Option<Vec<String>>, vos: &Option<Vec<String>>, ctx: &EvalContext) -> bool {
    let w = wafers
        .as_ref()
        .is_none_or(|w| any_match(&matchers(w), &ctx.wafer));
    let v = vos.as_ref().is_none_or(|v| {
        ctx.vo
            .as_deref()
            .is_some_and(|vo| any_match(&matchers(v), vo))
    });
    w && v
}

/// Findings of one rule before waivers.
struct Draft {
    severity: Severity,
    subject: String,
    message: String,
    evidence: Vec<Evidence>,
}

fn draft(
    severity: Severity,
    subject: impl Into<String>,
    message: impl Into<String>,
    evidence: Vec<Evidence>,
) -> Draft {
    Draft {
        severity,
        subject: subject.into(),
        message: message.into(),
        evidence,
    }
}

fn file_ev(path: &str, text: Option<String>) -> Evidence {
    Evidence::File {
        path: path.to_string(),
        line: None,
        text,
    }
}

fn prov_ev(p: &crate::Provenance) -> Evidence {
    Evidence::File {
        path: p.file.clone(),
        line: p.line,
        text: p.text.clone(),
    }
}

struct Index<'a> {
    by_path: HashMap<&'a str, &'a crate::files::FileEntry>,
    mismatches: HashMap<&'a str, &'a crate::packages::Mismatch>,
}

impl<'a> Index<'a> {
    fn new(inv: &'a Inventory) -> Self {
        let mut by_path = HashMap::new();
        for e in &inv.files.entries {
            for p in &e.paths {
                by_path.insert(p.as_str(), e);
            }
        }
        let mismatches = inv
            .packages
            .mismatches
            .iter()
            .map(|m| (m.path.as_str(), m))
            .collect();
        Index {
            by_path,
            mismatches,
        }
    }

    fn describe(&self, path: &str) -> Option<String> {
        let e = self.by_path.get(path)?;
        let owner = e.user.clone().unwrap_or_else(|| e.uid.to_string());
        let group = e.group.clone().unwrap_or_else(|| e.gid.to_string());
        Some(format!("mode {} owner {owner}:{group}", e.mode))
    }
}

fn pkg_version(p: &crate::packages::PackageInfo) -> String {
    let mut v = String::new();
    if let Some(e) = p.epoch {
        v.push_str(&format!("{e}:"));
    }
    v.push_str(&p.version);
    if let Some(r) = &p.release {
        v.push('-');
        v.push_str(r);
    }
    v
}

fn pkg_ev(p: &crate::packages::PackageInfo) -> Evidence {
    Evidence::Package {
        name: p.name.clone(),
        version: pkg_version(p),
        manager: p.manager.clone(),
    }
}

/// Compare an installed package's version with a required one using its manager's algorithm.
/// `Err` when a dpkg version does not parse.
pub fn compare_installed_version(
    p: &crate::packages::PackageInfo,
    required: &str,
) -> Result<Ordering, String> {
    if p.manager == "dpkg" {
        let a = pkgdb::version::DpkgVersion::parse(&p.version)
            .map_err(|e| format!("installed version {:?}: {e}", p.version))?;
        let b = pkgdb::version::DpkgVersion::parse(required)
            .map_err(|e| format!("version {required:?}: {e}"))?;
        Ok(a.compare(&b))
    } else {
        let a = pkgdb::version::Evr::new(p.epoch, &p.version, p.release.as_deref().unwrap_or(""));
        let a = if p.release.is_none() {
            pkgdb::version::Evr { release: None, ..a }
        } else {
            a
        };
        Ok(a.compare_dep(&pkgdb::version::Evr::parse(required)))
    }
}

fn bind_allowed(allowed: Bind, actual: BindClass) -> bool {
    match allowed {
        Bind::Any => true,
        Bind::Private => matches!(actual, BindClass::Private | BindClass::Loopback),
        Bind::Loopback => actual == BindClass::Loopback,
    }
}

fn ports(inv: &Inventory, r: &format::PortsRule) -> Vec<Draft> {
    let mut out = Vec::new();
    let allow: Vec<(&format::AllowedPort, Option<GlobMatcher>)> = r
        .allow
        .iter()
        .map(|a| (a, a.service.as_deref().and_then(|s| glob(s).ok())))
        .collect();
    let mut seen = BTreeSet::new();
    for s in inv.services.list.iter().filter(|s| s.enabled) {
        let enabled: Vec<Evidence> = s.enabled_by.iter().map(prov_ev).collect();
        if s.ports.is_empty() {
            // xinetd's own listeners are the services it serves (kind `xinetd`), judged one by one.
            let super_server = matches!(s.name.trim_end_matches(".service"), "xinetd" | "inetd");
            if s.port_status == "unknown" && !r.ignore_unknown && !super_server {
                let mut ev = enabled.clone();
                ev.extend(s.notes.iter().map(|n| Evidence::Note { text: n.clone() }));
                out.push(draft(
                    r.severity,
                    format!("service:{}", s.name),
                    format!("service {} ({}) is enabled and the vetter cannot tell which ports it opens", s.name, s.kind),
                    ev,
                ));
            }
            continue;
        }
        for p in &s.ports {
            let ok = allow.iter().any(|(a, svc)| {
                a.protocol.as_str() == p.protocol
                    && match (a.port, a.range) {
                        (Some(n), _) => n == p.port,
                        (None, Some([lo, hi])) => (lo..=hi).contains(&p.port),
                        _ => false,
                    }
                    && bind_allowed(a.bind, p.bind)
                    && svc.as_ref().is_none_or(|g| g.is_match(&s.name))
            });
            if ok
                || !seen.insert((
                    p.protocol.clone(),
                    p.port,
                    p.address.clone(),
                    s.name.clone(),
                ))
            {
                continue;
            }
            let addr = p.address.clone().unwrap_or_else(|| "all addresses".into());
            let mut ev = vec![Evidence::Port {
                protocol: p.protocol.clone(),
                port: p.port,
                address: p.address.clone(),
                bind: p.bind,
                service: s.name.clone(),
                default: p.default,
                file: p.source.file.clone(),
                line: p.source.line,
                text: p.source.text.clone(),
            }];
            ev.extend(enabled.iter().cloned());
            out.push(draft(
                r.severity,
                format!("{}/{}", p.protocol, p.port),
                format!(
                    "{} ({}) listens on {}/{} at {addr}, which the policy does not allow",
                    s.name, s.kind, p.protocol, p.port
                ),
                ev,
            ));
        }
    }
    out
}

/// Owning package names of a setuid/setgid/capability path (or service daemon), as the
/// inventory records them; `None` when no package lists it.
fn owners_of<'a>(inv: &'a Inventory, path: &str) -> Option<&'a [String]> {
    inv.packages
        .owners
        .get(path)
        .map(Vec::as_slice)
        .filter(|o| !o.is_empty())
}

fn privileged(inv: &Inventory, idx: &Index, r: &format::PrivilegedRule) -> Vec<Draft> {
    let mut out = Vec::new();
    let allow: Vec<(&format::AllowedPrivileged, Option<GlobMatcher>)> =
        r.allow.iter().map(|a| (a, glob(&a.path).ok())).collect();
    let mut list: Vec<(PrivilegeKind, &str, Option<&crate::files::CapFile>)> = Vec::new();
    for k in &r.check {
        match k {
            PrivilegeKind::Setuid => {
                list.extend(inv.files.setuid.iter().map(|p| (*k, p.as_str(), None)))
            }
            PrivilegeKind::Setgid => {
                list.extend(inv.files.setgid.iter().map(|p| (*k, p.as_str(), None)))
            }
            PrivilegeKind::Capabilities => list.extend(
                inv.files
                    .capabilities
                    .iter()
                    .map(|c| (*k, c.path.as_str(), Some(c))),
            ),
        }
    }
    for (kind, path, cap) in list {
        let mut ev = vec![file_ev(path, idx.describe(path))];
        if let Some(c) = cap {
            let t = c
                .caps
                .as_ref()
                .map(|c| c.text.clone())
                .or_else(|| c.error.clone())
                .unwrap_or_default();
            ev.push(Evidence::Note {
                text: format!("security.capability: {t}"),
            });
        }
        let sha = idx.by_path.get(path).and_then(|e| e.sha256.clone());
        if let Some(h) = &sha {
            ev.push(Evidence::Note {
                text: format!("sha256 {h}"),
            });
        }
        let entries: Vec<&format::AllowedPrivileged> = allow
            .iter()
            .filter(|(_, g)| g.as_ref().is_some_and(|g| g.is_match(path)))
            .map(|(a, _)| *a)
            .collect();
        if entries.is_empty() {
            out.push(draft(
                r.severity,
                path,
                format!(
                    "{path} is {} and not on the policy's allowlist",
                    kind.as_str()
                ),
                ev,
            ));
            continue;
        }
        // Allowed if any matching entry's pins all hold; otherwise report the first entry's failure.
        let mut first_failure: Option<String> = None;
        let mut allowed = false;
        for a in entries {
            let mut fail = None;
            if let Some(want) = &a.sha256 {
                match &sha {
                    Some(h) if h.eq_ignore_ascii_case(want) => {}
                    Some(h) => fail = Some(format!("its sha256 {h} is not the pinned {want}")),
                    None => {
                        fail = Some(
                            "its sha256 is unknown (not hashed), so the pin cannot be checked"
                                .into(),
                        )
                    }
                }
            }
            if let (None, Some(want)) = (&fail, &a.capabilities) {
                let have = cap.and_then(|c| c.caps.as_ref()).map(|c| c.text.clone());
                if have.as_deref() != Some(want.as_str()) {
                    fail = Some(format!(
                        "its capabilities {} are not the allowed {want}",
                        have.unwrap_or_else(|| "(none)".into())
                    ));
                }
            }
            if let (None, Some(pkg)) = (&fail, &a.package) {
                fail = shipped_by_check(inv, idx, path, pkg);
            }
            match fail {
                None => {
                    allowed = true;
                    break;
                }
                Some(f) => {
                    first_failure.get_or_insert(f);
                }
            }
        }
        if !allowed {
            let why = first_failure.unwrap_or_default();
            out.push(draft(
                r.severity,
                path,
                format!("{path} is {} and allowlisted, but {why}", kind.as_str()),
                ev,
            ));
        }
    }
    out
}

/// Why `path` is not "as shipped by `pkg`": package X must own it (by the inventory's
/// `packages.owners`) and offline `rpm -V` / `dpkg --verify` must show no difference.
fn shipped_by_check(inv: &Inventory, idx: &Index, path: &str, pkg: &str) -> Option<String> {
    let pk = &inv.packages;
    if pk.format.is_none() {
        return Some(format!(
            "no package database, so \"as shipped by {pkg}\" cannot be checked"
        ));
    }
    if let Some(e) = &pk.error {
        return Some(format!(
            "the package database could not be read ({e}), so \"as shipped by {pkg}\" cannot be checked"
        ));
    }
    let Some(owners) = owners_of(inv, path) else {
        let unlisted = pk
            .list
            .iter()
            .filter(|p| p.file_list_error.is_some())
            .count();
        return Some(if unlisted > 0 {
            format!(
                "no package lists it (expected {pkg}; the file lists of {unlisted} package(s) could not be read)"
            )
        } else {
            format!("no package owns it (expected {pkg})")
        });
    };
    if !owners.iter().any(|o| o == pkg) {
        return Some(format!("it is shipped by {}, not {pkg}", owners.join(", ")));
    }
    if let Some(m) = idx.mismatches.get(path) {
        return Some(format!(
            "it differs from what {} shipped ({})",
            m.package,
            m.differs.join(", ")
        ));
    }
    None
}

fn packages(inv: &Inventory, policy: &Policy, i: usize, r: &format::PackagesRule) -> Vec<Draft> {
    let mut out = Vec::new();
    let pk = &inv.packages;
    let has_checks = !r.minimum.is_empty() || !r.banned.is_empty() || r.advisories.is_some();
    if pk.format.is_none() || pk.error.is_some() {
        if has_checks {
            let why = pk
                .error
                .clone()
                .unwrap_or_else(|| "no package database found".into());
            out.push(draft(
                r.severity,
                "package-database",
                format!("packages cannot be checked: {why}"),
                vec![Evidence::Note { text: why }],
            ));
        }
        return out;
    }
    let mut by_name: HashMap<&str, Vec<&crate::packages::PackageInfo>> = HashMap::new();
    for p in &pk.list {
        by_name.entry(p.name.as_str()).or_default().push(p);
    }
    let db_ev = |p: &crate::packages::PackageInfo| {
        vec![
            pkg_ev(p),
            file_ev(
                pk.database.as_deref().unwrap_or(""),
                Some(format!("{} database", pk.format.as_deref().unwrap_or(""))),
            ),
        ]
    };
    for m in policy.minimums.get(i).into_iter().flatten() {
        for p in by_name.get(m.name.as_str()).into_iter().flatten() {
            match compare_installed_version(p, &m.version) {
                Ok(o) => {
                    let ok = if m.op == ">" {
                        o == Ordering::Greater
                    } else {
                        o != Ordering::Less
                    };
                    if !ok {
                        out.push(draft(
                            r.severity,
                            &p.name,
                            format!(
                                "{} {} is older than the required {} {} {}",
                                p.name,
                                pkg_version(p),
                                m.name,
                                m.op,
                                m.version
                            ),
                            db_ev(p),
                        ));
                    }
                }
                Err(e) => out.push(draft(
                    r.severity,
                    &p.name,
                    format!("{}: cannot compare versions: {e}", p.name),
                    db_ev(p),
                )),
            }
        }
    }
    let banned = matchers(&r.banned);
    for p in &pk.list {
        if any_match(&banned, &p.name) {
            out.push(draft(
                r.severity,
                &p.name,
                format!(
                    "{} {} is installed and banned by the policy",
                    p.name,
                    pkg_version(p)
                ),
                db_ev(p),
            ));
        }
    }
    for a in policy.advisories.get(i).into_iter().flatten() {
        for p in by_name.get(a.package.as_str()).into_iter().flatten() {
            if a.manager.as_deref().is_some_and(|m| m != p.manager) {
                continue;
            }
            let sev = a.severity.unwrap_or(r.severity);
            let subject = format!("{}:{}", p.name, a.id);
            match compare_installed_version(p, &a.fixed) {
                Ok(Ordering::Less) => {
                    let title = a
                        .title
                        .as_deref()
                        .map(|t| format!(" ({t})"))
                        .unwrap_or_default();
                    out.push(draft(
                        sev,
                        subject,
                        format!(
                            "{}{title}: {} {} is affected, fixed in {}",
                            a.id,
                            p.name,
                            pkg_version(p),
                            a.fixed
                        ),
                        db_ev(p),
                    ));
                }
                Ok(_) => {}
                Err(e) => out.push(draft(
                    sev,
                    subject,
                    format!("{}: cannot compare {} versions: {e}", a.id, p.name),
                    db_ev(p),
                )),
            }
        }
    }
    out
}

fn files(inv: &Inventory, idx: &Index, r: &format::FilesRule) -> Vec<Draft> {
    let allow = matchers(&r.allow);
    let ok = |s: &str| !any_match(&allow, s) && !r.allow.iter().any(|a| a == s);
    let mut out = Vec::new();
    let sev = r.severity;
    let acc = &inv.accounts;
    let passwd_ev = |name: &str| -> Vec<Evidence> {
        acc.users
            .iter()
            .filter(|u| u.name == name)
            .map(|u| Evidence::File {
                path: "/etc/passwd".into(),
                line: Some(u.line),
                text: Some(format!(
                    "{}:x:{}:{}:...:{}:{}",
                    u.name, u.uid, u.gid, u.home, u.shell
                )),
            })
            .collect()
    };
    // Without a database read in full, these checks cannot run: one finding says so.
    let db_problem = match (&inv.packages.format, &inv.packages.error) {
        (None, _) => Some("no package database".to_string()),
        (Some(_), Some(e)) => Some(format!("the package database could not be read ({e})")),
        _ => None,
    };
    let no_db = |what: &str| {
        let why = db_problem.clone().unwrap_or_default();
        draft(
            sev,
            "package-database",
            format!("{what} cannot be checked: {why}"),
            vec![Evidence::Note { text: why }],
        )
    };
    match r.check {
        FileCheck::WorldWritable => {
            for p in inv
                .files
                .world_writable
                .iter()
                .filter(|p| ok(p) && !standard_device(idx, p))
            {
                out.push(draft(
                    sev,
                    p,
                    format!("{p} is world-writable"),
                    vec![file_ev(p, idx.describe(p))],
                ));
            }
            for p in inv
                .files
                .world_writable_dirs_without_sticky
                .iter()
                .filter(|p| ok(p))
            {
                out.push(draft(
                    sev,
                    p,
                    format!("{p} is a world-writable directory without the sticky bit"),
                    vec![file_ev(p, idx.describe(p))],
                ));
            }
        }
        FileCheck::HostPrivateKeys => {
            let mut seen = BTreeSet::new();
            for p in acc.ssh_host_keys.iter().filter(|p| ok(p)) {
                if seen.insert(p.clone()) {
                    out.push(draft(
                        sev,
                        p,
                        format!("ssh host private key {p} is left in the image"),
                        vec![file_ev(p, Some("ssh host private key".into()))],
                    ));
                }
            }
            for c in inv.credentials.iter().filter(|c| ok(&c.path)) {
                if !seen.insert(c.path.clone()) {
                    continue;
                }
                let mut ev = vec![Evidence::File {
                    path: c.path.clone(),
                    line: c.line,
                    text: Some(c.kind.clone()),
                }];
                // A key inside a file a package ships unmodified is the package's (a test or
                // example key every installation has): reported with the package, at low
                // severity. A modified packaged file or a stray file keeps the rule's severity.
                let shipped = owners_of(inv, &c.path)
                    .filter(|_| !idx.mismatches.contains_key(c.path.as_str()));
                match shipped {
                    Some(owners) => {
                        for o in owners {
                            if let Some(p) = inv.packages.list.iter().find(|p| &p.name == o) {
                                ev.push(pkg_ev(p));
                            }
                        }
                        out.push(draft(
                            sev.min(Severity::Low),
                            &c.path,
                            format!(
                                "{} holds a private key or credential ({}) shipped by package {}",
                                c.path,
                                c.kind,
                                owners.join(", ")
                            ),
                            ev,
                        ));
                    }
                    None => out.push(draft(
                        sev,
                        &c.path,
                        format!("{} holds a private key or credential ({})", c.path, c.kind),
                        ev,
                    )),
                }
            }
        }
        FileCheck::RootAuthorizedKeys => {
            let roots: BTreeSet<&str> = acc
                .users
                .iter()
                .filter(|u| u.uid == 0)
                .map(|u| u.name.as_str())
                .chain(["root"])
                .collect();
            for k in acc
                .authorized_keys
                .iter()
                .filter(|k| roots.contains(k.user.as_str()) && ok(&k.path))
            {
                out.push(draft(
                    sev,
                    &k.path,
                    format!("{} lets {} key(s) log in as {}", k.path, k.keys, k.user),
                    vec![file_ev(
                        &k.path,
                        Some(format!("{} key(s): {}", k.keys, k.types.join(", "))),
                    )],
                ));
            }
        }
        FileCheck::EmptyPasswords => {
            for n in acc.empty_password.iter().filter(|n| ok(n)) {
                let mut ev = passwd_ev(n);
                // The line of /etc/shadow when the empty field is there (a region in SARIF).
                // (The empty field is in /etc/passwd itself when it holds no `x`.)
                let user = acc.users.iter().find(|u| u.name == *n);
                let (path, line) = match user {
                    Some(u) if u.shadow_line.is_some() => ("/etc/shadow", u.shadow_line),
                    Some(u) => ("/etc/passwd", Some(u.line)),
                    None => ("/etc/shadow", None),
                };
                ev.push(Evidence::File {
                    path: path.into(),
                    line,
                    text: Some(format!("{n} has an empty password field")),
                });
                out.push(draft(
                    sev,
                    n,
                    format!("account {n} has an empty password and can log in without one"),
                    ev,
                ));
            }
        }
        FileCheck::ExtraUid0 => {
            for n in acc.uid0.iter().filter(|n| n.as_str() != "root" && ok(n)) {
                out.push(draft(
                    sev,
                    n,
                    format!("account {n} has uid 0"),
                    passwd_ev(n),
                ));
            }
        }
        FileCheck::UnownedSystemFiles => {
            if db_problem.is_some() {
                out.push(no_db("unowned files"));
            }
            for p in inv.packages.unowned_system_files.iter().filter(|p| ok(p)) {
                out.push(draft(
                    sev,
                    p,
                    format!("{p} is in a system directory and no package owns it"),
                    vec![file_ev(p, idx.describe(p))],
                ));
            }
        }
        FileCheck::ModifiedPackagedFiles => {
            if db_problem.is_some() {
                out.push(no_db("packaged files"));
            }
            for m in inv.packages.mismatches.iter().filter(|m| ok(&m.path)) {
                let cfg = if m.config { " (config file)" } else { "" };
                let mut ev = vec![file_ev(
                    &m.path,
                    Some(format!(
                        "differs from the package database: {}",
                        m.differs.join(", ")
                    )),
                )];
                let (name, ver) = split_label(inv, &m.package);
                ev.push(Evidence::Package {
                    name,
                    version: ver,
                    manager: inv
                        .packages
                        .list
                        .first()
                        .map(|p| p.manager.clone())
                        .unwrap_or_default(),
                });
                out.push(draft(
                    sev,
                    &m.path,
                    format!(
                        "{}{cfg} differs from what {} shipped: {}",
                        m.path,
                        m.package,
                        m.differs.join(", ")
                    ),
                    ev,
                ));
            }
        }
    }
    out
}

/// The character devices every Linux system has world-writable (devtmpfs, udev, debootstrap and
/// container runtimes create them 0666): `/dev/NAME` with exactly its standard device numbers
/// (Documentation/admin-guide/devices.txt). Any other world-writable device stays a finding.
fn standard_device(idx: &Index, path: &str) -> bool {
    const STANDARD: [(&str, u32, u32); 8] = [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
        ("/dev/console", 5, 1),
        ("/dev/ptmx", 5, 2),
    ];
    let Some(e) = idx.by_path.get(path) else {
        return false;
    };
    e.file_type == rootfs::FileType::CharDevice
        && e.paths.len() == 1
        && e.device.as_ref().is_some_and(|d| {
            STANDARD
                .iter()
                .any(|(p, ma, mi)| *p == path && d.major == *ma && d.minor == *mi)
        })
}

/// Split a mismatch's package label (rpm NEVRA or dpkg `name_version`) into name and version.
fn split_label(inv: &Inventory, label: &str) -> (String, String) {
    for p in &inv.packages.list {
        if let Some(rest) = label
            .strip_prefix(&format!("{}-", p.name))
            .or_else(|| label.strip_prefix(&format!("{}_", p.name)))
        {
            if rest.starts_with(|c: char| c.is_ascii_digit()) && label.contains(&p.version) {
                return (p.name.clone(), pkg_version(p));
            }
        }
    }
    (label.to_string(), String::new())
}

fn elf(inv: &Inventory, idx: &Index, r: &format::ElfRule) -> Vec<Draft> {
    let allow = matchers(&r.allow);
    let mut out = Vec::new();
    let networked: BTreeSet<&str> = inv
        .services
        .list
        .iter()
        .filter(|s| s.enabled && s.port_status != "none")
        .map(|s| s.name.as_str())
        .collect();
    for e in &inv.elf {
        let privileged = e
            .reasons
            .iter()
            .any(|x| x == "setuid" || x == "setgid" || x == "capabilities");
        let network = e.reasons.iter().any(|x| {
            x.strip_prefix("service:")
                .is_some_and(|n| networked.contains(n))
        });
        let targeted = (privileged && r.targets.contains(&ElfTarget::Privileged))
            || (network && r.targets.contains(&ElfTarget::Network));
        if !targeted || any_match(&allow, &e.path) {
            continue;
        }
        let why = e.reasons.join(", ");
        let info = match (&e.info, &e.error) {
            (Some(i), _) => i,
            (None, Some(err)) if err == "not an ELF file" => continue,
            // A daemon named by a service but absent from the image cannot run: nothing to harden.
            (None, Some(_)) if !idx.by_path.contains_key(e.path.as_str()) => continue,
            (None, err) => {
                let err = err.clone().unwrap_or_default();
                out.push(draft(
                    r.severity,
                    &e.path,
                    format!("{} ({why}): hardening cannot be checked: {err}", e.path),
                    vec![file_ev(&e.path, Some(err.clone()))],
                ));
                continue;
            }
        };
        let fail = match r.require {
            Hardening::Pie => match info.pie {
                crate::elf::Pie::Yes | crate::elf::Pie::Dso => None,
                _ => Some(format!(
                    "is not position-independent (ELF type {})",
                    info.e_type
                )),
            },
            Hardening::FullRelro => match info.relro {
                crate::elf::Relro::Full => None,
                crate::elf::Relro::Partial => {
                    Some("has only partial RELRO (no immediate binding)".to_string())
                }
                crate::elf::Relro::None => Some("has no RELRO".to_string()),
            },
            Hardening::Nx => (!info.nx)
                .then(|| "has an executable stack (no PT_GNU_STACK or PF_X set)".to_string()),
        };
        if let Some(f) = fail {
            out.push(draft(
                r.severity,
                &e.path,
                format!("{} ({why}) {f}", e.path),
                vec![file_ev(
                    &e.path,
                    Some(format!(
                        "{} {}, pie {:?}, relro {:?}, nx {}",
                        info.machine,
                        info.e_type,
                        info.pie,
                        info.relro,
                        if info.nx { "yes" } else { "no" }
                    )),
                )],
            ));
        }
    }
    out
}

fn boot(inv: &Inventory, r: &format::BootRule) -> Vec<Draft> {
    let mut out = Vec::new();
    let sys = &inv.system;
    if let Some(gt) = r.guest_type {
        if sys.kernels.is_empty() {
            out.push(draft(
                r.severity,
                "kernel",
                "no kernel in /boot: the wafer cannot boot",
                vec![file_ev("/boot", Some("no vmlinuz-*".into()))],
            ));
        } else {
            let good = sys.kernels.iter().any(|k| match gt {
                GuestType::Pv => k.xen_pv == "yes",
                GuestType::Pvh => k.xen_pvh == "yes",
                GuestType::Hvm => true,
            });
            if !good {
                let ev = sys
                    .kernels
                    .iter()
                    .map(|k| {
                        file_ev(
                            &k.path,
                            Some(format!(
                                "Xen PV {}, PVH {}; {}",
                                k.xen_pv,
                                k.xen_pvh,
                                if k.xen_evidence.is_empty() {
                                    "no evidence".into()
                                } else {
                                    k.xen_evidence.join("; ")
                                }
                            )),
                        )
                    })
                    .collect();
                out.push(draft(
                    r.severity,
                    "kernel",
                    format!(
                        "no kernel in /boot is known to boot as a Xen {} guest",
                        gt.as_str().to_uppercase()
                    ),
                    ev,
                ));
            }
        }
    }
    if let Some(archs) = &r.arch {
        match &sys.arch {
            Some(a) if archs.iter().any(|x| x == a) => {}
            Some(a) => out.push(draft(
                r.severity,
                "arch",
                format!("architecture {a} is not one of {}", archs.join(", ")),
                vec![file_ev(
                    sys.arch_source.as_deref().unwrap_or(""),
                    Some(format!("ELF machine {a}")),
                )],
            )),
            None => out.push(draft(
                r.severity,
                "arch",
                "the image's architecture could not be determined",
                vec![Evidence::Note {
                    text: "no ELF binary found in the usual places".into(),
                }],
            )),
        }
    }
    out
}

fn default_remedy(kind: &str, detail: &str) -> String {
    match (kind, detail) {
        ("ports", _) => "Disable the service or make it listen only where the policy allows (or ask the site to allow the port).".into(),
        ("privileged", _) => "Remove the setuid/setgid bit or capability (chmod u-s,g-s / setcap -r), or restore the packaged file.".into(),
        ("packages", _) => "Update the package to a fixed version, or remove it.".into(),
        ("files", "world-writable") => "Remove world-write permission (chmod o-w) or set the sticky bit on directories.".into(),
        ("files", "host-private-keys") => "Purge host keys and credentials from the image; they are generated or provisioned at boot.".into(),
        ("files", "root-authorized-keys") => "Remove root's authorized_keys; give administrators named accounts.".into(),
        ("files", "empty-passwords") => "Lock the account (passwd -l) or set a password hash.".into(),
        ("files", "extra-uid0") => "Give the account its own uid or remove it.".into(),
        ("files", "unowned-system-files") => "Install the file from a package, or move it out of system directories.".into(),
        ("files", "modified-packaged-files") => "Reinstall the package or list the changed config file in the rule's allow list.".into(),
        ("elf", _) => "Rebuild the binary with -fPIE -pie -Wl,-z,relro,-z,now (non-executable stack) or use the distribution's hardened build.".into(),
        ("boot", _) => "Install a kernel that supports the site's guest type and architecture.".into(),
        _ => "Fix the finding or request a waiver.".into(),
    }
}

struct RuleRun {
    id: String,
    kind: &'static str,
    severity: Severity,
    description: String,
    remedy: String,
    applies: bool,
    drafts: Vec<Draft>,
}

fn run_rules(inv: &Inventory, policy: &Policy, ctx: &EvalContext) -> Vec<RuleRun> {
    let idx = Index::new(inv);
    let infos = policy.rules();
    let mut runs = Vec::new();
    let mut k = 0usize;
    let mut push = |kind: &'static str,
                    applies: bool,
                    remedy: Option<&String>,
                    detail: &str,
                    drafts: Vec<Draft>| {
        let info = infos.get(k);
        k += 1;
        if let Some(info) = info {
            runs.push(RuleRun {
                id: info.id.clone(),
                kind,
                severity: info.severity,
                description: info.description.clone(),
                remedy: remedy
                    .cloned()
                    .unwrap_or_else(|| default_remedy(kind, detail)),
                applies,
                drafts,
            });
        }
    };
    for r in &policy.file.ports {
        let a = in_scope(&r.wafers, &r.vos, ctx);
        push(
            "ports",
            a,
            r.remedy.as_ref(),
            "",
            if a { ports(inv, r) } else { Vec::new() },
        );
    }
    for r in &policy.file.privileged {
        let a = in_scope(&r.wafers, &r.vos, ctx);
        push(
            "privileged",
            a,
            r.remedy.as_ref(),
            "",
            if a {
                privileged(inv, &idx, r)
            } else {
                Vec::new()
            },
        );
    }
    for (i, r) in policy.file.packages.iter().enumerate() {
        let a = in_scope(&r.wafers, &r.vos, ctx);
        push(
            "packages",
            a,
            r.remedy.as_ref(),
            "",
            if a {
                packages(inv, policy, i, r)
            } else {
                Vec::new()
            },
        );
    }
    for r in &policy.file.files {
        let a = in_scope(&r.wafers, &r.vos, ctx);
        push(
            "files",
            a,
            r.remedy.as_ref(),
            r.check.as_str(),
            if a { files(inv, &idx, r) } else { Vec::new() },
        );
    }
    for r in &policy.file.elf {
        let a = in_scope(&r.wafers, &r.vos, ctx);
        push(
            "elf",
            a,
            r.remedy.as_ref(),
            r.require.as_str(),
            if a { elf(inv, &idx, r) } else { Vec::new() },
        );
    }
    for r in &policy.file.boot {
        let a = in_scope(&r.wafers, &r.vos, ctx);
        push(
            "boot",
            a,
            r.remedy.as_ref(),
            "",
            if a { boot(inv, r) } else { Vec::new() },
        );
    }
    runs
}

/// Judge `inv` against `policy` for the wafer and time in `ctx`.
pub fn evaluate(inv: &Inventory, policy: &Policy, ctx: &EvalContext) -> Verdict {
    let today = ctx.now.div_euclid(86_400);
    let fail_on = ctx.fail_on.unwrap_or_else(|| policy.fail_on());
    let known: Option<BTreeSet<(String, String)>> = ctx.since.map(|old| {
        run_rules(
            old,
            policy,
            &EvalContext {
                since: None,
                ..ctx.clone()
            },
        )
        .into_iter()
        .flat_map(|r| {
            let id = r.id.clone();
            r.drafts.into_iter().map(move |d| (id.clone(), d.subject))
        })
        .collect()
    });
    let waivers: Vec<(&format::Waiver, i64, Option<GlobMatcher>, bool)> = policy
        .file
        .waiver
        .iter()
        .map(|w| {
            let day = waiver_day(w).unwrap_or(i64::MIN);
            let scoped = w
                .wafers
                .as_ref()
                .is_none_or(|ws| any_match(&matchers(ws), &ctx.wafer));
            (w, day, glob(&w.subject).ok(), scoped)
        })
        .collect();
    let mut matched = vec![0usize; waivers.len()];
    let mut rules = Vec::new();
    let mut findings = Vec::new();
    let runs = run_rules(inv, policy, ctx);
    let checked: Vec<String> = super::RULE_KINDS
        .iter()
        .filter(|k| runs.iter().any(|r| r.kind == **k && r.applies))
        .map(|k| k.to_string())
        .collect();
    let not_checked: Vec<String> = super::RULE_KINDS
        .iter()
        .filter(|k| !checked.iter().any(|c| c == *k))
        .map(|k| k.to_string())
        .collect();
    let unvetted = unvetted(inv, policy);
    for run in runs {
        let n = run.drafts.len();
        let mut blocking_here = 0;
        let mut waived_here = 0;
        for d in run.drafts {
            let mut waiver = None;
            let mut expired = None;
            for (wi, (w, day, g, scoped)) in waivers.iter().enumerate() {
                if !*scoped || w.rule.get_ref() != &run.id {
                    continue;
                }
                let hit =
                    g.as_ref().is_some_and(|g| g.is_match(&d.subject)) || w.subject == d.subject;
                if !hit {
                    continue;
                }
                if let Some(c) = matched.get_mut(wi) {
                    *c += 1;
                }
                if today <= *day {
                    waiver.get_or_insert(WaiverState::Applied {
                        justification: w.justification.clone(),
                        expires: super::date_string(*day),
                        approved_by: w.approved_by.clone(),
                    });
                } else {
                    expired.get_or_insert(WaiverState::Expired {
                        justification: w.justification.clone(),
                        expired: super::date_string(*day),
                    });
                }
            }
            let waiver = waiver.or(expired);
            let waived = matches!(waiver, Some(WaiverState::Applied { .. }));
            let blocking = !waived && d.severity >= fail_on;
            blocking_here += usize::from(blocking);
            waived_here += usize::from(waived);
            let new = known
                .as_ref()
                .map(|k| !k.contains(&(run.id.clone(), d.subject.clone())));
            findings.push(Finding {
                rule: run.id.clone(),
                kind: run.kind.to_string(),
                severity: d.severity,
                subject: d.subject,
                message: d.message,
                evidence: d.evidence,
                remedy: run.remedy.clone(),
                waiver,
                blocking,
                new,
            });
        }
        let status = if !run.applies {
            "not-applicable"
        } else if n == 0 {
            "pass"
        } else if blocking_here > 0 {
            "fail"
        } else if waived_here == n {
            "waived"
        } else {
            "warn"
        };
        rules.push(RuleResult {
            id: run.id,
            kind: run.kind.to_string(),
            severity: run.severity,
            description: run.description,
            remedy: run.remedy,
            status: status.into(),
            findings: n,
        });
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.rule.cmp(&b.rule))
            .then_with(|| a.subject.cmp(&b.subject))
    });
    let mut totals = Totals {
        findings: findings.len(),
        ..Default::default()
    };
    for f in &findings {
        if f.waived() {
            totals.waived += 1;
        } else {
            match f.severity {
                Severity::Critical => totals.critical += 1,
                Severity::High => totals.high += 1,
                Severity::Medium => totals.medium += 1,
                Severity::Low => totals.low += 1,
                Severity::Info => totals.info += 1,
            }
        }
        totals.blocking += usize::from(f.blocking);
        totals.expired_waivers +=
            usize::from(matches!(f.waiver, Some(WaiverState::Expired { .. })));
        match f.new {
            Some(true) => totals.new += 1,
            Some(false) => totals.known += 1,
            None => {}
        }
    }
    let waivers = waivers
        .iter()
        .zip(matched)
        .map(|((w, day, _, _), m)| WaiverUse {
            rule: w.rule.get_ref().clone(),
            subject: w.subject.clone(),
            justification: w.justification.clone(),
            expires: super::date_string(*day),
            state: if today <= *day {
                "active".into()
            } else {
                "expired".into()
            },
            matched: m,
        })
        .collect();
    Verdict {
        schema: VERDICT_SCHEMA.into(),
        policy: policy.file.policy.name.clone(),
        policy_digest: policy.digest.clone(),
        wafer: ctx.wafer.clone(),
        vo: ctx.vo.clone(),
        wafer_version: None,
        tool: format!("wafer {}", env!("CARGO_PKG_VERSION")),
        evaluated_at: ctx.now,
        date: super::date_string(today),
        fail_on,
        outcome: if unvetted.iter().any(|u| !u.waived) {
            Outcome::CouldNotVet
        } else if totals.blocking > 0 {
            Outcome::Fail
        } else {
            Outcome::Pass
        },
        totals,
        rules,
        findings,
        waivers,
        since: ctx.since.is_some(),
        unvetted,
        checked,
        not_checked,
        image: None,
    }
}

/// Whether a `[waive] damaged` entry covers `path` (or the source kind, e.g. `filesystem`):
/// the glob matches, or the entry names a directory above it.
fn damage_waived(policy: &Policy, source: &str, path: &str) -> bool {
    policy.file.waive.damaged.iter().any(|w| {
        let w = w.get_ref();
        let dir = w.trim_end_matches('/');
        w == source
            || w == path
            || glob(w).is_ok_and(|g| g.is_match(path))
            || (!dir.is_empty() && path.strip_prefix(dir).is_some_and(|r| r.starts_with('/')))
    })
}

/// Everything the vetter could not read: damaged package databases and filesystem damage the
/// image reader skipped, each marked waived or not.
fn unvetted(inv: &Inventory, policy: &Policy) -> Vec<Unvetted> {
    let mut out = Vec::new();
    for d in &inv.packages.damaged {
        let mut reason = format!("{} database: {}", d.format, d.reason);
        if d.records_read > 0 || d.records_unreadable.is_some() {
            reason.push_str(&format!(" ({} record(s) read", d.records_read));
            if let Some(n) = d.records_unreadable {
                reason.push_str(&format!(", {n} unreadable"));
            }
            reason.push(')');
        }
        out.push(Unvetted {
            source: "package-database".into(),
            waived: damage_waived(policy, "package-database", &d.path),
            path: d.path.clone(),
            reason,
        });
    }
    for d in &inv.reader_damage {
        out.push(Unvetted {
            source: "filesystem".into(),
            waived: damage_waived(policy, "filesystem", &d.path),
            path: d.path.clone(),
            reason: d.reason.clone(),
        });
    }
    out
}
