//! `wafer inspect`: bundles, partitioned disks made with the real sgdisk/sfdisk and mke2fs,
//! directories; JSON, summary and CycloneDX outputs; errors naming the file.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn ext_image(root: &Path, img: &Path) {
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(root)
        .arg(img)
        .arg("4M"));
}

fn dd_into(img: &Path, disk: &Path, sector: u64) {
    run(Command::new("dd")
        .arg(format!("if={}", img.display()))
        .arg(format!("of={}", disk.display()))
        .args(["bs=512", "conv=notrunc", "status=none"])
        .arg(format!("seek={sector}")));
}

fn inventory(path: &Path) -> serde_json::Value {
    let o = ok(wafer(&["inspect", s(path), "--json"]));
    serde_json::from_slice(&o.stdout).expect("inventory JSON")
}

fn paths(inv: &serde_json::Value) -> Vec<String> {
    inv["files"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| {
            e["paths"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn inspect_bundle_json_summary_and_sbom() {
    let f = Fixture::new(|r| put(r, "usr/bin/ping", &fake_elf()));
    let b = f.build(
        &f.recipe("[[step]]\ntype = \"chmod\"\npaths = [\"/usr/bin/ping\"]\nmode = \"4755\"\n"),
        "bundle",
    );
    let inv = inventory(&b);
    assert_eq!(inv["schema"], "wafer-inventory/1");
    assert_eq!(inv["system"]["distro"], "scientific");
    assert_eq!(inv["system"]["release"], "5.11");
    let setuid: Vec<&str> = inv["files"]["setuid"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert_eq!(setuid, ["/usr/bin/ping"], "{}", inv["files"]["setuid"]);
    assert!(paths(&inv).contains(&"/etc/ssh/sshd_config".to_string()));

    let o = ok(wafer(&["inspect", s(&b)]));
    let text = stdout(&o);
    assert!(
        text.contains("(bundle)") && text.contains("Scientific Linux SL release 5.11"),
        "{text}"
    );

    let sbom = f.path("sbom.json");
    let o = ok(wafer(&[
        "inspect",
        s(&b),
        "--sbom",
        "cyclonedx",
        "-o",
        s(&sbom),
    ]));
    assert!(o.stdout.is_empty());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&sbom).unwrap()).unwrap();
    assert_eq!(v["bomFormat"], "CycloneDX");
    assert_eq!(v["specVersion"], "1.5");
}

#[test]
fn inspect_finds_the_root_partition_of_gpt_and_mbr_disks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    make_root(&root);
    let img = tmp.path().join("root.ext4");
    ext_image(&root, &img);

    // GPT: an EFI system partition first, then a "Linux root (x86-64)" partition.
    let gpt = tmp.path().join("gpt.img");
    run(Command::new("truncate").args(["-s", "8M"]).arg(&gpt));
    run(Command::new("sgdisk")
        .args([
            "-n",
            "1:2048:4095",
            "-t",
            "1:EF00",
            "-n",
            "2:4096:12287",
            "-t",
            "2:8304",
        ])
        .arg(&gpt));
    dd_into(&img, &gpt, 4096);
    let inv = inventory(&gpt);
    assert!(paths(&inv).contains(&"/etc/redhat-release".to_string()));
    let o = ok(wafer(&["inspect", s(&gpt)]));
    assert!(
        stdout(&o).contains("(disk (gpt partition 2))"),
        "{}",
        stdout(&o)
    );

    // MBR: a swap partition, then a Linux one.
    let mbr = tmp.path().join("mbr.img");
    run(Command::new("truncate").args(["-s", "8M"]).arg(&mbr));
    let mut c = Command::new("sfdisk");
    c.arg("-q").arg(&mbr).stdin(std::process::Stdio::piped());
    let mut child = c.spawn().expect("sfdisk (Debian package fdisk)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\nstart=2048, size=2048, type=82\nstart=6144, size=8192, type=83\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    dd_into(&img, &mbr, 6144);
    let o = ok(wafer(&["inspect", s(&mbr)]));
    assert!(
        stdout(&o).contains("(disk (mbr partition 2))"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("Scientific Linux"), "{}", stdout(&o));
}

#[test]
fn inspect_errors_name_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.bin");
    std::fs::write(&junk, vec![7u8; 4096]).unwrap();
    let o = wafer(&["inspect", s(&junk)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("junk.bin") && stderr(&o).contains("not a wafer bundle"),
        "{}",
        stderr(&o)
    );

    // An MBR whose only entry points far outside the file.
    let mut d = vec![0u8; 4096];
    d[446 + 4] = 0x83;
    d[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    d[446 + 12..446 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    d[510] = 0x55;
    d[511] = 0xAA;
    let bad = tmp.path().join("bad-mbr.img");
    std::fs::write(&bad, d).unwrap();
    let o = wafer(&["inspect", s(&bad)]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("bad-mbr.img") && e.contains("MBR entry 1") && e.contains("outside"),
        "{e}"
    );

    let o = wafer(&["inspect", s(&tmp.path().join("missing"))]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing"), "{}", stderr(&o));
}
