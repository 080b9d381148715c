//! Every xl.cfg wafer writes, read by Xen's own parser: each slot shape (weight/cap, cap only,
//! pinned CPUs, several networks, nothing set), each guest type (pv, pvh, hvm) and each Xen
//! version band (4.4, 4.5-4.9, 4.10 and later) goes through the real `deploy()` and then
//! through `xl -N create` (deploy/tests/tools/xl-dry-run). A unit-test module: outside the crate
//! only a `trust::Verified<Bundle>` can be deployed, so the fake image goes through the
//! crate-private `deploy_image`. The assertions are on xl's JSON
//! (libxl's domain configuration), compared with what the site file asked for: a key xl does
//! not read would vanish there, where our own parser would still see it.

#[path = "../tests/support/xl_dry_run.rs"]
mod xl_dry_run;

use std::cell::RefCell;
use std::io::Write;
use std::path::Path;

use crate::deployment::{deploy_image as deploy, DeployError, DeployOptions, Hypervisor, Launch};
use crate::fit::Requirements;
use crate::site::{GuestType, Site};
use crate::wafer::Image;
use crate::xl::{guest_cmdline, Domain, KernelFlavour};
use serde_json::Value;
use xl_dry_run::{xl_json, xl_run};

/// A verified image with the boot facts a bundle records.
struct Wafer {
    guest: GuestType,
    cmdline: Option<&'static str>,
    flavour: Option<KernelFlavour>,
    kernel_path: &'static str,
}

impl Image for Wafer {
    fn name(&self) -> &str {
        "squid"
    }
    fn version(&self) -> &str {
        "1.0"
    }
    fn vo(&self) -> &str {
        "cms"
    }
    fn requirements(&self) -> Requirements {
        Requirements {
            memory_mib: 256,
            vcpus: 1,
            disk_mib: 100,
            arch: "x86_64".into(),
            guest_types: vec![self.guest],
            min_xen: None,
        }
    }
    fn cmdline(&self) -> Option<String> {
        self.cmdline.map(str::to_string)
    }
    fn kernel_flavour(&self) -> Option<KernelFlavour> {
        self.flavour
    }
    fn kernel_path(&self) -> Option<String> {
        Some(self.kernel_path.into())
    }
    fn write_disk(&self, dest: &mut std::fs::File) -> std::io::Result<u64> {
        dest.write_all(b"disk bytes")?;
        Ok(10)
    }
    fn kernel(&self) -> std::io::Result<Vec<u8>> {
        Ok(b"kernel".to_vec())
    }
    fn initrd(&self) -> std::io::Result<Option<Vec<u8>>> {
        Ok(Some(b"initrd".to_vec()))
    }
}

/// A hypervisor whose `create` is Xen's own parser: it keeps xl's JSON and the file's text.
#[derive(Default)]
struct XlParser {
    seen: RefCell<Vec<(String, Value)>>,
}

impl Hypervisor for XlParser {
    fn launches(&self) -> bool {
        true
    }
    fn domains(&self) -> Result<Option<Vec<Domain>>, DeployError> {
        Ok(Some(Vec::new()))
    }
    fn create(&self, cfg: &Path) -> Result<Launch, DeployError> {
        let (json, said) = xl_run(cfg);
        let text = std::fs::read_to_string(cfg).unwrap();
        assert!(
            said.is_empty(),
            "xl had something to say about\n{text}\n{said}"
        );
        self.seen.borrow_mut().push((text, json));
        Ok(Launch::Ran(format!("xl create {}", cfg.display())))
    }
    fn destroy(&self, name: &str) -> Result<Launch, DeployError> {
        Ok(Launch::Ran(format!("xl destroy {name}")))
    }
}

/// One slot of the test site.
struct Slot {
    name: &'static str,
    memory_mib: u64,
    vcpus: u32,
    weight: Option<u32>,
    cap: Option<u32>,
    cpus: Option<&'static [u32]>,
    networks: &'static [&'static str],
}

const SLOTS: &[Slot] = &[
    Slot {
        name: "weightcap",
        memory_mib: 1536,
        vcpus: 2,
        weight: Some(512),
        cap: Some(150),
        cpus: None,
        networks: &["public"],
    },
    Slot {
        name: "caponly",
        memory_mib: 768,
        vcpus: 1,
        weight: None,
        cap: Some(50),
        cpus: None,
        networks: &["public"],
    },
    Slot {
        name: "pinned",
        memory_mib: 1024,
        vcpus: 2,
        weight: None,
        cap: None,
        cpus: Some(&[2, 3]),
        networks: &["private"],
    },
    Slot {
        name: "threenets",
        memory_mib: 2048,
        vcpus: 4,
        weight: Some(256),
        cap: None,
        cpus: None,
        networks: &["public", "private", "storage"],
    },
    Slot {
        name: "plain",
        memory_mib: 512,
        vcpus: 1,
        weight: None,
        cap: None,
        cpus: None,
        networks: &[],
    },
];

fn site_text(dir: &Path, xen: &str, guest_types: &str, slot: &Slot) -> String {
    let mut t = format!(
        r#"name = "xl-check"
[host]
memory_mib = 16384
vcpus = 8
disk_mib = 100000
pcpus = [2, 3, 4, 5]
[xen]
version = "{xen}"
guest_types = {guest_types}
[paths]
storage_dir = "{d}/storage"
state_dir = "{d}/state"
trust_store = "{d}/trust"
[[slot]]
name = "{name}"
memory_mib = {mem}
vcpus = {vcpus}
disk_mib = 1000
arch = "x86_64"
vos = ["*"]
networks = [{nets}]
"#,
        d = dir.display(),
        name = slot.name,
        mem = slot.memory_mib,
        vcpus = slot.vcpus,
        nets = slot
            .networks
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", "),
    );
    if let Some(w) = slot.weight {
        t += &format!("cpu_weight = {w}\n");
    }
    if let Some(c) = slot.cap {
        t += &format!("cpu_cap = {c}\n");
    }
    if let Some(p) = slot.cpus {
        t += &format!("cpus = {p:?}\n");
    }
    for (i, (net, bridge, prefix)) in [
        ("public", "xenbr0", "02:16:3e"),
        ("private", "xenbr1", "06:00:5e"),
        ("storage", "xenbr2", "0a:00:27"),
    ]
    .iter()
    .enumerate()
    {
        t += &format!(
            "[[network]]\nname = \"{net}\"\nbridge = \"{bridge}\"\nkind = \"private\"\naddress = \"10.{i}.0.0\"\nprefix = 24\nmac_prefix = \"{prefix}\"\nranges = [\"10.{i}.0.8/29\"]\n"
        );
    }
    t
}

/// Deploys `w` into the one-slot site and returns the xl.cfg text, xl's JSON and the record.
fn deploy_through_xl(
    xen: &str,
    guest_types: &str,
    slot: &Slot,
    w: Wafer,
) -> (String, Value, crate::deployment::Record, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap();
    let site = Site::from_toml_str(
        &site_text(d.path(), xen, guest_types, slot),
        "site.toml",
        None,
    )
    .unwrap_or_else(|e| panic!("site for Xen {xen}, slot {}: {e}", slot.name));
    let hv = XlParser::default();
    let opts = DeployOptions {
        name: None,
        slot: None,
        user_data: None,
        ttl: None,
        now: 1,
    };
    let rec = deploy(&site, &w, &opts, &hv)
        .unwrap_or_else(|e| panic!("deploy on Xen {xen}, slot {}: {e}", slot.name));
    let (text, json) = hv.seen.borrow_mut().pop().expect("xl create was called");
    (text, json, rec, d)
}

fn pvops(guest: GuestType) -> Wafer {
    Wafer {
        guest,
        cmdline: Some("root=/dev/xvda ro"),
        flavour: Some(KernelFlavour::Pvops),
        kernel_path: "/boot/vmlinuz-5.14.0-70.el9.x86_64",
    }
}

/// Asserts that xl's JSON holds everything the slot and the wafer asked for.
fn assert_xl_has(
    json: &Value,
    text: &str,
    slot: &Slot,
    guest: GuestType,
    rec: &crate::deployment::Record,
    dir: &Path,
    cmdline: &str,
) {
    let ctx = format!("slot {} ({guest}):\n{text}\n{json:#}", slot.name);
    let b = &json["b_info"];
    assert_eq!(json["c_info"]["type"], guest.as_str(), "{ctx}");
    assert_eq!(json["c_info"]["name"], rec.name, "{ctx}");
    let kib = slot.memory_mib * 1024;
    assert_eq!(b["max_memkb"], kib, "{ctx}");
    assert_eq!(b["target_memkb"], kib, "{ctx}");
    assert_eq!(b["max_vcpus"], slot.vcpus, "{ctx}");
    // The scheduler: what the site set is exactly what xl passes on; nothing else.
    let sched = &b["sched_params"];
    match slot.weight {
        Some(w) => assert_eq!(sched["weight"], w, "weight dropped: {ctx}"),
        None => assert!(sched.get("weight").is_none(), "{ctx}"),
    }
    match slot.cap {
        Some(c) => assert_eq!(sched["cap"], c, "cap dropped: {ctx}"),
        None => assert!(sched.get("cap").is_none(), "{ctx}"),
    }
    match slot.cpus {
        Some(p) => {
            let want: Vec<Value> = (0..slot.vcpus).map(|_| Value::from(p.to_vec())).collect();
            assert_eq!(
                b["vcpu_hard_affinity"],
                Value::Array(want),
                "pinning dropped: {ctx}"
            );
        }
        None => assert!(b.get("vcpu_hard_affinity").is_none(), "{ctx}"),
    }
    // Direct kernel boot from the files deploy extracted.
    let storage = dir.join("storage").join(&rec.name);
    assert_eq!(
        b["kernel"],
        storage.join("kernel").to_str().unwrap(),
        "{ctx}"
    );
    assert_eq!(
        b["ramdisk"],
        storage.join("initrd").to_str().unwrap(),
        "{ctx}"
    );
    assert_eq!(b["cmdline"], cmdline, "{ctx}");
    // Disks: the verified image read-write as xvda, the CIDATA disk read-only as xvdb.
    let disks = json["disks"]
        .as_array()
        .unwrap_or_else(|| panic!("no disks: {ctx}"));
    assert_eq!(disks.len(), 2, "{ctx}");
    for (d, (file, vdev, rw)) in disks
        .iter()
        .zip([("disk.img", "xvda", true), ("cidata.img", "xvdb", false)])
    {
        assert_eq!(
            d["pdev_path"],
            storage.join(file).to_str().unwrap(),
            "{ctx}"
        );
        assert_eq!(d["vdev"], vdev, "{ctx}");
        assert_eq!(d["format"], "raw", "{ctx}");
        // libxl leaves `readwrite` out when it is 0 (its default).
        assert_eq!(
            d.get("readwrite").and_then(Value::as_i64).unwrap_or(0),
            i64::from(rw),
            "{ctx}"
        );
    }
    // One nic per network, in the site's order, with the leased MAC and the network's bridge.
    let nics = json
        .get("nics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert_eq!(nics.len(), slot.networks.len(), "{ctx}");
    assert_eq!(rec.leases.len(), slot.networks.len(), "{ctx}");
    for (i, (nic, lease)) in nics.iter().zip(&rec.leases).enumerate() {
        let bridge = match lease.network.as_str() {
            "public" => "xenbr0",
            "private" => "xenbr1",
            _ => "xenbr2",
        };
        assert_eq!(lease.network, slot.networks[i], "{ctx}");
        assert_eq!(nic["mac"], lease.mac, "{ctx}");
        assert_eq!(nic["bridge"], bridge, "{ctx}");
        assert_eq!(nic["devid"], i, "{ctx}");
    }
}

#[test]
fn every_slot_shape_reaches_xl_on_the_current_band() {
    for slot in SLOTS {
        for guest in [GuestType::Pv, GuestType::Pvh, GuestType::Hvm] {
            let (text, json, rec, d) =
                deploy_through_xl("4.17", "[\"pv\", \"pvh\", \"hvm\"]", slot, pvops(guest));
            assert_xl_has(
                &json,
                &text,
                slot,
                guest,
                &rec,
                d.path(),
                "root=/dev/xvda ro console=hvc0",
            );
            assert!(text.contains(&format!("type = \"{guest}\"")), "{text}");
        }
    }
}

#[test]
fn each_xen_band_gets_the_keys_its_xl_reads() {
    // (site Xen, type key, command-line key, guest types the site may run)
    let bands: &[(&str, &str, &str, &[GuestType])] = &[
        ("4.4", "builder", "extra", &[GuestType::Pv, GuestType::Hvm]),
        (
            "4.4.4",
            "builder",
            "extra",
            &[GuestType::Pv, GuestType::Hvm],
        ),
        (
            "4.5",
            "builder",
            "cmdline",
            &[GuestType::Pv, GuestType::Hvm],
        ),
        (
            "4.9",
            "builder",
            "cmdline",
            &[GuestType::Pv, GuestType::Hvm],
        ),
        (
            "4.10",
            "type",
            "cmdline",
            &[GuestType::Pv, GuestType::Pvh, GuestType::Hvm],
        ),
        (
            "4.17",
            "type",
            "cmdline",
            &[GuestType::Pv, GuestType::Pvh, GuestType::Hvm],
        ),
    ];
    for &(xen, type_key, cmdline_key, guests) in bands {
        let types = format!(
            "[{}]",
            guests
                .iter()
                .map(|g| format!("\"{g}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for &guest in guests {
            // Weight/cap and pinning on each band: the shapes whose keys were misspelt before.
            for slot in [&SLOTS[0], &SLOTS[2], &SLOTS[3]] {
                let (text, json, rec, d) = deploy_through_xl(xen, &types, slot, pvops(guest));
                let keys: Vec<&str> = text
                    .lines()
                    .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
                    .collect();
                assert!(keys.contains(&type_key), "Xen {xen}: {text}");
                assert!(keys.contains(&cmdline_key), "Xen {xen}: {text}");
                for gone in ["type", "builder", "cmdline", "extra"] {
                    if gone != type_key && gone != cmdline_key {
                        assert!(
                            !keys.contains(&gone),
                            "Xen {xen} does not read {gone}: {text}"
                        );
                    }
                }
                assert_xl_has(
                    &json,
                    &text,
                    slot,
                    guest,
                    &rec,
                    d.path(),
                    "root=/dev/xvda ro console=hvc0",
                );
            }
        }
    }
}

#[test]
fn sites_whose_xen_cannot_take_the_config_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let slot = &SLOTS[4];
    for (xen, types, want) in [
        (
            "4.9",
            "[\"pv\", \"pvh\"]",
            "xen.guest_types: pvh guests need Xen 4.10 or later",
        ),
        ("4.3", "[\"pv\"]", "xen.version: Xen 4.3 is older than 4.4"),
    ] {
        let e = Site::from_toml_str(&site_text(d.path(), xen, types, slot), "site.toml", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e}");
    }
}

#[test]
fn the_console_follows_the_guest_kernel() {
    let slot = &SLOTS[1];
    let all = "[\"pv\", \"pvh\", \"hvm\"]";
    // (recorded flavour, kernel file, manifest command line, what the guest gets)
    let cases: &[(Option<KernelFlavour>, &str, Option<&str>, &str)] = &[
        // Recorded by the builder: the recorded flavour wins over the file name.
        (
            Some(KernelFlavour::Xenlinux),
            "/boot/vmlinuz-2.6.18-419.el5xen",
            Some("root=/dev/xvda ro console=hvc0"),
            "root=/dev/xvda ro console=xvc0",
        ),
        (
            Some(KernelFlavour::Pvops),
            "/boot/vmlinuz-2.6.18-419.el5xen",
            Some("root=/dev/xvda ro console=xvc0"),
            "root=/dev/xvda ro console=hvc0",
        ),
        (
            Some(KernelFlavour::Xenlinux),
            "/boot/vmlinuz-x",
            Some("root=/dev/sda1 ro"),
            "root=/dev/sda1 ro console=xvc0",
        ),
        // Old bundles: guessed from the file name.
        (
            None,
            "/boot/vmlinuz-2.6.18-419.el5xen",
            Some("root=/dev/xvda ro"),
            "root=/dev/xvda ro console=xvc0",
        ),
        (
            None,
            "/boot/vmlinuz-2.6.18-400.el5",
            Some("root=/dev/xvda ro"),
            "root=/dev/xvda ro console=xvc0",
        ),
        (
            None,
            "/boot/vmlinuz-2.6.32.12-0.7-xen",
            None,
            "root=/dev/xvda ro console=xvc0",
        ),
        (
            None,
            "/boot/vmlinuz-3.10.0-1160.el7.x86_64",
            Some("root=/dev/xvda ro console=xvc0"),
            "root=/dev/xvda ro console=hvc0",
        ),
        // A console that is not a Xen one (serial, tty) is the wafer's choice and stays.
        (
            Some(KernelFlavour::Pvops),
            "/boot/vmlinuz-6.1.0",
            Some("root=/dev/xvda console=ttyS0,115200 ro"),
            "root=/dev/xvda console=ttyS0,115200 ro",
        ),
    ];
    for &(flavour, kernel_path, cmdline, want) in cases {
        let w = Wafer {
            guest: GuestType::Pv,
            cmdline,
            flavour,
            kernel_path,
        };
        let (text, json, _, _d) = deploy_through_xl("4.17", all, slot, w);
        assert_eq!(
            json["b_info"]["cmdline"], want,
            "{kernel_path} {flavour:?}:\n{text}"
        );
        // and on the oldest band, through `extra`
        let w = Wafer {
            guest: GuestType::Pv,
            cmdline,
            flavour,
            kernel_path,
        };
        let (text, json, _, _d) = deploy_through_xl("4.4", "[\"pv\"]", slot, w);
        assert_eq!(
            json["b_info"]["cmdline"], want,
            "{kernel_path} {flavour:?}:\n{text}"
        );
    }
    assert_eq!(
        guest_cmdline(Some("console=hvc0,9600 quiet"), KernelFlavour::Xenlinux),
        "console=xvc0,9600 quiet"
    );
    assert_eq!(
        guest_cmdline(Some(""), KernelFlavour::Pvops),
        "console=hvc0"
    );
}

#[test]
fn xl_really_drops_a_key_it_does_not_know() {
    // Why the tests above ask xl and not our own parser: the old `cpu_cap` key reads back
    // fine with ours, and xl silently gives the guest no cap at all.
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("old.cfg");
    std::fs::write(
        &cfg,
        "name = \"old\"\ntype = \"pv\"\nkernel = \"/k\"\nmemory = 256\nvcpus = 1\ncpu_weight = 512\ncpu_cap = 150\n",
    )
    .unwrap();
    let json = xl_json(&cfg);
    assert_eq!(json["b_info"]["sched_params"]["weight"], 512, "{json:#}");
    assert!(
        json["b_info"]["sched_params"].get("cap").is_none(),
        "xl read cpu_cap after all: {json:#}"
    );
}
