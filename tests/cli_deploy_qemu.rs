//! `wafer deploy` on a QEMU/KVM site (`[hypervisor] kind = "qemu"`): the dry run prints the
//! whole QEMU command line (virtio root disk first, CIDATA second and read-only, the leased MAC,
//! the serial console log, the QMP socket); a xenlinux kernel is refused before anything is
//! leased; and with the real `qemu-system-x86_64` (Debian `qemu-system-x86`) a wafer whose
//! kernel is a tiny multiboot program really starts: its serial line lands in the console log,
//! `wafer ps` reads `running` through QMP, `wafer stop` ends QEMU and frees the lease, and a
//! QEMU that died is shown `gone` and released by `wafer stop`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const POLICY: &str = "[policy]\nname = \"test site\"\nfail_on = \"medium\"\n\n[[privileged]]\nid = \"priv.allowlist\"\nseverity = \"high\"\ncheck = [\"setuid\", \"setgid\", \"capabilities\"]\nallow = []\n";

const MARK: &[u8] = b"WAFER-QEMU-GUEST-UP\n";

/// A fixture whose newest kernel is a pvops-named tiny multiboot kernel printing [`MARK`].
fn fixture() -> Fixture {
    Fixture::new(|r| {
        put(
            r,
            "boot/vmlinuz-6.1.0-28-amd64",
            &deploy::qemu::tiny_kernel(MARK, false),
        );
        put(r, "boot/initrd.img-6.1.0-28-amd64", b"INITRD");
    })
}

fn site_file(f: &Fixture, trust: &Path, accel: &str) -> PathBuf {
    let site = f.path("site.toml");
    let text = format!(
        r#"name = "kvm-edge"
[host]
memory_mib = 1024
vcpus = 2
disk_mib = 4096
[hypervisor]
kind = "qemu"
[qemu]
accel = "{accel}"
network = "user"
stop_timeout_s = 2
[paths]
storage_dir = "{storage}"
state_dir = "{state}"
trust_store = "{trust}"
[[slot]]
name = "kvm1"
memory_mib = 256
vcpus = 1
disk_mib = 1024
arch = "x86_64"
vos = ["cms"]
networks = ["public"]
[[network]]
name = "public"
bridge = "br0"
kind = "public"
gateway = "10.0.2.2"
prefix = 24
dns = ["10.0.2.3"]
mac_prefix = "02:16:3e"
ranges = ["10.0.2.16/29"]
"#,
        storage = f.path("storage").display(),
        state = f.path("state").display(),
        trust = trust.display()
    );
    std::fs::write(&site, text).unwrap();
    site
}

/// Built, approved and verified `cms-squid` 1.0.
fn approved(f: &Fixture) -> (PathBuf, PathBuf) {
    let (store, alice, admin) = trust_store(f);
    let r = f.recipe("");
    let out = f.path("squid");
    ok(wafer(&["build", s(&r), "-o", s(&out), "--sign", s(&admin)]));
    let policy = f.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    ok(wafer(&[
        "approve",
        s(&out),
        "--key",
        s(&alice),
        "--policy",
        s(&policy),
    ]));
    (out, store)
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// Kills a QEMU left behind by a failing test.
struct KillOnDrop(PathBuf);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(t) = std::fs::read_to_string(&self.0) {
            if let Ok(pid) = t.trim().parse::<i32>() {
                // SAFETY: kill of the pid QEMU wrote for this test's deployment.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Waits (bounded, generously: TCG on a loaded machine) until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{what} did not happen"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn dry_run_prints_the_qemu_command_line_and_xenlinux_is_refused() {
    let f = fixture();
    let (bundle, store) = approved(&f);
    let site = site_file(&f, &store, "tcg");
    let o = ok(wafer(&[
        "deploy", s(&bundle), "--site", s(&site), "--dry-run", "--json",
    ]));
    let rec = json(&o);
    assert_eq!(rec["state"], "printed");
    let dir = f.path("storage/cms-cms-squid");
    let line = rec["launch"]["Printed"].as_str().unwrap();
    let mac = rec["leases"][0]["mac"].as_str().unwrap();
    let d = dir.display();
    for want in [
        "qemu-system-x86_64 -name cms-cms-squid -machine q35 -accel tcg,thread=multi -cpu max -m 256 -smp 1 ".to_string(),
        format!("-kernel {d}/kernel -initrd {d}/initrd -append 'root=/dev/vda ro console=ttyS0' "),
        format!("-drive file={d}/disk.img,format=raw,if=virtio,index=0 -drive file={d}/cidata.img,format=raw,if=virtio,index=1,readonly=on "),
        format!("-netdev user,id=net0,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3 -device virtio-net-pci,netdev=net0,mac={mac} "),
        format!("-chardev file,id=console,path={d}/console.log -serial chardev:console "),
        format!("-chardev socket,id=qmp,path={d}/qmp.sock,server=on,wait=off -mon chardev=qmp,mode=control -pidfile {d}/qemu.pid -daemonize"),
    ] {
        assert!(line.contains(&want), "{want}\nnot in\n{line}");
    }
    assert!(line.ends_with("-daemonize"), "{line}");
    assert_eq!(rec["console"], format!("{d}/console.log"));
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("qemu.json")).unwrap()).unwrap();
    assert_eq!(spec["cmdline"], "root=/dev/vda ro console=ttyS0");
    assert_eq!(spec["nics"][0]["mac"], mac);
    // QEMU itself reads the disks the command line names: the root disk is the verified image
    assert!(std::fs::metadata(dir.join("disk.img")).unwrap().len() > 0);
    assert_eq!(
        std::fs::read(dir.join("kernel")).unwrap(),
        deploy::qemu::tiny_kernel(MARK, false)
    );
    // ps asks QMP: nothing runs
    let ps = json(&ok(wafer(&["ps", "--site", s(&site), "--json"])));
    assert_eq!(ps["hypervisor"], "qemu");
    assert_eq!(ps["deployments"][0]["guest"], "gone");
    ok(wafer(&["stop", "cms-cms-squid", "--site", s(&site)]));
    assert!(!dir.exists());

    // a xenlinux kernel runs only under Xen: refused, nothing leased or written
    let g = Fixture::new(|_| {});
    let (xen_bundle, xen_store) = approved(&g);
    let site = site_file(&g, &xen_store, "tcg");
    let o = wafer(&[
        "deploy", s(&xen_bundle), "--site", s(&site), "--dry-run",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("xenlinux"), "{}", stderr(&o));
    assert!(!g.path("storage/cms-cms-squid").exists());
    let ps = json(&ok(wafer(&["ps", "--site", s(&site), "--json"])));
    assert_eq!(ps["leases"].as_array().unwrap().len(), 0, "{ps:#}");
}

#[test]
fn real_qemu_starts_the_guest_ps_reads_qmp_stop_ends_it() {
    let f = fixture();
    let (bundle, store) = approved(&f);
    let site = site_file(&f, &store, "auto");
    let dir = f.path("storage/cms-cms-squid");
    let _guard = KillOnDrop(dir.join("qemu.pid"));
    let rec = json(&ok(wafer(&[
        "deploy", s(&bundle), "--site", s(&site), "--json",
    ])));
    assert_eq!(rec["state"], "running", "{rec:#}");
    let ran = rec["launch"]["Ran"].as_str().unwrap();
    assert!(ran.contains("-daemonize"), "{ran}");
    // the guest's own serial output reaches the console log
    let console = PathBuf::from(rec["console"].as_str().unwrap());
    eventually("the guest's line in the console log", || {
        std::fs::read(&console)
            .map(|b| b.windows(MARK.len()).any(|w| w == MARK))
            .unwrap_or(false)
    });
    let pid: i32 = std::fs::read_to_string(dir.join("qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    let ps = json(&ok(wafer(&["ps", "--site", s(&site), "--json"])));
    assert_eq!(ps["deployments"][0]["guest"], "running", "{ps:#}");
    assert_eq!(ps["leases"].as_array().unwrap().len(), 1);

    // stop: power-down (ignored by this guest), quit, gone; lease and folder released
    let o = ok(wafer(&["stop", "cms-cms-squid", "--site", s(&site)]));
    assert!(stdout(&o).contains("quit"), "{}", stdout(&o));
    eventually("QEMU's exit", || !alive(pid));
    assert!(!dir.exists());
    let ps = json(&ok(wafer(&["ps", "--site", s(&site), "--json"])));
    assert_eq!(ps["deployments"].as_array().unwrap().len(), 0, "{ps:#}");
    assert_eq!(ps["leases"].as_array().unwrap().len(), 0, "{ps:#}");

    // a QEMU that died: ps says gone, stop releases everything without a guest to end
    let rec = json(&ok(wafer(&[
        "deploy", s(&bundle), "--site", s(&site), "--json",
    ])));
    assert_eq!(rec["state"], "running");
    let pid: i32 = std::fs::read_to_string(dir.join("qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: the QEMU this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    eventually("QEMU's death", || !alive(pid));
    let ps = json(&ok(wafer(&["ps", "--site", s(&site), "--json"])));
    assert_eq!(ps["deployments"][0]["guest"], "gone", "{ps:#}");
    let o = ok(wafer(&["stop", "cms-cms-squid", "--site", s(&site)]));
    assert!(stdout(&o).contains("no such guest"), "{}", stdout(&o));
    let ps = json(&ok(wafer(&["ps", "--site", s(&site), "--json"])));
    assert_eq!(ps["leases"].as_array().unwrap().len(), 0, "{ps:#}");
}
