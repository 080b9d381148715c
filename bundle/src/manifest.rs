//! `wafer.json`: the one manifest type of the wafer bundle (docs/bundle.md, "wafer.json").
//!
//! Parsing is strict: every struct refuses unknown fields (`deny_unknown_fields`), so a field a
//! newer builder adds is refused by an older reader instead of being silently dropped, and
//! [`Manifest::from_json`] refuses any `format` but [`FORMAT`]. Serialising with
//! [`to_stable_json`] gives the bytes the builder writes (sorted keys, two-space indentation, a
//! final newline).

use serde::{Deserialize, Serialize};

/// Manifest format identifier (the schema version): `format` of every manifest.
pub const FORMAT: &str = "wafer-bundle/1";

/// The ext profiles the image writer knows (`filesystem.profile`).
pub const PROFILES: &[&str] = &[
    "el4", "el5", "el6", "el7", "el8", "el9", "fedora", "debian12",
];

/// `wafer.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format identifier, [`FORMAT`].
    pub format: String,
    /// Wafer name.
    pub name: String,
    /// Wafer version.
    pub version: String,
    /// Virtual Organisation.
    pub vo: String,
    /// OS detected in the image.
    pub os: OsInfo,
    /// Architecture detected from the image's ELF files.
    pub arch: String,
    /// Filesystem facts.
    pub filesystem: FsFacts,
    /// What the wafer needs from a slot.
    pub requirements: ManifestRequirements,
    /// Kernel, initrd and command line, when the image has a kernel.
    pub boot: Option<ManifestBoot>,
    /// Raw image digests.
    pub image: ManifestImage,
    /// Compressed image digests.
    pub compressed: ManifestCompressed,
    /// The recipe's digest.
    pub recipe: ManifestRecipe,
    /// The base's kind and digest.
    pub base: ManifestBase,
    /// Installed packages.
    pub packages: Option<ManifestPackages>,
    /// The build epoch (every created file's time).
    pub source_date_epoch: i64,
}

/// `os`: the operating system of the image.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OsInfo {
    /// Short id (`centos`, `scientific`, `fedora`, `rhel`, `debian`...), or "unknown".
    pub id: String,
    /// Version (`5.11`, `9`...), or empty.
    pub version: String,
    /// Human-readable name.
    pub name: String,
}

/// `filesystem`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FsFacts {
    /// `ext2`, `ext3` or `ext4`.
    #[serde(rename = "type")]
    pub fs_type: String,
    /// Writer profile.
    pub profile: String,
    /// Image size in bytes.
    pub size: u64,
}

/// `requirements` (the names deploy matches slots with).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestRequirements {
    /// Guaranteed memory, MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Disk, MiB.
    pub disk_mib: u64,
    /// Architecture.
    pub arch: String,
    /// Guest types, preferred first (`pv`, `pvh`, `hvm`).
    pub guest_types: Vec<String>,
    /// Lowest Xen version, `major.minor[.patch]`.
    pub min_xen: Option<String>,
}

/// `boot`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestBoot {
    /// Kernel path in the image.
    pub kernel: String,
    /// Initrd path in the image.
    pub initrd: Option<String>,
    /// Kernel command line.
    pub cmdline: String,
    /// The guest kernel's flavour as the builder detected it: `xenlinux` (2.6.18-xen style,
    /// console xvc0) or `pvops` (console hvc0). Absent in bundles built before it was recorded;
    /// deploy then guesses from the kernel's file name and says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_flavour: Option<String>,
}

/// `image`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestImage {
    /// sha256 of the raw image, lowercase hex.
    pub sha256: String,
    /// Raw image size in bytes (the decompressed stream must be exactly this long).
    pub size: u64,
    /// dm-verity parameters.
    pub verity: ManifestVerity,
}

/// `image.verity` (as `veritysetup format --no-superblock` with these parameters).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestVerity {
    /// Root hash, hex.
    pub root: String,
    /// Salt, hex.
    pub salt: String,
    /// Always `sha256`.
    pub hash_algorithm: String,
    /// Always 4096.
    pub data_block_size: u32,
    /// Always 4096.
    pub hash_block_size: u32,
    /// dm-verity hash format version (1).
    pub format: u32,
}

/// `compressed`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestCompressed {
    /// File name in the bundle (always `disk.img.zst`).
    pub file: String,
    /// sha256 of the file, lowercase hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Decompressed bytes per frame.
    pub frame_size: u64,
    /// zstd level.
    pub level: i32,
    /// Number of frames.
    pub frames: u64,
}

/// `recipe`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestRecipe {
    /// sha256 of the recipe file.
    pub sha256: String,
    /// sha256 over the sorted list of (input path, input sha256) the steps read.
    pub inputs_sha256: String,
}

/// `base`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestBase {
    /// tar, ext, wafer or dir.
    pub kind: String,
    /// The pinned digest.
    pub sha256: String,
}

/// `packages`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestPackages {
    /// The package database: the rpm backend (sqlite, bdb, ndb), or `dpkg`.
    pub database: String,
    /// Number of packages.
    pub count: usize,
    /// Every package.
    pub list: Vec<PackageSummary>,
}

/// One installed package in the manifest's summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct PackageSummary {
    /// Name.
    pub name: String,
    /// rpm: `[epoch:]version-release`; dpkg: the version as `dpkg-query` prints it.
    pub evr: String,
    /// Architecture (empty for none).
    pub arch: String,
}

/// A `wafer.json` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, a missing or unknown field, a wrong type.
    #[error("line {line} column {column}: {source}")]
    Parse {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// serde_json's reason.
        source: serde_json::Error,
    },
    /// A `format` this reader does not know.
    #[error("format {0:?} is not {FORMAT:?}")]
    Format(String),
}

impl Manifest {
    /// Parses `wafer.json` bytes strictly: unknown fields and other formats are refused.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| ManifestError::Parse {
            line: e.line(),
            column: e.column(),
            source: e,
        })?;
        if m.format != FORMAT {
            return Err(ManifestError::Format(m.format));
        }
        Ok(m)
    }

    /// The bytes the builder writes for this manifest ([`to_stable_json`]).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        to_stable_json(self)
    }
}

/// Serializes with sorted keys, two-space indentation and a final newline.
pub fn to_stable_json<T: Serialize>(v: &T) -> Result<Vec<u8>, serde_json::Error> {
    // serde_json::Value's map is a BTreeMap (no preserve_order feature): keys come out sorted.
    let value = serde_json::to_value(v)?;
    let mut out = serde_json::to_vec_pretty(&value)?;
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A complete manifest as the builder writes it.
    pub(crate) fn sample() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            name: "squid".into(),
            version: "1.0".into(),
            vo: "cms".into(),
            os: OsInfo {
                id: "centos".into(),
                version: "5.11".into(),
                name: "CentOS 5.11".into(),
            },
            arch: "x86_64".into(),
            filesystem: FsFacts {
                fs_type: "ext3".into(),
                profile: "el5".into(),
                size: 8 << 20,
            },
            requirements: ManifestRequirements {
                memory_mib: 512,
                vcpus: 1,
                disk_mib: 8,
                arch: "x86_64".into(),
                guest_types: vec!["pv".into()],
                min_xen: None,
            },
            boot: Some(ManifestBoot {
                kernel: "/boot/vmlinuz".into(),
                initrd: None,
                cmdline: "root=/dev/xvda ro".into(),
                kernel_flavour: Some("pvops".into()),
            }),
            image: ManifestImage {
                sha256: "ab".repeat(32),
                size: 8 << 20,
                verity: ManifestVerity {
                    root: "cd".repeat(32),
                    salt: "ef".repeat(32),
                    hash_algorithm: "sha256".into(),
                    data_block_size: 4096,
                    hash_block_size: 4096,
                    format: 1,
                },
            },
            compressed: ManifestCompressed {
                file: "disk.img.zst".into(),
                sha256: "01".repeat(32),
                size: 1234,
                frame_size: 4 << 20,
                level: 3,
                frames: 2,
            },
            recipe: ManifestRecipe {
                sha256: "23".repeat(32),
                inputs_sha256: "45".repeat(32),
            },
            base: ManifestBase {
                kind: "tar".into(),
                sha256: "67".repeat(32),
            },
            packages: Some(ManifestPackages {
                database: "bdb".into(),
                count: 1,
                list: vec![PackageSummary {
                    name: "bash".into(),
                    evr: "3.2-32.el5".into(),
                    arch: "x86_64".into(),
                }],
            }),
            source_date_epoch: 1_700_000_000,
        }
    }

    /// Writing then reading gives the same value, and writing that again the same bytes.
    #[test]
    fn round_trip_is_exact() {
        let m = sample();
        let bytes = m.to_json().unwrap();
        assert!(bytes.ends_with(b"}\n"));
        let back = Manifest::from_json(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_json().unwrap(), bytes);
    }

    /// An unknown field anywhere (top level or nested) is refused, naming it: never dropped.
    #[test]
    fn unknown_fields_are_refused() {
        let good: serde_json::Value = serde_json::from_slice(&sample().to_json().unwrap()).unwrap();
        for pointer in [
            "",
            "/image",
            "/image/verity",
            "/compressed",
            "/requirements",
            "/os",
        ] {
            let mut v = good.clone();
            v.pointer_mut(pointer)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .insert("surprise".into(), 1.into());
            let e = Manifest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
            assert!(
                e.to_string().contains("unknown field `surprise`"),
                "{pointer}: {e}"
            );
        }
    }

    /// A missing required field, another format or a wrong type is refused with its place.
    #[test]
    fn missing_fields_and_other_formats_are_refused() {
        let good: serde_json::Value = serde_json::from_slice(&sample().to_json().unwrap()).unwrap();
        let mut v = good.clone();
        v["compressed"].as_object_mut().unwrap().remove("size");
        let e = Manifest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(e.to_string().contains("missing field `size`"), "{e}");
        let mut v = good.clone();
        v["format"] = "wafer-bundle/2".into();
        let e = Manifest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(
            matches!(e, ManifestError::Format(ref f) if f == "wafer-bundle/2"),
            "{e}"
        );
        let mut v = good;
        v["image"]["size"] = "big".into();
        let e = Manifest::from_json(&serde_json::to_vec_pretty(&v).unwrap()).unwrap_err();
        assert!(
            matches!(e, ManifestError::Parse { line, .. } if line > 1),
            "{e}"
        );
        assert!(Manifest::from_json(b"").is_err());
        assert!(Manifest::from_json(b"{\"format\": ").is_err());
    }
}
