//! The real recipes of recipes/ build against bases made here (a small SL5/CentOS5/EL9-like tree
//! with the services they expect), and the results pass e2fsck.
//!
//! The test copies each recipe folder, writes the base tarball the README names, pins its
//! digest, and shrinks `headroom` (the real recipes ask for gigabytes of free space).

mod common;

use std::path::Path;

use builder::{build, BuildOptions, NoProgress};
use common::*;

const RECIPES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../recipes");

fn put(root: &Path, rel: &str, data: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn sysv(root: &Path, name: &str, header: &str) {
    put(
        root,
        &format!("etc/rc.d/init.d/{name}"),
        &format!("#!/bin/sh\n# {name}\n#\n# chkconfig: {header}\n# description: {name}\nexit 0\n"),
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Copy recipe `name`, make its base with `extra`, pin it, build; returns the manifest.
fn build_recipe(name: &str, base_file: &str, extra: impl FnOnce(&Path)) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    copy_dir(&Path::new(RECIPES).join(name), &dir);
    assert!(dir.join("README.md").is_file(), "{name} needs a README.md");
    let root = tmp.path().join("root");
    make_root(&root);
    extra(&root);
    let base = dir.join(base_file);
    run(std::process::Command::new("tar")
        .arg("--sort=name")
        .arg("--owner=0")
        .arg("--group=0")
        .arg("--numeric-owner")
        .arg(format!("--mtime=@{BASE_MTIME}"))
        .arg("-czf")
        .arg(&base)
        .arg("-C")
        .arg(&root)
        .arg("."));
    let recipe = dir.join("recipe.toml");
    let text = std::fs::read_to_string(&recipe).unwrap();
    let zeros = "0".repeat(64);
    assert!(
        text.contains(&zeros),
        "{name}: the shipped recipe pins a placeholder the user replaces"
    );
    let mut out = String::new();
    for line in text.replace(&zeros, &sha256_hex(&base)).lines() {
        if line.starts_with("headroom") {
            out.push_str("headroom = \"10%\"\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(&recipe, out).unwrap();
    let bundle = tmp.path().join("bundle");
    build(&recipe, &BuildOptions::new(&bundle), &NoProgress)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let img = unpack(&bundle, &work);
    fsck_clean(&img);
    let m = manifest(&bundle);
    assert_eq!(sha256_hex(&img), m["image"]["sha256"].as_str().unwrap());
    let mut m = m;
    m["debugfs_squid_conf"] = serde_json::Value::String(debugfs(&img, "cat /etc/squid/squid.conf"));
    m["debugfs_my_cnf"] = serde_json::Value::String(debugfs(&img, "cat /etc/my.cnf"));
    m["debugfs_wants"] = serde_json::Value::String(debugfs(
        &img,
        "ls /etc/systemd/system/multi-user.target.wants",
    ));
    m["debugfs_rc3"] = serde_json::Value::String(debugfs(&img, "ls /etc/rc.d/rc3.d"));
    m
}

#[test]
fn sl5_frontier_squid() {
    let m = build_recipe("sl5-frontier-squid", "sl5-base.tar.gz", |root| {
        sysv(root, "squid", "- 90 25");
        sysv(root, "sendmail", "2345 80 30");
        sysv(root, "cups", "2345 56 10");
        put(root, "usr/share/doc/squid-2.6/README", "doc\n");
    });
    assert_eq!(m["name"], "sl5-frontier-squid");
    assert_eq!(m["filesystem"]["type"], "ext3");
    let conf = m["debugfs_squid_conf"].as_str().unwrap();
    assert!(
        conf.contains("http_port 3128\n") && conf.contains("cache_mem 256 MB\n"),
        "{conf}"
    );
    assert!(
        conf.contains("for cms (sl5-frontier-squid 2.7.9-1)"),
        "{conf}"
    );
    let rc3 = m["debugfs_rc3"].as_str().unwrap();
    assert!(
        rc3.contains("K30sendmail") && rc3.contains("S09wafer-context"),
        "{rc3}"
    );
}

#[test]
fn centos5_dash_mysql() {
    let m = build_recipe("centos5-dash-mysql", "centos5-base.tar.gz", |root| {
        std::fs::write(
            root.join("etc/redhat-release"),
            "CentOS release 5.11 (Final)\n",
        )
        .unwrap();
        sysv(root, "mysqld", "- 64 36");
        sysv(root, "sendmail", "2345 80 30");
    });
    assert_eq!(m["os"]["id"], "centos");
    assert_eq!(m["requirements"]["memory_mib"], 2048);
    let cnf = m["debugfs_my_cnf"].as_str().unwrap();
    assert!(
        cnf.contains("innodb_buffer_pool_size=512M\n") && cnf.contains("max_connections=400\n"),
        "{cnf}"
    );
}

#[test]
fn el9_frontier_squid() {
    let m = build_recipe("el9-ce", "el9-base.tar.gz", |root| {
        std::fs::remove_file(root.join("etc/redhat-release")).unwrap();
        put(root, "etc/os-release", "NAME=\"AlmaLinux\"\nID=\"almalinux\"\nVERSION_ID=\"9.4\"\nPRETTY_NAME=\"AlmaLinux 9.4\"\n");
        put(root, "usr/lib/systemd/systemd", "elf");
        put(root, "usr/lib/systemd/system/squid.service", "[Unit]\nDescription=Squid\n[Service]\nExecStart=/usr/sbin/squid\n[Install]\nWantedBy=multi-user.target\n");
        put(
            root,
            "usr/lib/systemd/system/kdump.service",
            "[Unit]\nDescription=kdump\n[Install]\nWantedBy=multi-user.target\n",
        );
        put(root, "etc/cloud/cloud.cfg", "datasource_list: [ None ]\n");
        put(root, "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    });
    assert_eq!(m["os"]["id"], "almalinux");
    assert_eq!(m["filesystem"]["type"], "ext4");
    assert_eq!(m["requirements"]["guest_types"][0], "pvh");
    let wants = m["debugfs_wants"].as_str().unwrap();
    assert!(wants.contains("squid.service"), "{wants}");
}
