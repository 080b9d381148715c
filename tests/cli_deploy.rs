//! End to end: build (signed provenance), inspect, vet (planted finding fails, fixed passes),
//! key generate, approve, verify (a tampered copy refused), deploy refused before touching the
//! site, deploy --dry-run (disk, kernel, CIDATA checked by fsck.fat/mtools, xl.cfg, leases),
//! slots, ps, stop.

mod common;
#[path = "../deploy/tests/support/xl_dry_run.rs"]
mod xl_dry_run;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// `wafer` as on a machine without Xen (this one may have xen-utils for xl-dry-run, but no
/// hypervisor for `xl list`): the deploys here are dry runs that print the xl command.
fn wafer(args: &[&str]) -> std::process::Output {
    wafer_env(args, &[("PATH", &path_without_xl())])
}

const POLICY: &str = "[policy]\nname = \"test site\"\nfail_on = \"medium\"\n\n[[privileged]]\nid = \"priv.allowlist\"\nseverity = \"high\"\ncheck = [\"setuid\", \"setgid\", \"capabilities\"]\nallow = []\n";

fn site_file(f: &Fixture, trust: &Path) -> PathBuf {
    let site = f.path("site.toml");
    let text = format!(
        r#"name = "test-edge"
[host]
memory_mib = 4096
vcpus = 4
disk_mib = 409600
[xen]
version = "4.17"
guest_types = ["pv", "pvh"]
[paths]
storage_dir = "{storage}"
state_dir = "{state}"
trust_store = "{trust}"
[[slot]]
name = "edge1"
memory_mib = 1024
vcpus = 1
cpu_weight = 384
cpu_cap = 60
disk_mib = 4096
arch = "x86_64"
vos = ["cms"]
networks = ["public"]
[[slot]]
name = "edge2"
memory_mib = 1024
vcpus = 1
disk_mib = 4096
arch = "x86_64"
vos = ["atlas"]
networks = ["public"]
[[network]]
name = "public"
bridge = "xenbr0"
kind = "public"
gateway = "192.0.2.1"
prefix = 24
dns = ["192.0.2.53"]
domain = "edge.example.org"
mac_prefix = "02:16:3e"
ranges = ["192.0.2.16/29"]
"#,
        storage = f.path("storage").display(),
        state = f.path("state").display(),
        trust = trust.display()
    );
    std::fs::write(&site, text).unwrap();
    std::fs::create_dir_all(f.path("storage")).unwrap();
    std::fs::create_dir_all(f.path("state")).unwrap();
    site
}

#[test]
fn end_to_end_build_vet_approve_verify_deploy_ps_stop() {
    let f = Fixture::new(|r| put(r, "usr/bin/evil", &fake_elf()));
    let (store, alice, admin) = site_trust_store(&f);
    let policy = f.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let site = site_file(&f, &store);

    // The VO administrator builds two versions: 1.0 with a planted setuid binary, 1.1 fixed.
    let bad = f.path("squid-1.0");
    let r1 = f.recipe_named(
        "v1.toml",
        "cms-squid",
        "1.0",
        "[[step]]\ntype = \"chmod\"\npaths = [\"/usr/bin/evil\"]\nmode = \"4755\"\n",
    );
    ok(wafer(&[
        "build",
        s(&r1),
        "-o",
        s(&bad),
        "--sign",
        s(&admin),
    ]));
    let good = f.path("squid-1.1");
    let r2 = f.recipe_named(
        "v2.toml",
        "cms-squid",
        "1.1",
        "[[step]]\ntype = \"copy\"\nsrc = \"files/squid.conf\"\ndest = \"/etc/squid/squid.conf\"\n",
    );
    ok(wafer(&[
        "build",
        s(&r2),
        "-o",
        s(&good),
        "--sign",
        s(&admin),
    ]));
    let o = ok(wafer(&["inspect", s(&good), "--json"]));
    let inv: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(inv["system"]["major_release"], 5);

    // The reviewer: 1.0 fails and is not approved; 1.1 passes and is approved.
    assert_eq!(
        wafer(&["vet", s(&bad), "--policy", s(&policy)])
            .status
            .code(),
        Some(1)
    );
    assert!(!wafer(&[
        "approve",
        s(&bad),
        "--key",
        s(&alice),
        "--policy",
        s(&policy)
    ])
    .status
    .success());
    assert_eq!(
        wafer(&["vet", s(&good), "--policy", s(&policy)])
            .status
            .code(),
        Some(0)
    );
    ok(wafer(&[
        "approve",
        s(&good),
        "--key",
        s(&alice),
        "--policy",
        s(&policy),
    ]));
    ok(wafer(&["verify", s(&good), "--trust", s(&store)]));

    // Refused deploys leave the site's storage and state untouched.
    let before = (snapshot(&f.path("storage")), snapshot(&f.path("state")));
    let o = wafer(&["deploy", s(&bad), "--site", s(&site), "--dry-run"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("refused: verification failed"),
        "{}",
        stderr(&o)
    );
    let tampered = f.path("tampered");
    copy_dir(&good, &tampered);
    let zst = tampered.join("disk.img.zst");
    let mut bytes = std::fs::read(&zst).unwrap();
    let i = bytes.len() / 3;
    bytes[i] ^= 0x10;
    std::fs::write(&zst, bytes).unwrap();
    let o = wafer(&["deploy", s(&tampered), "--site", s(&site), "--dry-run"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("refused"), "{}", stderr(&o));
    assert_eq!(
        before,
        (snapshot(&f.path("storage")), snapshot(&f.path("state")))
    );

    // The deployment.
    let ud = f.path("user-data");
    std::fs::write(&ud, "#cloud-config\nruncmd: [echo hello]\n").unwrap();
    let o = ok(wafer(&[
        "deploy",
        s(&good),
        "--site",
        s(&site),
        "--dry-run",
        "--user-data",
        s(&ud),
        "--json",
    ]));
    let rec: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let name = rec["name"].as_str().unwrap().to_string();
    assert_eq!(name, "cms-cms-squid");
    assert_eq!(rec["slot"], "edge1");
    assert_eq!(rec["state"], "printed");
    let launch = rec["launch"]["Printed"].as_str().unwrap();
    assert!(
        launch.starts_with("xl create ") && launch.ends_with("xl.cfg"),
        "{launch}"
    );
    let dir = f.path("storage").join(&name);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(good.join("wafer.json")).unwrap()).unwrap();
    assert_eq!(
        sha256_hex(&dir.join("disk.img")),
        m["image"]["sha256"].as_str().unwrap()
    );
    assert_eq!(
        std::fs::read(dir.join("kernel")).unwrap(),
        b"KERNEL-IMAGE-BYTES xen pv kernel"
    );
    assert_eq!(std::fs::read(dir.join("initrd")).unwrap(), b"INITRD-BYTES");
    run(Command::new("fsck.fat")
        .arg("-n")
        .arg(dir.join("cidata.img")));
    let listing = run(Command::new("mdir")
        .arg("-i")
        .arg(dir.join("cidata.img"))
        .arg("::"));
    assert!(
        listing.to_lowercase().contains("meta-data") || listing.to_lowercase().contains("meta-d~1"),
        "{listing}"
    );
    let ud_back = run(Command::new("mtype")
        .arg("-i")
        .arg(dir.join("cidata.img"))
        .arg("::user-data"));
    assert!(ud_back.contains("echo hello"), "{ud_back}");
    // The xl.cfg as Xen's own xl reads it (xl -N create through deploy/tests/tools/xl-dry-run):
    // everything the site and the wafer asked for is there, nothing silently dropped.
    assert_eq!(m["boot"]["kernel_flavour"], "xenlinux", "{m:#}");
    let (xl, said) = xl_dry_run::xl_run(&dir.join("xl.cfg"));
    assert!(said.is_empty(), "xl: {said}");
    let b = &xl["b_info"];
    assert_eq!(xl["c_info"]["name"], name.as_str(), "{xl:#}");
    assert_eq!(xl["c_info"]["type"], "pv", "{xl:#}");
    assert_eq!(b["max_memkb"], 1024 * 1024, "{xl:#}");
    assert_eq!(b["target_memkb"], 1024 * 1024, "{xl:#}");
    assert_eq!(b["max_vcpus"], 1, "{xl:#}");
    assert_eq!(b["sched_params"]["weight"], 384, "{xl:#}");
    assert_eq!(b["sched_params"]["cap"], 60, "the slot's cap: {xl:#}");
    assert_eq!(b["kernel"], dir.join("kernel").to_str().unwrap(), "{xl:#}");
    assert_eq!(b["ramdisk"], dir.join("initrd").to_str().unwrap(), "{xl:#}");
    // a 2.6.18-xen kernel: its console is xvc0
    assert_eq!(b["cmdline"], "root=/dev/xvda ro console=xvc0", "{xl:#}");
    assert_eq!(
        xl["disks"][0]["pdev_path"],
        dir.join("disk.img").to_str().unwrap()
    );
    assert_eq!(xl["disks"][0]["vdev"], "xvda");
    assert_eq!(xl["disks"][0]["readwrite"], 1);
    assert_eq!(
        xl["disks"][1]["pdev_path"],
        dir.join("cidata.img").to_str().unwrap()
    );
    assert_eq!(xl["disks"][1]["vdev"], "xvdb");
    assert!(
        xl["disks"][1].get("readwrite").is_none(),
        "CIDATA is read-only: {xl:#}"
    );
    assert_eq!(xl["nics"].as_array().map(Vec::len), Some(1), "{xl:#}");
    assert_eq!(xl["nics"][0]["bridge"], "xenbr0");
    assert_eq!(xl["nics"][0]["mac"], rec["leases"][0]["mac"], "{xl:#}");
    let ip = rec["leases"][0]["ip"].as_str().unwrap().to_string();
    assert!(f
        .path("state")
        .join("leases/public")
        .join(format!("{ip}.json"))
        .is_file());

    // A second deploy of the same name is refused; slots and ps show the deployment.
    let o = wafer(&["deploy", s(&good), "--site", s(&site), "--dry-run"]);
    assert!(!o.status.success());
    let o = ok(wafer(&["slots", "--site", s(&site)]));
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with("edge1") && l.ends_with(&name)),
        "{}",
        stdout(&o)
    );
    let o = ok(wafer(&["ps", "--site", s(&site), "--json"]));
    let ps: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ps["deployments"][0]["name"], name.as_str());
    assert_eq!(ps["used"]["memory_mib"], 1024);
    let o = ok(wafer(&["ps", "--site", s(&site)]));
    assert!(stdout(&o).contains(&ip), "{}", stdout(&o));

    // Stop, keeping the disk.
    let o = ok(wafer(&[
        "stop",
        &name,
        "--site",
        s(&site),
        "--keep-disk",
        "--dry-run",
    ]));
    assert!(stdout(&o).contains("xl destroy"), "{}", stdout(&o));
    assert!(dir.join("disk.img").is_file());
    assert!(!dir.join("xl.cfg").exists());
    let o = ok(wafer(&["ps", "--site", s(&site), "--json"]));
    let ps: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ps["deployments"].as_array().unwrap().len(), 0);
    assert_eq!(ps["leases"].as_array().unwrap().len(), 0);
    let o = wafer(&["stop", &name, "--site", s(&site)]);
    assert!(!o.status.success());
}

#[test]
fn site_errors_name_the_file() {
    let f = Fixture::new(|_| {});
    let bad = f.path("site.toml");
    std::fs::write(&bad, "name = \"x\"\nbogus = 1\n").unwrap();
    for args in [
        vec!["slots", "--site", s(&bad)],
        vec!["ps", "--site", s(&bad)],
        vec!["stop", "x", "--site", s(&bad)],
    ] {
        let o = wafer(&args);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("site.toml"), "{}", stderr(&o));
    }
}
