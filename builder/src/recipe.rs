//! The recipe: a TOML file saying which base to start from, which steps to apply, and how to
//! pack the result. See `docs/recipe.md` for the format with a full example.
//!
//! Parsing is strict: unknown keys are errors (with line and column, from the TOML parser), and
//! the fields later checks may complain about keep their position ([`toml::Spanned`]) so that
//! every semantic error can name the recipe line.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::BuildError;

/// A parsed recipe plus what is needed to point errors at its lines.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The recipe's file (for messages) and folder (relative `src` paths start there).
    pub file: PathBuf,
    /// The raw text (for line numbers).
    pub text: String,
    /// The parsed document.
    pub doc: RecipeDoc,
}

/// The TOML document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeDoc {
    /// `[wafer]`: identity.
    pub wafer: WaferSection,
    /// `[base]`: the pinned starting filesystem.
    pub base: BaseSection,
    /// `[vars]`: template variables.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// `[[step]]`: the ordered steps.
    #[serde(default)]
    pub step: Vec<Spanned<Step>>,
    /// `[requirements]`: what the wafer needs from a slot.
    #[serde(default)]
    pub requirements: Requirements,
    /// `[boot]`: kernel, initrd, command line.
    #[serde(default)]
    pub boot: BootSection,
    /// `[output]`: filesystem and compression.
    #[serde(default)]
    pub output: OutputSection,
}

/// `[wafer]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaferSection {
    /// Wafer name (`[a-z0-9][a-z0-9._-]*`).
    pub name: Spanned<String>,
    /// Version (free text without spaces, compared rpm-style by the trust store).
    pub version: Spanned<String>,
    /// Virtual Organisation owning the wafer.
    pub vo: Spanned<String>,
    /// Timestamp (seconds since 1970) for everything the build creates, when
    /// `SOURCE_DATE_EPOCH` is not set. Defaults to the base's newest modification time.
    pub epoch: Option<i64>,
    /// The signed provenance's `builder.id` (a URI naming the VO's build service, e.g.
    /// `https://cms.example.org/wafer-builder`) when `wafer build --sign` gives no
    /// `--builder-id`. Not part of the image; docs/attestation.md.
    #[serde(default)]
    pub builder_id: Option<Spanned<String>>,
}

/// Kind of base filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BaseKind {
    /// A tar archive (optionally gzip/bzip2/xz/zstd compressed).
    Tar,
    /// A raw ext2/3/4 image.
    Ext,
    /// Another wafer bundle (its `disk.img.zst`).
    Wafer,
    /// A host directory.
    Dir,
}

/// `[base]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseSection {
    /// What the path holds.
    pub kind: Spanned<BaseKind>,
    /// Path, relative to the recipe's folder and beneath it (no leading `/`, no `..`), unless
    /// the operator allows a host path with `--allow-host-path`.
    pub path: Spanned<String>,
    /// sha256 of the base (lowercase hex). For `dir` bases: the digest of its canonical listing
    /// (see docs/recipe.md); for `wafer` bases: the digest of its `disk.img.zst`.
    pub sha256: Spanned<String>,
}

/// Owner/group given by name (resolved in the image) or number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Principal {
    /// A numeric id.
    Id(u32),
    /// A name looked up in the image's /etc/passwd or /etc/group.
    Name(String),
}

/// One `[[step]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Step {
    /// Copy a file or directory from the recipe's folder.
    Copy {
        /// Source, relative to the recipe's folder.
        src: String,
        /// Destination in the image (absolute).
        dest: String,
        /// Owner (default root).
        owner: Option<Principal>,
        /// Group (default the owner's primary group, or root).
        group: Option<Principal>,
        /// Mode as an octal string, e.g. "0644" (default: the source's permission bits).
        mode: Option<String>,
    },
    /// Render a template with `{{var}}` substitution.
    Template {
        /// Source, relative to the recipe's folder.
        src: String,
        /// Destination in the image.
        dest: String,
        /// Owner.
        owner: Option<Principal>,
        /// Group.
        group: Option<Principal>,
        /// Mode (default "0644").
        mode: Option<String>,
    },
    /// Create a directory (and missing parents).
    Mkdir {
        /// Path in the image.
        path: String,
        /// Owner.
        owner: Option<Principal>,
        /// Group.
        group: Option<Principal>,
        /// Mode (default "0755").
        mode: Option<String>,
    },
    /// Create (or replace) a symbolic link.
    Symlink {
        /// Link path in the image.
        path: String,
        /// Target, stored as given.
        target: String,
    },
    /// Remove everything matching the globs.
    Remove {
        /// Globs matched against absolute image paths.
        paths: Vec<String>,
        /// Fail when a glob matches nothing (default false).
        #[serde(default)]
        must_exist: bool,
    },
    /// Change permission bits.
    Chmod {
        /// Globs.
        paths: Vec<String>,
        /// Octal mode.
        mode: String,
    },
    /// Change owner and/or group.
    Chown {
        /// Globs.
        paths: Vec<String>,
        /// Owner.
        owner: Option<Principal>,
        /// Group.
        group: Option<Principal>,
    },
    /// Install .rpm packages without running scriptlets.
    Rpm {
        /// Package files, relative to the recipe's folder.
        packages: Vec<String>,
        /// Let a package replace a newer installed version of itself (`rpm -U --oldpackage`).
        #[serde(default)]
        allow_downgrade: bool,
    },
    /// Add or modify user accounts.
    Users {
        /// Accounts.
        users: Vec<UserSpec>,
    },
    /// Add or modify groups.
    Groups {
        /// Groups.
        groups: Vec<GroupSpec>,
    },
    /// Enable, disable or mask services (SysV, xinetd, systemd).
    Services {
        /// Services to enable.
        #[serde(default)]
        enable: Vec<String>,
        /// Services to disable.
        #[serde(default)]
        disable: Vec<String>,
        /// systemd units to mask.
        #[serde(default)]
        mask: Vec<String>,
    },
    /// Remove host-specific state (virt-sysprep-like).
    Purge {
        /// Items to keep (see docs/recipe.md for the names).
        #[serde(default)]
        keep: Vec<String>,
        /// `false` turns the whole purge off (including the default one).
        #[serde(default = "yes")]
        enabled: bool,
    },
    /// Install the first-boot contextualization hook.
    Contextualize {
        /// `auto` (default): NoCloud for guests with cloud-init, the SysV hook otherwise;
        /// `sysv` or `cloud-init` force one.
        #[serde(default)]
        method: Option<String>,
    },
}

fn yes() -> bool {
    true
}

impl Step {
    /// The `type` name of the step.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Copy { .. } => "copy",
            Step::Template { .. } => "template",
            Step::Mkdir { .. } => "mkdir",
            Step::Symlink { .. } => "symlink",
            Step::Remove { .. } => "remove",
            Step::Chmod { .. } => "chmod",
            Step::Chown { .. } => "chown",
            Step::Rpm { .. } => "rpm",
            Step::Users { .. } => "users",
            Step::Groups { .. } => "groups",
            Step::Services { .. } => "services",
            Step::Purge { .. } => "purge",
            Step::Contextualize { .. } => "contextualize",
        }
    }
}

/// One account of a `users` step.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// Login name.
    pub name: String,
    /// uid (default: next free in the system range 100..=999, from the top down, as useradd -r).
    pub uid: Option<u32>,
    /// Primary group by name or gid (default: a group of the user's name, created if missing).
    pub group: Option<Principal>,
    /// Supplementary groups (must exist).
    #[serde(default)]
    pub groups: Vec<String>,
    /// GECOS field.
    pub comment: Option<String>,
    /// Home directory (default /home/NAME for uid >= 1000, / otherwise).
    pub home: Option<String>,
    /// Login shell (default /sbin/nologin).
    pub shell: Option<String>,
    /// Encrypted password for /etc/shadow (default "!!": locked).
    pub password: Option<String>,
    /// Create the home directory (default false).
    #[serde(default)]
    pub create_home: bool,
}

/// One group of a `groups` step.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Group name.
    pub name: String,
    /// gid (default: next free in the system range).
    pub gid: Option<u32>,
    /// Members (added to the existing ones).
    #[serde(default)]
    pub members: Vec<String>,
}

/// Xen guest type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestType {
    /// Paravirtualised.
    Pv,
    /// PVH.
    Pvh,
    /// Hardware virtualised.
    Hvm,
}

/// `[requirements]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// Guaranteed memory, a size such as "2G" or "512M".
    pub memory: Option<Spanned<String>>,
    /// Virtual CPUs.
    pub vcpus: Option<u32>,
    /// Disk the slot must offer, a size (default: the image size).
    pub disk: Option<Spanned<String>>,
    /// Guest type (default pv).
    pub guest_type: Option<GuestType>,
    /// Lowest Xen version, e.g. "3.1".
    pub xen_min: Option<String>,
    /// Declared architecture; checked against the one detected from the image.
    pub arch: Option<Spanned<String>>,
}

/// `[boot]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSection {
    /// Kernel path inside the image (default: newest /boot/vmlinuz-*).
    pub kernel: Option<Spanned<String>>,
    /// Initrd path inside the image (default: the initrd/initramfs of the chosen kernel).
    pub initrd: Option<Spanned<String>>,
    /// Kernel command line.
    pub cmdline: Option<String>,
}

/// `[output]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// ext profile: el4, el5, el6, el7, el8, el9, fedora (default el7).
    pub profile: Option<Spanned<String>>,
    /// Fixed image size, e.g. "2G".
    pub size: Option<Spanned<String>>,
    /// Free space on top of the contents: a size ("512M") or a percentage ("20%"). Default "25%".
    pub headroom: Option<Spanned<String>>,
    /// zstd level (1..=19, default 3).
    pub compression_level: Option<Spanned<i32>>,
    /// Decompressed size of each zstd frame, a multiple of 4096 (default "1M").
    pub frame_size: Option<Spanned<String>>,
}

/// Headroom: absolute bytes or a percentage of the content size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headroom {
    /// Extra bytes.
    Bytes(u64),
    /// Extra percent of the content size.
    Percent(u32),
}

/// Parse a size: a number with an optional binary unit (K, M, G, T; "KiB", "MB" etc. read
/// as powers of 1024). A bare number is bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits_end == 0 {
        return Err(format!(
            "'{s}' is not a size (expected e.g. \"512M\" or \"2G\")"
        ));
    }
    let n: u64 = t[..digits_end]
        .parse()
        .map_err(|_| format!("'{s}': number too large"))?;
    let unit = t[digits_end..].trim().to_ascii_uppercase();
    let mult: u64 = match unit.as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => {
            return Err(format!(
                "'{s}': unknown unit '{}' (use K, M, G or T)",
                &t[digits_end..]
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}': size too large"))
}

/// Parse a headroom value: "20%" or a size.
pub fn parse_headroom(s: &str) -> Result<Headroom, String> {
    if let Some(p) = s.trim().strip_suffix('%') {
        let v: u32 = p
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not a percentage"))?;
        if v > 1000 {
            return Err(format!("'{s}': headroom above 1000% is surely a mistake"));
        }
        return Ok(Headroom::Percent(v));
    }
    parse_size(s).map(Headroom::Bytes)
}

/// Parse an octal mode string ("0644", "755", "4755"); at most 0o7777.
pub fn parse_mode(s: &str) -> Result<u16, String> {
    let t = s.trim();
    let t = t.strip_prefix("0o").unwrap_or(t);
    if t.is_empty() || t.len() > 5 || !t.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!(
            "bad mode '{s}': expected an octal number such as \"0644\""
        ));
    }
    let v = u32::from_str_radix(t, 8).map_err(|_| format!("bad mode '{s}'"))?;
    if v > 0o7777 {
        return Err(format!("bad mode '{s}': above 07777"));
    }
    Ok(v as u16)
}

/// 1-based line number of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Largest recipe file accepted.
pub const MAX_RECIPE_BYTES: u64 = 4 << 20;

impl Recipe {
    /// Read and parse a recipe file: a regular file (opened without blocking, so a FIFO cannot
    /// hang the build) of at most [`MAX_RECIPE_BYTES`].
    pub fn load(path: &Path) -> Result<Recipe, BuildError> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| BuildError::io(path, e))?;
        let meta = f.metadata().map_err(|e| BuildError::io(path, e))?;
        let parse_err = |message: String| BuildError::Parse {
            file: path.display().to_string(),
            message,
        };
        if !meta.is_file() {
            return Err(parse_err("a recipe must be a regular file".into()));
        }
        let too_big = || {
            parse_err(format!(
                "recipe is larger than the {MAX_RECIPE_BYTES} byte limit"
            ))
        };
        if meta.len() > MAX_RECIPE_BYTES {
            return Err(too_big());
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        std::io::Read::read_to_end(
            &mut std::io::Read::take(f, MAX_RECIPE_BYTES + 1),
            &mut bytes,
        )
        .map_err(|e| BuildError::io(path, e))?;
        if bytes.len() as u64 > MAX_RECIPE_BYTES {
            return Err(too_big());
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| parse_err(format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to())))?;
        Recipe::parse(path, text)
    }

    /// Parse recipe text; `file` is used for messages and relative paths.
    pub fn parse(file: &Path, text: String) -> Result<Recipe, BuildError> {
        let doc: RecipeDoc = toml::from_str(&text).map_err(|e| BuildError::Parse {
            file: file.display().to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let r = Recipe {
            file: file.to_path_buf(),
            text,
            doc,
        };
        r.validate()?;
        Ok(r)
    }

    /// The recipe's folder.
    pub fn dir(&self) -> PathBuf {
        match self.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The line of a span.
    pub fn line(&self, span: Range<usize>) -> usize {
        line_of(&self.text, span.start)
    }

    /// An error at `span`.
    pub fn err_at(&self, span: Range<usize>, message: impl Into<String>) -> BuildError {
        BuildError::Invalid {
            file: self.file.display().to_string(),
            line: self.line(span),
            message: message.into(),
        }
    }

    /// Checks that need no filesystem: names, sizes, modes, levels.
    fn validate(&self) -> Result<(), BuildError> {
        let w = &self.doc.wafer;
        check_name(w.name.get_ref())
            .map_err(|m| self.err_at(w.name.span(), format!("wafer.name: {m}")))?;
        if w.version.get_ref().is_empty()
            || w.version
                .get_ref()
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(self.err_at(
                w.version.span(),
                "wafer.version: must be non-empty, without spaces",
            ));
        }
        check_name(w.vo.get_ref())
            .map_err(|m| self.err_at(w.vo.span(), format!("wafer.vo: {m}")))?;
        let sha = self.doc.base.sha256.get_ref();
        if sha.len() != 64
            || !sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(self.err_at(
                self.doc.base.sha256.span(),
                "base.sha256: expected 64 lowercase hex digits",
            ));
        }
        let req = &self.doc.requirements;
        for (name, v) in [("memory", &req.memory), ("disk", &req.disk)] {
            if let Some(v) = v {
                parse_size(v.get_ref())
                    .map_err(|m| self.err_at(v.span(), format!("requirements.{name}: {m}")))?;
            }
        }
        if let Some(a) = &req.arch {
            if crate::names::normalize_arch(a.get_ref()).is_none() {
                return Err(self.err_at(
                    a.span(),
                    format!("requirements.arch: unknown architecture '{}'", a.get_ref()),
                ));
            }
        }
        let out = &self.doc.output;
        if let Some(p) = &out.profile {
            if !crate::names::PROFILES.contains(&p.get_ref().as_str()) {
                return Err(self.err_at(
                    p.span(),
                    format!(
                        "output.profile: unknown profile '{}' (one of {})",
                        p.get_ref(),
                        crate::names::PROFILES.join(", ")
                    ),
                ));
            }
        }
        if out.size.is_some() && out.headroom.is_some() {
            let s = out.size.as_ref().map(|s| s.span()).unwrap_or(0..0);
            return Err(self.err_at(s, "output: give either size or headroom, not both"));
        }
        if let Some(s) = &out.size {
            parse_size(s.get_ref())
                .map_err(|m| self.err_at(s.span(), format!("output.size: {m}")))?;
        }
        if let Some(h) = &out.headroom {
            parse_headroom(h.get_ref())
                .map_err(|m| self.err_at(h.span(), format!("output.headroom: {m}")))?;
        }
        if let Some(l) = &out.compression_level {
            if !(1..=19).contains(l.get_ref()) {
                return Err(self.err_at(
                    l.span(),
                    format!("output.compression_level: {} not in 1..=19", l.get_ref()),
                ));
            }
        }
        if let Some(f) = &out.frame_size {
            let v = parse_size(f.get_ref())
                .map_err(|m| self.err_at(f.span(), format!("output.frame_size: {m}")))?;
            if v == 0 || v % 4096 != 0 || v > u64::from(rootfs::zseek::MAX_FRAME_SIZE) {
                return Err(self.err_at(
                    f.span(),
                    format!(
                        "output.frame_size: {v} must be a non-zero multiple of 4096 up to {}",
                        rootfs::zseek::MAX_FRAME_SIZE
                    ),
                ));
            }
        }
        for step in &self.doc.step {
            self.validate_step(step)?;
        }
        Ok(())
    }

    fn validate_step(&self, step: &Spanned<Step>) -> Result<(), BuildError> {
        let bad = |m: String| {
            self.err_at(
                step.span(),
                format!("step '{}': {m}", step.get_ref().kind()),
            )
        };
        let mode_ok = |m: &Option<String>| -> Result<(), BuildError> {
            if let Some(m) = m {
                parse_mode(m).map_err(&bad)?;
            }
            Ok(())
        };
        let abs = |p: &str, what: &str| -> Result<(), BuildError> {
            if !p.starts_with('/') {
                return Err(bad(format!(
                    "{what} '{p}' must be an absolute path in the image"
                )));
            }
            if p.contains('\0') {
                return Err(bad(format!("{what} contains a NUL byte")));
            }
            rootfs::tree::normalize(p.as_bytes()).map_err(|e| bad(e.to_string()))?;
            Ok(())
        };
        match step.get_ref() {
            Step::Copy { dest, mode, .. } | Step::Template { dest, mode, .. } => {
                abs(dest, "dest")?;
                mode_ok(mode)?;
            }
            Step::Mkdir { path, mode, .. } => {
                abs(path, "path")?;
                mode_ok(mode)?;
            }
            Step::Symlink { path, target } => {
                abs(path, "path")?;
                if target.is_empty() || target.contains('\0') {
                    return Err(bad("target must be non-empty without NUL".into()));
                }
            }
            Step::Remove { paths, .. } | Step::Chmod { paths, .. } | Step::Chown { paths, .. } => {
                if paths.is_empty() {
                    return Err(bad("paths is empty".into()));
                }
                for p in paths {
                    if !p.starts_with('/') {
                        return Err(bad(format!("glob '{p}' must start with '/'")));
                    }
                    globset::Glob::new(p).map_err(|e| bad(format!("glob '{p}': {e}")))?;
                }
                if let Step::Chmod { mode, .. } = step.get_ref() {
                    parse_mode(mode).map_err(&bad)?;
                }
                if let Step::Chown {
                    owner: None,
                    group: None,
                    ..
                } = step.get_ref()
                {
                    return Err(bad("give owner, group or both".into()));
                }
            }
            Step::Rpm { packages, .. } => {
                if packages.is_empty() {
                    return Err(bad("packages is empty".into()));
                }
            }
            Step::Users { users } => {
                for u in users {
                    check_account_name(&u.name).map_err(&bad)?;
                    for f in [&u.comment, &u.home, &u.shell, &u.password]
                        .into_iter()
                        .flatten()
                    {
                        if f.contains(':') || f.contains('\n') {
                            return Err(bad(format!(
                                "user '{}': fields may not contain ':' or newlines",
                                u.name
                            )));
                        }
                    }
                }
            }
            Step::Groups { groups } => {
                for g in groups {
                    check_account_name(&g.name).map_err(&bad)?;
                    for m in &g.members {
                        check_account_name(m).map_err(&bad)?;
                    }
                }
            }
            Step::Services {
                enable,
                disable,
                mask,
            } => {
                for s in enable.iter().chain(disable).chain(mask) {
                    if s.is_empty() || s.contains('/') || s.starts_with('.') || s.contains('\0') {
                        return Err(bad(format!("bad service name '{s}'")));
                    }
                }
            }
            Step::Purge { keep, .. } => {
                for k in keep {
                    if !crate::names::PURGE_ITEMS.contains(&k.as_str()) {
                        return Err(bad(format!(
                            "unknown purge item '{k}' (known: {})",
                            crate::names::PURGE_ITEMS.join(", ")
                        )));
                    }
                }
            }
            Step::Contextualize { method } => {
                if let Some(m) = method {
                    if !["auto", "sysv", "cloud-init"].contains(&m.as_str()) {
                        return Err(bad(format!(
                            "method '{m}' is not one of auto, sysv, cloud-init"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{s}' must be 1-64 of [a-z0-9._-], starting with a letter or digit"
        ))
    }
}

/// Account names as shadow-utils accepts them (conservatively).
pub fn check_account_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && s.bytes().any(|b| !b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!("bad account name '{s}'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[wafer]
name = "squid"
version = "1.0"
vo = "cms"

[base]
kind = "tar"
path = "base.tar"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
"#;

    #[test]
    fn minimal_recipe_parses() {
        let r = Recipe::parse(Path::new("r.toml"), MIN.into()).unwrap();
        assert_eq!(r.doc.wafer.name.get_ref(), "squid");
        assert_eq!(*r.doc.base.kind.get_ref(), BaseKind::Tar);
        assert!(r.doc.step.is_empty());
    }

    #[test]
    fn unknown_keys_are_errors_with_line() {
        let text = format!("{MIN}\n[output]\nprofil = \"el5\"\n");
        let e = Recipe::parse(Path::new("r.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("r.toml"), "{e}");
        assert!(e.contains("line 13"), "{e}");
        assert!(e.contains("profil"), "{e}");
        let text = format!("{MIN}\n[[step]]\ntype = \"mkdir\"\npath = \"/x\"\nmod = \"0755\"\n");
        let e = Recipe::parse(Path::new("r.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mod"), "{e}");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn bad_mode_names_the_step_line() {
        let text = format!("{MIN}\n[[step]]\ntype = \"mkdir\"\npath = \"/x\"\nmode = \"0799\"\n");
        let e = Recipe::parse(Path::new("r.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("r.toml:12:"), "{e}");
        assert!(e.contains("bad mode '0799'"), "{e}");
    }

    #[test]
    fn sizes_and_modes() {
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("512 MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("2X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999T").is_err());
        assert_eq!(parse_headroom("20%").unwrap(), Headroom::Percent(20));
        assert_eq!(parse_mode("4755").unwrap(), 0o4755);
        assert!(parse_mode("17777").is_err());
        assert!(parse_mode("rw").is_err());
    }

    #[test]
    fn bad_digest_and_unknown_purge_item() {
        let text = MIN.replace(
            "0000000000000000000000000000000000000000000000000000000000000000",
            "abc",
        );
        let e = Recipe::parse(Path::new("r.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("r.toml:10:"), "{e}");
        let text = format!("{MIN}\n[[step]]\ntype = \"purge\"\nkeep = [\"logz\"]\n");
        let e = Recipe::parse(Path::new("r.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown purge item 'logz'"), "{e}");
    }
}
