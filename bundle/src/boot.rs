//! `boot.kernel_flavour`: which kind of Linux kernel a PV guest boots. The builder records it
//! (from the kernel's config, else its version); deploy writes the matching Xen console into the
//! command line. One definition for both (docs/bundle.md, docs/site.md).

use std::fmt;

/// The flavour of a Linux guest kernel, as `wafer.json` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelFlavour {
    /// The forward-ported "xen" kernels (2.6.18-xen, e.g. RHEL/SL 5 `kernel-xen`): console
    /// `xvc0`.
    Xenlinux,
    /// Mainline (paravirt_ops) kernels, 2.6.26 and later: console `hvc0`.
    Pvops,
}

impl KernelFlavour {
    /// The name recorded in `wafer.json` (`boot.kernel_flavour`).
    pub fn as_str(self) -> &'static str {
        match self {
            KernelFlavour::Xenlinux => "xenlinux",
            KernelFlavour::Pvops => "pvops",
        }
    }

    /// The guest console device.
    pub fn console(self) -> &'static str {
        match self {
            KernelFlavour::Xenlinux => "xvc0",
            KernelFlavour::Pvops => "hvc0",
        }
    }

    /// The flavour a kernel's file name (`/boot/vmlinuz-VERSION`) suggests, with the reason: a
    /// version that says `xen` (`2.6.18-419.el5xen`, `2.6.16.60-0.21-xen`) or is older than
    /// 2.6.26 is a xenlinux kernel, anything else pvops. For bundles that do not record the
    /// flavour, and for images without the kernel's config.
    pub fn guess_from_kernel_path(path: &str) -> (KernelFlavour, &'static str) {
        let version = kernel_version(path);
        if version.to_ascii_lowercase().contains("xen") {
            (KernelFlavour::Xenlinux, "its version names xen")
        } else if older_than_pvops(version) {
            (
                KernelFlavour::Xenlinux,
                "its version is older than 2.6.26, the first pvops x86_64 guest",
            )
        } else {
            (
                KernelFlavour::Pvops,
                "its version is 2.6.26 or later and does not name xen",
            )
        }
    }
}

/// `VERSION` of a `/boot/vmlinuz-VERSION` (or `vmlinux-VERSION`) path; the file name otherwise.
pub fn kernel_version(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.strip_prefix("vmlinuz-")
        .or_else(|| name.strip_prefix("vmlinux-"))
        .unwrap_or(name)
}

/// True for a kernel version older than 2.6.26 (`2.6.18-419.el5` gives 2.6.18): mainline
/// Linux could not run as a 64-bit Xen PV guest before 2.6.26 (32-bit: 2.6.23), so such a
/// kernel that boots on Xen is a forward-ported xenlinux one.
fn older_than_pvops(version: &str) -> bool {
    let mut n = [0u32; 3];
    for (i, part) in version.split(['.', '-']).take(3).enumerate() {
        let digits: String = part.chars().take_while(|c| c.is_ascii_digit()).collect();
        match digits.parse() {
            Ok(v) => n[i] = v,
            Err(_) => break,
        }
    }
    n != [0, 0, 0] && n < [2, 6, 26]
}

impl std::str::FromStr for KernelFlavour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "xenlinux" => Ok(KernelFlavour::Xenlinux),
            "pvops" => Ok(KernelFlavour::Pvops),
            _ => Err(format!(
                "unknown kernel flavour {:?} (xenlinux or pvops)",
                s.chars().take(40).collect::<String>()
            )),
        }
    }
}

impl fmt::Display for KernelFlavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::KernelFlavour::{self, Pvops, Xenlinux};

    #[test]
    fn guesses_from_the_kernel_name() {
        let g = |p: &str| KernelFlavour::guess_from_kernel_path(p).0;
        assert_eq!(g("/boot/vmlinuz-2.6.18-419.el5xen"), Xenlinux);
        assert_eq!(g("/boot/vmlinuz-2.6.16.60-0.21-xen"), Xenlinux);
        assert_eq!(g("/boot/vmlinuz-2.6.18-419.el5"), Xenlinux);
        assert_eq!(g("/boot/vmlinuz-6.1.0-28-amd64"), Pvops);
        assert_eq!(g("/boot/vmlinuz-2.6.32-754.el6.x86_64"), Pvops);
        assert_eq!("pvops".parse::<KernelFlavour>(), Ok(Pvops));
        assert!("xen".parse::<KernelFlavour>().is_err());
        assert_eq!(Xenlinux.console(), "xvc0");
        assert_eq!(Pvops.to_string(), "pvops");
    }
}
