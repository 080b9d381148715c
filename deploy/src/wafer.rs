//! A verified bundle as deployment reads it: the manifest's name, VO, requirements and command
//! line; the disk materialised sparse from the seekable zstd stream while its dm-verity root is
//! recomputed and compared with the verified manifest's; the kernel and initrd read from that
//! materialised, checked file by rootfs's ext reader.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::{Arc, Mutex};

use bundle::Bundle;
use rootfs::ReadAt;

use crate::fit::Requirements;

/// Largest kernel or initrd read from an image.
pub const MAX_BOOT_FILE: u64 = 512 << 20;

/// What deployment reads of a wafer. Crate-private: the only implementation outside tests is
/// the verified bundle ([`BundleImage`]), reachable only through [`crate::deployment::deploy`].
pub(crate) trait Image {
    /// Wafer name.
    fn name(&self) -> &str;
    /// Wafer version.
    fn version(&self) -> &str;
    /// VO.
    fn vo(&self) -> &str;
    /// Requirements from the manifest.
    fn requirements(&self) -> Requirements;
    /// Kernel command line from the manifest.
    fn cmdline(&self) -> Option<String>;
    /// `boot.kernel_flavour` from the manifest (absent in bundles built before it was recorded).
    fn kernel_flavour(&self) -> Option<crate::xl::KernelFlavour> {
        None
    }
    /// `boot.kernel` from the manifest: the kernel's path in the image.
    fn kernel_path(&self) -> Option<String> {
        None
    }
    /// Writes the raw disk image (verified bytes) to `dest`; returns its size.
    fn write_disk(&self, dest: &mut std::fs::File) -> io::Result<u64>;
    /// The kernel read from the verified image.
    fn kernel(&self) -> io::Result<Vec<u8>>;
    /// The initrd read from the verified image, if the wafer has one.
    fn initrd(&self) -> io::Result<Option<Vec<u8>>>;
}

/// A verified bundle, with the disk once materialised.
pub(crate) struct BundleImage<'a> {
    bundle: &'a Bundle,
    requirements: Requirements,
    /// `boot.kernel_flavour`, parsed (an unknown value is refused when the image is made).
    kernel_flavour: Option<crate::xl::KernelFlavour>,
    disk: Mutex<Option<Arc<File>>>,
}

struct FileAt(Arc<File>, u64);

impl ReadAt for FileAt {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.1 {
            return Ok(0);
        }
        let n = (self.1 - offset).min(buf.len() as u64) as usize;
        self.0.read_at(&mut buf[..n], offset)
    }
    fn len(&self) -> u64 {
        self.1
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The manifest's `requirements` as slot matching reads them.
pub fn requirements(m: &bundle::Manifest) -> Result<Requirements, String> {
    let r = &m.requirements;
    let guest_types = r
        .guest_types
        .iter()
        .map(|g| {
            g.parse()
                .map_err(|e: String| format!("wafer.json requirements.guest_types: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let min_xen = match &r.min_xen {
        Some(v) => Some(
            v.parse()
                .map_err(|e: String| format!("wafer.json requirements.min_xen: {e}"))?,
        ),
        None => None,
    };
    Ok(Requirements {
        memory_mib: r.memory_mib,
        vcpus: r.vcpus,
        disk_mib: r.disk_mib,
        arch: r.arch.clone(),
        guest_types,
        min_xen,
    })
}

impl<'a> BundleImage<'a> {
    pub(crate) fn new(bundle: &'a Bundle) -> Result<Self, String> {
        let kernel_flavour = match bundle
            .manifest()
            .boot
            .as_ref()
            .and_then(|b| b.kernel_flavour.as_deref())
        {
            Some(f) => Some(
                f.parse()
                    .map_err(|e: String| format!("wafer.json boot.kernel_flavour: {e}"))?,
            ),
            None => None,
        };
        Ok(BundleImage {
            requirements: requirements(bundle.manifest())?,
            kernel_flavour,
            bundle,
            disk: Mutex::new(None),
        })
    }

    fn read_boot_file(&self, path: &str) -> io::Result<Vec<u8>> {
        let disk = self
            .disk
            .lock()
            .map_err(|_| io::Error::other("disk lock poisoned"))?
            .clone()
            .ok_or_else(|| {
                io::Error::other("the disk has not been materialised and checked yet")
            })?;
        let len = disk.metadata()?.len();
        let src: Arc<dyn ReadAt> = Arc::new(FileAt(disk, len));
        let img = rootfs::ext::read_image(src, &rootfs::ext::ReadOptions::default())
            .map_err(|e| invalid(format!("reading the verified image: {e}")))?;
        let tree = &img.tree;
        let id = tree
            .resolve(path.as_bytes(), true)
            .map_err(|e| invalid(format!("{path} in the verified image: {e}")))?;
        let rootfs::NodeKind::Regular(c) = &tree.node(id).kind else {
            return Err(invalid(format!(
                "{path} in the verified image is not a regular file"
            )));
        };
        if c.size() > MAX_BOOT_FILE {
            return Err(invalid(format!(
                "{path}: {} bytes, more than the {MAX_BOOT_FILE} accepted",
                c.size()
            )));
        }
        let mut out = Vec::with_capacity(c.size() as usize);
        io::Read::read_to_end(
            &mut io::Read::take(c.reader()?, MAX_BOOT_FILE + 1),
            &mut out,
        )?;
        Ok(out)
    }
}

impl Image for BundleImage<'_> {
    fn name(&self) -> &str {
        &self.bundle.manifest().name
    }
    fn version(&self) -> &str {
        &self.bundle.manifest().version
    }
    fn vo(&self) -> &str {
        &self.bundle.manifest().vo
    }
    fn requirements(&self) -> Requirements {
        self.requirements.clone()
    }
    fn cmdline(&self) -> Option<String> {
        self.bundle
            .manifest()
            .boot
            .as_ref()
            .map(|b| b.cmdline.clone())
    }
    fn kernel_flavour(&self) -> Option<crate::xl::KernelFlavour> {
        self.kernel_flavour
    }
    fn kernel_path(&self) -> Option<String> {
        self.bundle
            .manifest()
            .boot
            .as_ref()
            .map(|b| b.kernel.clone())
    }

    /// [`bundle::Disk::materialise`] (checked against the verified root), then the written
    /// file reopened for reading the kernel and initrd.
    fn write_disk(&self, dest: &mut File) -> io::Result<u64> {
        let m = self.bundle.manifest();
        let size = self
            .bundle
            .disk()
            .materialise(
                dest,
                &m.image.verity.salt,
                m.image.size,
                &m.image.verity.root,
            )
            .map_err(|e| invalid(e.to_string()))?;
        let out: &File = dest;
        // `dest` is write-only; reopen the same inode for reading (it is renamed afterwards).
        let clone = {
            use std::os::fd::AsRawFd;
            File::open(format!("/proc/self/fd/{}", out.as_raw_fd()))?
        };
        let (a, b) = (clone.metadata()?, out.metadata()?);
        if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
            return Err(io::Error::other(
                "reopening the written disk gave another file",
            ));
        }
        *self
            .disk
            .lock()
            .map_err(|_| io::Error::other("disk lock poisoned"))? = Some(Arc::new(clone));
        Ok(size)
    }

    fn kernel(&self) -> io::Result<Vec<u8>> {
        let Some(b) = &self.bundle.manifest().boot else {
            return Err(invalid(
                "wafer.json has no boot.kernel: the wafer cannot boot as a Xen guest".into(),
            ));
        };
        self.read_boot_file(&b.kernel)
    }

    fn initrd(&self) -> io::Result<Option<Vec<u8>>> {
        match self
            .bundle
            .manifest()
            .boot
            .as_ref()
            .and_then(|b| b.initrd.as_ref())
        {
            Some(p) => self.read_boot_file(p).map(Some),
            None => Ok(None),
        }
    }
}
