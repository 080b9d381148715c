//! `wafer deploy`, `wafer slots`, `wafer ps`, `wafer stop`: the site side.
//!
//! `deploy` verifies the bundle first with `trust::verify_dir` (nothing is written to the site's
//! storage or state directories before that passes) and hands the `trust::Verified<Bundle>` it
//! returns to `deploy::deployment::deploy`, which materialises and checks the disk.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use deploy::deployment::{self, hypervisor_for, DeployOptions, Launch, Teardown};
use deploy::site::Site;
use serde_json::json;

use super::trustcmd::{load_store, verify_bundle};
use super::Ui;
use rootfs::escape::Escaped;

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
        when xl is absent, print the command instead. On a QEMU/KVM site ([hypervisor] kind = \"qemu\")\n\
        it writes qemu.json and starts qemu-system-x86_64 (KVM when it works, else TCG) with the\n\
        disks on virtio, a QMP socket, and the serial console in STORAGE/NAME/console.log (the\n\
        record's `console` in --json). The site file is documented in docs/site.md.\n\n\
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
    if !a.dry_run && !hypervisor_for(&site, false).launches() {
        match site.qemu() {
            Some(q) => bail!(
                "{}: no `{}` here (the site's qemu.binary), so no guest can be started: install \
                 QEMU (Debian: qemu-system-x86) or give --dry-run to write the disk, CIDATA and \
                 qemu.json and print the QEMU command line (nothing was written)",
                a.bundle.display(),
                Escaped(&q.binary)
            ),
            None => bail!(
                "{}: no `xl` on the PATH, so no guest can be started here: run wafer deploy on the Xen \
                 host as a user that may run `xl`, or give --dry-run to write the disk, CIDATA and \
                 xl.cfg and print the `xl create` command (nothing was written)",
                a.bundle.display()
            ),
        }
    }
    let store_dir = a.trust.clone().unwrap_or_else(|| site.trust_store.clone());
    let store = load_store(&store_dir)?;
    let user_data = match &a.user_data {
        Some(p) => Some(read_user_data(p)?),
        None => None,
    };
    let sp = ui.spinner(&format!("verifying {}", a.bundle.display()));
    let check = verify_bundle(&a.bundle, &store, false, 0);
    sp.finish_and_clear();
    let verified = match check {
        Ok(v) => v,
        Err(report) => {
            eprint!("{}", report);
            let why: Vec<String> = report
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
    };
    let opts = DeployOptions {
        name: a.name.clone(),
        slot: a.slot.clone(),
        user_data,
        ttl: a.ttl,
        now: now(),
    };
    let hv = hypervisor_for(&site, a.dry_run);
    let sp = ui.spinner("deploying");
    let rec = deployment::deploy(&site, &verified, &opts, hv.as_ref())
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
    if let Some(c) = &rec.console {
        println!("  console log: {}", c.display());
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
    // ask the hypervisor (read-only: `xl list`, or each QEMU's QMP socket) what runs
    let guests: std::collections::BTreeMap<String, String> =
        deployment::guest_states(hypervisor_for(&site, true).as_ref(), &st.deployments)
            .into_iter()
            .collect();
    if a.json {
        let mut deployments: Vec<serde_json::Value> = Vec::new();
        for r in &st.deployments {
            let mut v = serde_json::to_value(r).context("serializing a deployment record")?;
            if let Some(o) = v.as_object_mut() {
                o.insert("guest".into(), json!(guests.get(&r.name)));
            }
            deployments.push(v);
        }
        let v = json!({"site": site.name, "hypervisor": site.hypervisor.kind(), "deployments": deployments, "leases": st.leases, "used": st.used,
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
            "{:<24} {} {} (VO {}) slot {} {} guest {} {}",
            Escaped(&r.name),
            Escaped(&r.wafer),
            Escaped(&r.version),
            Escaped(&r.vo),
            Escaped(&r.slot),
            state_text(r),
            Escaped(guests.get(&r.name).map_or("unknown", String::as_str)),
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
    long_about = "Stop a deployment: `xl destroy` the guest (on a QEMU site: ACPI power-down through its QMP\n\
    socket, `quit` after the site's qemu.stop_timeout_s), and once `xl list` no longer shows it (QEMU: its\n\
    socket and process are gone), release its\n\
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
    let hv = hypervisor_for(&site, a.dry_run);
    let (rec, t) = deployment::stop(&site, &a.name, a.keep_disk, hv.as_ref())
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
    let hv = hypervisor_for(&site, a.dry_run);
    let done = deployment::recover_site(&site, hv.as_ref(), now())
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
