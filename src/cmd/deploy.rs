//! `wafer deploy`, `wafer slots`, `wafer ps`, `wafer stop`: the site side.
//!
//! `deploy` verifies the bundle first (nothing is written to the site's storage or state
//! directories before that passes), then hands deploy's [`Verified`] token a [`BundleWafer`]:
//! the disk is materialised sparse from the seekable zstd stream while its dm-verity root is
//! recomputed and compared with the verified manifest's, and the kernel and initrd are read from
//! that materialised, checked file by rootfs's ext reader.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use clap::Args;
use deploy::deployment::{self, DeployOptions, Launch, Teardown, Verified, VerifiedImage, XlTool};
use deploy::fit::Requirements;
use deploy::site::Site;
use rootfs::ReadAt;
use serde::Deserialize;
use serde_json::json;

use super::trustcmd::{load_store, verify_bundle};
use super::Ui;
use rootfs::escape::Escaped;

/// Largest kernel or initrd read from an image.
pub const MAX_BOOT_FILE: u64 = 512 << 20;
/// Block size of zero detection (and of dm-verity).
const BLOCK: usize = 4096;

/// The manifest fields deployment needs (parsed from the verified bytes only).
#[derive(Debug, Clone, Deserialize)]
pub struct DeployManifest {
    /// Wafer name.
    pub name: String,
    /// Version.
    pub version: String,
    /// VO.
    pub vo: String,
    /// Requirements.
    pub requirements: ManifestRequirements,
    /// Boot files.
    pub boot: Option<ManifestBoot>,
    /// Digests.
    pub image: ManifestImage,
}

/// `requirements`.
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestRequirements {
    /// MiB.
    pub memory_mib: u64,
    /// vcpus.
    pub vcpus: u32,
    /// MiB.
    pub disk_mib: u64,
    /// Architecture.
    pub arch: String,
    /// Guest types, preferred first.
    pub guest_types: Vec<String>,
    /// Lowest Xen.
    pub min_xen: Option<String>,
}

/// `boot`.
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestBoot {
    /// Kernel path in the image.
    pub kernel: String,
    /// Initrd path in the image.
    pub initrd: Option<String>,
    /// Command line.
    pub cmdline: String,
    /// `xenlinux` or `pvops`; absent in bundles built before the builder recorded it.
    #[serde(default)]
    pub kernel_flavour: Option<String>,
}

/// `image`.
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestImage {
    /// Raw image size in bytes (verified: the seek table must declare exactly this).
    pub size: u64,
    /// dm-verity.
    pub verity: ManifestVerity,
}

/// `image.verity`.
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestVerity {
    /// Root hash.
    pub root: String,
    /// Salt.
    pub salt: String,
}

/// A verified bundle, as deployment reads it.
pub struct BundleWafer {
    zst: PathBuf,
    manifest: DeployManifest,
    /// `boot.kernel_flavour`, parsed.
    kernel_flavour: Option<deploy::xl::KernelFlavour>,
    requirements: Requirements,
    /// The materialised disk, once written and checked.
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

impl BundleWafer {
    /// Builds it from the bundle directory and the manifest bytes that verification checked.
    pub fn new(dir: &Path, manifest_bytes: &[u8]) -> Result<Self> {
        let manifest: DeployManifest = serde_json::from_slice(manifest_bytes)
            .with_context(|| format!("{}/wafer.json", dir.display()))?;
        let r = &manifest.requirements;
        let guest_types = r
            .guest_types
            .iter()
            .map(|g| {
                g.parse().map_err(|e: String| {
                    anyhow::anyhow!("wafer.json requirements.guest_types: {e}")
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let min_xen = match &r.min_xen {
            Some(v) => Some(
                v.parse()
                    .map_err(|e: String| anyhow::anyhow!("wafer.json requirements.min_xen: {e}"))?,
            ),
            None => None,
        };
        let requirements = Requirements {
            memory_mib: r.memory_mib,
            vcpus: r.vcpus,
            disk_mib: r.disk_mib,
            arch: r.arch.clone(),
            guest_types,
            min_xen,
        };
        let kernel_flavour = match manifest
            .boot
            .as_ref()
            .and_then(|b| b.kernel_flavour.as_ref())
        {
            Some(f) => Some(f.parse().map_err(|e: String| {
                anyhow::anyhow!("{}/wafer.json boot.kernel_flavour: {e}", dir.display())
            })?),
            None => None,
        };
        Ok(BundleWafer {
            zst: dir.join("disk.img.zst"),
            kernel_flavour,
            manifest,
            requirements,
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

impl VerifiedImage for BundleWafer {
    fn name(&self) -> &str {
        &self.manifest.name
    }
    fn version(&self) -> &str {
        &self.manifest.version
    }
    fn vo(&self) -> &str {
        &self.manifest.vo
    }
    fn requirements(&self) -> Requirements {
        self.requirements.clone()
    }
    fn cmdline(&self) -> Option<String> {
        self.manifest.boot.as_ref().map(|b| b.cmdline.clone())
    }
    fn kernel_flavour(&self) -> Option<deploy::xl::KernelFlavour> {
        self.kernel_flavour
    }
    fn kernel_path(&self) -> Option<String> {
        self.manifest.boot.as_ref().map(|b| b.kernel.clone())
    }

    /// Decompresses the frames in parallel, writes every non-zero 4 KiB block (zero blocks stay
    /// holes), recomputes the dm-verity root of exactly what was written and compares it with the
    /// verified manifest's before anything reads the file.
    fn write_disk(&self, dest: &mut File) -> io::Result<u64> {
        let salt = hex::decode(&self.manifest.image.verity.salt)
            .map_err(|e| invalid(format!("verity salt: {e}")))?;
        // Opened again after verification: still never through a link, a regular file only, and
        // its seek table must still declare the verified size before a byte is decompressed.
        let file = match (
            self.zst.parent(),
            self.zst.file_name().and_then(|n| n.to_str()),
        ) {
            (Some(dir), Some(name)) => rootfs::safe::Folder::open(dir)
                .and_then(|d| d.open_file(name))
                .map_err(io::Error::other)?,
            _ => return Err(invalid(format!("{}: not a file", self.zst.display()))),
        };
        let mut src = io::BufReader::with_capacity(1 << 20, file);
        let table = rootfs::zseek::SeekTable::read_from(&mut src)
            .map_err(|e| invalid(format!("{}: {e}", self.zst.display())))?;
        io::Seek::seek(&mut src, io::SeekFrom::Start(0))?;
        let size = table.decompressed_size();
        if size != self.manifest.image.size {
            return Err(invalid(format!(
                "{}: the seek table declares {size} bytes, the verified manifest {}: changed since verification",
                self.zst.display(),
                self.manifest.image.size
            )));
        }
        let mut verity =
            trust::digest::VerityHasher::new(&salt).map_err(|e| invalid(e.to_string()))?;
        let out: &File = dest;
        rootfs::zseek::for_each_frame(
            &mut src,
            &table,
            0,
            |_, off, data| {
                (off % BLOCK as u64 == 0)
                    .then(|| trust::digest::hash_full_blocks_serial(&salt, data))
            },
            |_, off, data, hashes| {
                match hashes {
                    Some(h) => verity.push_block_hashes(h, data),
                    None => verity.update(data),
                }
                let mut i = 0;
                while i < data.len() {
                    let end = (i + BLOCK).min(data.len());
                    if data[i..end].iter().all(|b| *b == 0) {
                        i = end;
                        continue;
                    }
                    // a run of non-zero blocks in one write
                    let mut j = end;
                    while j < data.len() {
                        let e = (j + BLOCK).min(data.len());
                        if data[j..e].iter().all(|b| *b == 0) {
                            break;
                        }
                        j = e;
                    }
                    out.write_all_at(&data[i..j], off + i as u64)
                        .map_err(|e| format!("writing the disk: {e}"))?;
                    i = j;
                }
                Ok(())
            },
            |_| {},
        )
        .map_err(|e| invalid(format!("{}: {e}", self.zst.display())))?;
        out.set_len(size)?;
        let root = verity.finish().root_hex();
        if root != self.manifest.image.verity.root {
            return Err(invalid(format!(
                "the disk written has dm-verity root {root}, not the verified {}: {} changed after verification",
                self.manifest.image.verity.root,
                self.zst.display()
            )));
        }
        out.sync_all()?;
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
        let Some(b) = &self.manifest.boot else {
            return Err(invalid(
                "wafer.json has no boot.kernel: the wafer cannot boot as a Xen guest".into(),
            ));
        };
        self.read_boot_file(&b.kernel)
    }

    fn initrd(&self) -> io::Result<Option<Vec<u8>>> {
        match self.manifest.boot.as_ref().and_then(|b| b.initrd.as_ref()) {
            Some(p) => self.read_boot_file(p).map(Some),
            None => Ok(None),
        }
    }
}

/// Reads `--user-data`: a regular file only (opened non-blocking, so a FIFO cannot hang the
/// deploy; a device such as /dev/zero is refused), at most [`deploy::cidata::MAX_USER_DATA`]
/// bytes, read with that bound whatever the file claims.
pub fn read_user_data(p: &Path) -> Result<Vec<u8>> {
    deploy::fsutil::read_regular(p, deploy::cidata::MAX_USER_DATA as u64)
        .with_context(|| format!("--user-data {}: cannot use it as user-data", p.display()))
}

fn load_site(path: &Path) -> Result<Site> {
    Site::from_file(path).with_context(|| format!("loading site configuration {}", path.display()))
}

fn now() -> u64 {
    super::vet::now().max(0) as u64
}

/// Deploy a verified wafer into a slot.
#[derive(Args, Debug)]
#[command(
    long_about = "Deploy a wafer at this site: verify it against the site's trust store first (nothing is\n\
        written to the storage or state directories unless that passes), fit it to a free slot its\n\
        VO may use, lease one address per network of the slot, materialise the disk (sparse, checked\n\
        against the verified dm-verity root), extract the kernel and initrd from it, write the\n\
        cloud-init NoCloud CIDATA disk and the xl.cfg, then run `xl create` -- or, with --dry-run or\n\
        when xl is absent, print the command instead. The site file is documented in docs/site.md.\n\n\
        Examples:\n  \
        wafer deploy out/squid --site /etc/wafer/site.toml\n  \
        wafer deploy out/squid --site site.toml --slot edge1 --user-data cloud-config.yaml --dry-run\n  \
        wafer deploy out/squid --site site.toml --name cms-squid-test --ttl 86400 --json"
)]
pub struct DeployArgs {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The site configuration.
    #[arg(long, value_name = "SITE.toml")]
    pub site: PathBuf,
    /// Use only this slot.
    #[arg(long)]
    pub slot: Option<String>,
    /// Deployment (and Xen domain) name; also the guest's hostname unless its lease names one
    /// (default VO-WAFER).
    #[arg(long)]
    pub name: Option<String>,
    /// Write everything but print the `xl create` command instead of running it.
    #[arg(long)]
    pub dry_run: bool,
    /// cloud-init user-data to give the guest.
    #[arg(long, value_name = "FILE")]
    pub user_data: Option<PathBuf>,
    /// Lifetime in seconds (default: none). Once it has passed, the next deploy or `wafer recover`
    /// stops the deployment: its guest is destroyed, then its addresses and slot are freed.
    #[arg(long)]
    pub ttl: Option<u64>,
    /// Trust store to verify with (default: the site's paths.trust_store).
    #[arg(long, value_name = "DIR")]
    pub trust: Option<PathBuf>,
    /// Print the deployment record as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `wafer deploy`.
pub fn run_deploy(a: DeployArgs, ui: &Ui) -> Result<()> {
    let site = load_site(&a.site)?;
    // op1: without a hypervisor tool only --dry-run may go on (never "deployed" with no guest)
    if !a.dry_run && XlTool::detect(false).xl.is_none() {
        bail!(
            "{}: no `xl` on the PATH, so no guest can be started here: run wafer deploy on the Xen \
             host as a user that may run `xl`, or give --dry-run to write the disk, CIDATA and \
             xl.cfg and print the `xl create` command (nothing was written)",
            a.bundle.display()
        );
    }
    let store_dir = a.trust.clone().unwrap_or_else(|| site.trust_store.clone());
    let store = load_store(&store_dir)?;
    let user_data = match &a.user_data {
        Some(p) => Some(read_user_data(p)?),
        None => None,
    };
    let sp = ui.spinner(&format!("verifying {}", a.bundle.display()));
    let check = verify_bundle(&a.bundle, &store, false, 0)?;
    sp.finish_and_clear();
    if !check.report.passed() {
        eprint!("{}", check.report);
        let why: Vec<String> = check
            .report
            .failures()
            .iter()
            .map(|c| format!("{}: {}", Escaped(&c.name), Escaped(&c.detail)))
            .collect();
        bail!(
            "{} refused: verification failed ({}); nothing was deployed",
            a.bundle.display(),
            why.join("; ")
        );
    }
    let wafer = BundleWafer::new(&a.bundle, &check.manifest_bytes)?;
    let verified = Verified::after_verification(wafer);
    let opts = DeployOptions {
        name: a.name.clone(),
        slot: a.slot.clone(),
        user_data,
        ttl: a.ttl,
        now: now(),
    };
    let hv = XlTool::detect(a.dry_run);
    let sp = ui.spinner("deploying");
    let rec = deployment::deploy(&site, &verified, &opts, &hv)
        .with_context(|| format!("deploying {}", a.bundle.display()))?;
    sp.finish_and_clear();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rec).context("serializing the record")?
        );
        return Ok(());
    }
    println!(
        "{} {} {} (VO {}) as {} in slot {}",
        match rec.launch {
            Some(Launch::Ran(_)) => "deployed",
            _ => "prepared (dry run: no guest was started)",
        },
        Escaped(&rec.wafer),
        Escaped(&rec.version),
        Escaped(&rec.vo),
        Escaped(&rec.name),
        Escaped(&rec.slot)
    );
    for l in &rec.leases {
        println!(
            "  {} {} mac {}{}",
            l.network,
            l.ip,
            l.mac,
            l.hostname
                .as_ref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default()
        );
    }
    for f in &rec.files {
        println!("  wrote {}", f.display());
    }
    match &rec.launch {
        Some(Launch::Ran(c)) => println!("  ran: {c}"),
        Some(Launch::Printed(c)) => println!("  to start it, run: {c}"),
        None => {}
    }
    Ok(())
}

/// The site's slots and who holds them.
#[derive(Args, Debug)]
#[command(
    long_about = "List the site's Edge Services slots: memory, vcpus, disk, architecture, which VOs may\n\
    use each, its networks, and which deployment holds it.\n\nExamples:\n  wafer slots --site /etc/wafer/site.toml\n  wafer slots --site site.toml --json"
)]
pub struct SlotsArgs {
    /// The site configuration.
    #[arg(long, value_name = "SITE.toml")]
    pub site: PathBuf,
    /// As JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `wafer slots`.
pub fn run_slots(a: SlotsArgs) -> Result<()> {
    let site = load_site(&a.site)?;
    let status = deployment::ps(&site)
        .with_context(|| format!("reading the state of {}", site.state_dir.display()))?;
    let allocs: Vec<_> = status
        .deployments
        .iter()
        .map(|r| r.allocation.clone())
        .collect();
    let table = deploy::fit::slot_table(&site, &allocs);
    if a.json {
        let slots: Vec<_> = site
            .slots
            .iter()
            .map(|s| {
                json!({"name": s.name, "memory_mib": s.memory_mib, "vcpus": s.vcpus, "disk_mib": s.disk_mib,
                       "arch": s.arch, "vos": s.vos, "networks": s.networks,
                       "used_by": table.get(s.name.as_str()).copied().flatten()})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"site": site.name, "slots": slots}))?
        );
        return Ok(());
    }
    println!(
        "{:<12} {:>8} {:>5} {:>9} {:<8} {:<20} {:<20} used by",
        "slot", "memory", "vcpus", "disk", "arch", "vos", "networks"
    );
    for s in &site.slots {
        println!(
            "{:<12} {:>6}Mi {:>5} {:>7}Mi {:<8} {:<20} {:<20} {}",
            s.name,
            s.memory_mib,
            s.vcpus,
            s.disk_mib,
            s.arch,
            s.vos.join(","),
            s.networks.join(","),
            table.get(s.name.as_str()).copied().flatten().unwrap_or("-")
        );
    }
    Ok(())
}

/// Deployments, leases and resource use.
#[derive(Args, Debug)]
#[command(
    long_about = "List the site's deployments, every address lease, and the resources in use against what\n\
    the host sets aside.\n\nExamples:\n  wafer ps --site /etc/wafer/site.toml\n  wafer ps --site site.toml --json"
)]
pub struct PsArgs {
    /// The site configuration.
    #[arg(long, value_name = "SITE.toml")]
    pub site: PathBuf,
    /// As JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `wafer ps`.
pub fn run_ps(a: PsArgs) -> Result<()> {
    let site = load_site(&a.site)?;
    let st = deployment::ps(&site)
        .with_context(|| format!("reading the state of {}", site.state_dir.display()))?;
    if a.json {
        let v = json!({"site": site.name, "deployments": st.deployments, "leases": st.leases, "used": st.used,
                       "host": {"memory_mib": site.host.memory_mib, "vcpus": site.host.vcpus, "disk_mib": site.host.disk_mib}});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "used: memory {}/{} MiB, vcpus {}/{}, disk {}/{} MiB",
        st.used.memory_mib,
        site.host.memory_mib,
        st.used.vcpus,
        site.host.vcpus,
        st.used.disk_mib,
        site.host.disk_mib
    );
    if st.deployments.is_empty() {
        println!("no deployments");
    }
    for r in &st.deployments {
        let ips: Vec<String> = r
            .leases
            .iter()
            .map(|l| format!("{}={}", l.network, l.ip))
            .collect();
        println!(
            "{:<24} {} {} (VO {}) slot {} {} {}",
            Escaped(&r.name),
            Escaped(&r.wafer),
            Escaped(&r.version),
            Escaped(&r.vo),
            Escaped(&r.slot),
            state_text(r),
            ips.join(" ")
        );
    }
    for l in &st.leases {
        println!(
            "lease {} {} {} owner {}{}",
            l.network,
            l.ip,
            l.mac,
            l.owner,
            if l.committed { "" } else { " (pending)" }
        );
    }
    Ok(())
}

/// How `ps` names a deployment's state: a dry run's is never called running (op1).
fn state_text(r: &deployment::Record) -> &'static str {
    match r.state {
        deployment::State::Pending => "deploying",
        deployment::State::Running => "running",
        deployment::State::Printed => "not-started (dry run: `xl create` printed, not run)",
        deployment::State::Stopping => "stopping",
    }
}

/// Stop a deployment and release what it holds.
#[derive(Args, Debug)]
#[command(
    long_about = "Stop a deployment: `xl destroy` the guest, and once `xl list` no longer shows it, release its\n\
    address leases and slot and remove its files (the disk is kept with --keep-disk). A deployment\n\
    still being deployed is waited for first. If the guest cannot be confirmed gone (xl fails, or\n\
    --dry-run while it runs) nothing is released. For a dry-run deployment on a host without xl the\n\
    command is printed and everything released.\n\nExamples:\n  wafer stop cms-cms-squid --site /etc/wafer/site.toml\n  wafer stop cms-cms-squid --site site.toml --keep-disk"
)]
pub struct StopArgs {
    /// The deployment name (see `wafer ps`).
    pub name: String,
    /// The site configuration.
    #[arg(long, value_name = "SITE.toml")]
    pub site: PathBuf,
    /// Keep the deployment's disk.img.
    #[arg(long)]
    pub keep_disk: bool,
    /// Print the `xl destroy` command instead of running it.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `wafer stop`.
pub fn run_stop(a: StopArgs) -> Result<()> {
    let site = load_site(&a.site)?;
    // op1: an unknown name is refused before anything is locked or created, listing the names
    let names: Vec<String> = deployment::ps(&site)
        .with_context(|| format!("reading the state of {}", site.state_dir.display()))?
        .deployments
        .into_iter()
        .map(|r| r.name)
        .collect();
    if !names.iter().any(|n| *n == a.name) {
        bail!(
            "no deployment called {} at site {}; {}",
            Escaped(&a.name),
            Escaped(&site.name),
            if names.is_empty() {
                "it has no deployments".to_string()
            } else {
                format!("its deployments: {}", Escaped(&names.join(", ")))
            }
        );
    }
    let hv = XlTool::detect(a.dry_run);
    let (rec, t) = deployment::stop(&site, &a.name, a.keep_disk, &hv)
        .with_context(|| format!("stopping {}", a.name))?;
    println!(
        "stopped {} (slot {} released, {} lease(s) released)",
        rec.name,
        rec.slot,
        rec.leases.len()
    );
    match t {
        Teardown::Destroyed(Launch::Ran(c)) => println!("  ran: {c}"),
        Teardown::Released(Some(Launch::Printed(c))) => {
            println!("  run by hand if the guest is still up: {c}")
        }
        Teardown::Released(_) => println!("  the hypervisor had no such guest"),
        _ => {}
    }
    Ok(())
}

/// Reconcile what killed or failed deploys left with the hypervisor.
#[derive(Args, Debug)]
#[command(
    long_about = "Reconcile the site's state with Xen after a crash (every deploy does this first, too):\n\
    a deployment whose deploy died half-way (killed, power loss, a full disk at the final commit)\n\
    is looked up with `xl list`; a guest that exists is destroyed with `xl destroy`, and only once Xen\n\
    no longer lists it are its addresses, slot and files released. A deployment whose guest cannot be\n\
    confirmed gone keeps everything it holds. Deployments past their --ttl expiry are stopped the same\n\
    way. Exits 1 when something stays held; docs/site.md (Recovery) says why.\n\n\
    Examples:\n  wafer recover --site /etc/wafer/site.toml\n  wafer recover --site site.toml --dry-run"
)]
pub struct RecoverArgs {
    /// The site configuration.
    #[arg(long, value_name = "SITE.toml")]
    pub site: PathBuf,
    /// Do not run `xl destroy` (a guest that exists then stays, with everything it holds).
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `wafer recover`; exit 1 when a deployment stays held.
pub fn run_recover(a: RecoverArgs) -> Result<u8> {
    let site = load_site(&a.site)?;
    let hv = XlTool::detect(a.dry_run);
    let done = deployment::recover_site(&site, &hv, now())
        .with_context(|| format!("recovering the state of {}", site.state_dir.display()))?;
    let mut held = false;
    for (name, t) in &done {
        match t {
            Teardown::InProgress => println!("{name}: its deploy is still running; left alone"),
            Teardown::Released(_) => println!("{name}: no guest; released"),
            Teardown::Destroyed(_) => println!("{name}: guest destroyed; released"),
            Teardown::Held(why) => {
                held = true;
                println!("{name}: HELD: {why}")
            }
        }
    }
    if done.is_empty() {
        println!("nothing to recover");
    }
    Ok(u8::from(held))
}
