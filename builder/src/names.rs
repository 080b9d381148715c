//! Names the recipe checks (`recipe.rs`) share with the image facts (`inspect.rs`), the
//! bundle writer (`output.rs`) and the steps: architecture names, ext profiles, purge items.
//! Kept here, below all of them, so that those modules need not import each other (the
//! `inspect` ⇄ `steps` ⇄ `recipe` circle; see ARCHITECTURE.md).

/// The ext profiles the writer knows.
pub use bundle::manifest::PROFILES;

/// Normalise an architecture name to the one the manifest uses (`uname -m` style).
pub fn normalize_arch(s: &str) -> Option<&'static str> {
    Some(match s {
        "x86_64" | "amd64" | "x86-64" => "x86_64",
        "i386" | "i486" | "i586" | "i686" | "x86" => "i686",
        "aarch64" | "arm64" => "aarch64",
        "armv7hl" | "armv7l" | "arm" | "armhf" => "armv7l",
        "ppc64le" => "ppc64le",
        "ppc64" => "ppc64",
        "ppc" => "ppc",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        _ => return None,
    })
}

/// The purge items, in the order they run.
pub const PURGE_ITEMS: &[&str] = &[
    "ssh-hostkeys",
    "machine-id",
    "random-seed",
    "udev-persistent-net",
    "net-hwaddr",
    "dhcp-leases",
    "resolv-conf",
    "logs",
    "rpm-db-cache",
    "package-caches",
    "shell-history",
    "tmp",
];
