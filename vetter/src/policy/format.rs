//! The policy file's TOML layout (documented in `docs/policy.md`). Every table denies unknown
//! keys; fields that later checks may complain about keep their position ([`toml::Spanned`]).

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// How serious a finding is, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Minor.
    Low,
    /// Should be fixed.
    Medium,
    /// Must be fixed before deployment.
    High,
    /// Must never run.
    Critical,
}

impl Severity {
    /// All severities, most serious first.
    pub const ALL_DESC: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];

    /// The lowercase name used in the policy file and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown severity name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown severity {0:?} (expected info, low, medium, high or critical)")]
pub struct BadSeverity(pub String);

impl std::str::FromStr for Severity {
    type Err = BadSeverity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "info" | "informational" | "none" => Severity::Info,
            "low" => Severity::Low,
            "medium" | "moderate" | "important-low" => Severity::Medium,
            "high" | "important" => Severity::High,
            "critical" => Severity::Critical,
            _ => return Err(BadSeverity(s.to_string())),
        })
    }
}

/// The `[policy]` table.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Name of the policy (shown in reports).
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Findings at or above this severity fail the wafer (default `low`: every finding but `info`).
    #[serde(default)]
    pub fail_on: Option<Severity>,
    /// A policy without any rule is refused unless this is true (an empty policy passes
    /// everything, which is never what a site means by accident).
    #[serde(default)]
    pub allow_empty: bool,
}

/// `[waive]`: what the site accepts the vetter could not read. Without an entry here, any
/// damaged package database or filesystem damage the image reader skipped makes the outcome
/// "could not vet".
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Waive {
    /// Path globs of damaged sources accepted (`/var/lib/rpm`, `/var/lib/rpm/Packages`,
    /// `/var/lib/dpkg/status`; `filesystem` for damage the image reader skipped). A path also
    /// waives everything below it.
    #[serde(default)]
    pub damaged: Vec<Spanned<String>>,
}

/// Protocol of an allowed listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// Widest bind address an allowed listener may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bind {
    /// Any address (includes the narrower classes).
    Any,
    /// RFC 1918 / ULA / link-local addresses, or loopback.
    Private,
    /// Loopback only.
    Loopback,
}

/// One allowed listener of a `[[ports]]` rule.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedPort {
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// A single port.
    #[serde(default)]
    pub port: Option<u16>,
    /// An inclusive range `[first, last]`.
    #[serde(default)]
    pub range: Option<[u16; 2]>,
    /// Widest bind allowed.
    pub bind: Bind,
    /// Only for services whose name matches this glob.
    #[serde(default)]
    pub service: Option<String>,
}

/// `[[ports]]`: every listener of an enabled service not allowed here is a finding.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortsRule {
    /// Rule id (unique in the policy).
    pub id: Spanned<String>,
    /// Severity of its findings.
    pub severity: Severity,
    /// What the rule is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Override of the one-line remedy.
    #[serde(default)]
    pub remedy: Option<String>,
    /// Wafer name globs it applies to (absent: all).
    #[serde(default)]
    pub wafers: Option<Vec<String>>,
    /// VO globs it applies to (absent: all).
    #[serde(default)]
    pub vos: Option<Vec<String>>,
    /// Allowed listeners.
    #[serde(default)]
    pub allow: Vec<AllowedPort>,
    /// Enabled services whose ports the vetter cannot determine are not findings (default false).
    #[serde(default)]
    pub ignore_unknown: bool,
}

/// Which privilege bit a `[[privileged]]` rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrivilegeKind {
    /// Set-user-id regular files.
    Setuid,
    /// Set-group-id regular files.
    Setgid,
    /// Files with `security.capability`.
    Capabilities,
}

impl PrivilegeKind {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            PrivilegeKind::Setuid => "setuid",
            PrivilegeKind::Setgid => "setgid",
            PrivilegeKind::Capabilities => "capabilities",
        }
    }
}

fn all_privileges() -> Vec<PrivilegeKind> {
    vec![
        PrivilegeKind::Setuid,
        PrivilegeKind::Setgid,
        PrivilegeKind::Capabilities,
    ]
}

/// One allowed privileged file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedPrivileged {
    /// Path glob.
    pub path: String,
    /// Pin: the file's sha256 must be this.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Pin: the file must be as shipped by this package (owned by it, unmodified per offline rpm -V).
    #[serde(default)]
    pub package: Option<String>,
    /// Pin for capabilities: the `getcap`-style text must be this (`cap_net_raw=ep`).
    #[serde(default)]
    pub capabilities: Option<String>,
}

/// `[[privileged]]`: setuid/setgid/capability allowlist.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrivilegedRule {
    /// Rule id.
    pub id: Spanned<String>,
    /// Severity.
    pub severity: Severity,
    /// What the rule is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Override of the remedy.
    #[serde(default)]
    pub remedy: Option<String>,
    /// Wafer name globs.
    #[serde(default)]
    pub wafers: Option<Vec<String>>,
    /// VO globs.
    #[serde(default)]
    pub vos: Option<Vec<String>>,
    /// Which bits (default all three).
    #[serde(default = "all_privileges")]
    pub check: Vec<PrivilegeKind>,
    /// Allowed files.
    #[serde(default)]
    pub allow: Vec<AllowedPrivileged>,
}

/// Format of an imported advisory list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdvisoryFormat {
    /// CSV with a header line `package,fixed,id,severity` (more columns allowed).
    Csv,
    /// JSON array of objects `{package, fixed, id, severity}`.
    Json,
}

/// `[[packages]]`: minimum versions, banned packages, imported advisories.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackagesRule {
    /// Rule id.
    pub id: Spanned<String>,
    /// Severity (advisories carry their own).
    pub severity: Severity,
    /// What the rule is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Override of the remedy.
    #[serde(default)]
    pub remedy: Option<String>,
    /// Wafer name globs.
    #[serde(default)]
    pub wafers: Option<Vec<String>>,
    /// VO globs.
    #[serde(default)]
    pub vos: Option<Vec<String>>,
    /// `NAME >= VERSION` (or `>`), one a string.
    #[serde(default)]
    pub minimum: Vec<Spanned<String>>,
    /// Package name globs that must not be installed.
    #[serde(default)]
    pub banned: Vec<String>,
    /// Advisory list file, relative to the policy file.
    #[serde(default)]
    pub advisories: Option<Spanned<String>>,
    /// Its format (default: from the extension).
    #[serde(default)]
    pub advisories_format: Option<AdvisoryFormat>,
}

/// What a `[[files]]` rule checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileCheck {
    /// World-writable files and world-writable directories without the sticky bit.
    WorldWritable,
    /// ssh host private keys and other private keys or credentials left in the image.
    HostPrivateKeys,
    /// An authorized_keys file for root.
    RootAuthorizedKeys,
    /// Accounts with an empty password.
    EmptyPasswords,
    /// Accounts other than root with uid 0.
    ExtraUid0,
    /// Files in system directories that no package owns.
    UnownedSystemFiles,
    /// Packaged files that differ from the package database (offline rpm -V / dpkg --verify).
    ModifiedPackagedFiles,
}

impl FileCheck {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FileCheck::WorldWritable => "world-writable",
            FileCheck::HostPrivateKeys => "host-private-keys",
            FileCheck::RootAuthorizedKeys => "root-authorized-keys",
            FileCheck::EmptyPasswords => "empty-passwords",
            FileCheck::ExtraUid0 => "extra-uid0",
            FileCheck::UnownedSystemFiles => "unowned-system-files",
            FileCheck::ModifiedPackagedFiles => "modified-packaged-files",
        }
    }
}

/// `[[files]]`: one file/account check.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilesRule {
    /// Rule id.
    pub id: Spanned<String>,
    /// Severity.
    pub severity: Severity,
    /// What the rule is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Override of the remedy.
    #[serde(default)]
    pub remedy: Option<String>,
    /// Wafer name globs.
    #[serde(default)]
    pub wafers: Option<Vec<String>>,
    /// VO globs.
    #[serde(default)]
    pub vos: Option<Vec<String>>,
    /// The check.
    pub check: FileCheck,
    /// Subjects (path globs, or account names) that are not findings.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// A hardening property an `[[elf]]` rule requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hardening {
    /// Position-independent executable.
    Pie,
    /// Full RELRO (`PT_GNU_RELRO` and immediate binding).
    FullRelro,
    /// Non-executable stack.
    Nx,
}

impl Hardening {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Hardening::Pie => "pie",
            Hardening::FullRelro => "full-relro",
            Hardening::Nx => "nx",
        }
    }
}

/// Which binaries an `[[elf]]` rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ElfTarget {
    /// setuid, setgid and capability binaries.
    Privileged,
    /// Daemons of enabled services that listen on the network.
    Network,
}

fn both_targets() -> Vec<ElfTarget> {
    vec![ElfTarget::Privileged, ElfTarget::Network]
}

/// `[[elf]]`: one hardening requirement.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ElfRule {
    /// Rule id.
    pub id: Spanned<String>,
    /// Severity.
    pub severity: Severity,
    /// What the rule is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Override of the remedy.
    #[serde(default)]
    pub remedy: Option<String>,
    /// Wafer name globs.
    #[serde(default)]
    pub wafers: Option<Vec<String>>,
    /// VO globs.
    #[serde(default)]
    pub vos: Option<Vec<String>>,
    /// The property.
    pub require: Hardening,
    /// Which binaries (default both).
    #[serde(default = "both_targets")]
    pub targets: Vec<ElfTarget>,
    /// Path globs exempt.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// The site's guest type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestType {
    /// Xen paravirtualised.
    Pv,
    /// Xen PVH.
    Pvh,
    /// Fully virtualised (any kernel boots).
    Hvm,
}

impl GuestType {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestType::Pv => "pv",
            GuestType::Pvh => "pvh",
            GuestType::Hvm => "hvm",
        }
    }
}

/// `[[boot]]`: the wafer must boot at this site.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BootRule {
    /// Rule id.
    pub id: Spanned<String>,
    /// Severity.
    pub severity: Severity,
    /// What the rule is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Override of the remedy.
    #[serde(default)]
    pub remedy: Option<String>,
    /// Wafer name globs.
    #[serde(default)]
    pub wafers: Option<Vec<String>>,
    /// VO globs.
    #[serde(default)]
    pub vos: Option<Vec<String>>,
    /// A kernel in /boot must support this guest type.
    #[serde(default)]
    pub guest_type: Option<GuestType>,
    /// The image's architecture must be one of these.
    #[serde(default)]
    pub arch: Option<Vec<String>>,
}

/// `[[waiver]]`: an accepted exception, until a date.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    /// The rule id it applies to.
    pub rule: Spanned<String>,
    /// Subject glob (path, package name, `tcp/23`, account name, ...).
    pub subject: String,
    /// Why it is accepted.
    pub justification: String,
    /// Last day (UTC) it applies: a TOML date `2025-06-30`.
    pub expires: Spanned<toml::value::Datetime>,
    /// Who accepted it.
    #[serde(default)]
    pub approved_by: Option<String>,
    /// Wafer name globs (absent: all).
    #[serde(default)]
    pub wafers: Option<Vec<String>>,
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// `[policy]`.
    #[serde(default)]
    pub policy: Header,
    /// `[[ports]]`.
    #[serde(default)]
    pub ports: Vec<PortsRule>,
    /// `[[privileged]]`.
    #[serde(default)]
    pub privileged: Vec<PrivilegedRule>,
    /// `[[packages]]`.
    #[serde(default)]
    pub packages: Vec<PackagesRule>,
    /// `[[files]]`.
    #[serde(default)]
    pub files: Vec<FilesRule>,
    /// `[[elf]]`.
    #[serde(default)]
    pub elf: Vec<ElfRule>,
    /// `[[boot]]`.
    #[serde(default)]
    pub boot: Vec<BootRule>,
    /// `[[waiver]]`.
    #[serde(default)]
    pub waiver: Vec<Waiver>,
    /// `[waive]`.
    #[serde(default)]
    pub waive: Waive,
}
