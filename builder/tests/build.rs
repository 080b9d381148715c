//! End-to-end builds from a tar base made in the test, checked with e2fsck, debugfs, zstd and
//! veritysetup; build-twice reproducibility; every step's error path with its message.

mod common;

use std::path::Path;

use builder::{build, BuildOptions, NoProgress};
use common::*;

const FULL: &str = r#"
[vars]
site_role = "FroNTier cache"

[[step]]
type = "users"
users = [ { name = "frontier", comment = "FroNTier", create_home = true, home = "/home/frontier" } ]

[[step]]
type = "copy"
src = "files/squid.conf"
dest = "/etc/squid/squid.conf"
owner = "squid"
mode = "0640"

[[step]]
type = "template"
src = "templates/motd.in"
dest = "/etc/motd"

[[step]]
type = "mkdir"
path = "/var/cache/squid"
owner = "squid"
group = "squid"
mode = "0750"

[[step]]
type = "symlink"
path = "/etc/squid/current.conf"
target = "squid.conf"

[[step]]
type = "services"
enable = ["squid", "rsync"]

[[step]]
type = "contextualize"

[[step]]
type = "purge"
keep = ["random-seed"]

[requirements]
memory = "1G"
vcpus = 2
guest_type = "pv"
xen_min = "3.1"
arch = "x86_64"

[output]
compression_level = 3
frame_size = "256K"
"#;

#[test]
fn full_build_is_accepted_by_the_real_tools() {
    let fx = Fixture::new(|_| {});
    let recipe = fx.recipe(FULL);
    let out = fx.tmp.path().join("bundle");
    let report = build(&recipe, &BuildOptions::new(&out), &NoProgress).unwrap();
    let m = manifest(&out);

    // Round trip: the bundle crate's strict reader opens what the builder wrote (disk length,
    // seek table and image size agreeing), to the very manifest the build reported, and
    // writing that manifest again gives wafer.json's bytes.
    let opened = bundle::Bundle::open(&out).unwrap();
    assert_eq!(Some(opened.manifest()), report.manifest.as_ref());
    assert_eq!(
        opened.manifest().to_json().unwrap(),
        std::fs::read(out.join("wafer.json")).unwrap()
    );
    assert_eq!(
        opened.manifest_bytes(),
        std::fs::read(out.join("wafer.json")).unwrap()
    );
    assert_eq!(opened.disk().size(), opened.manifest().image.size);
    assert!(opened.attestations().is_empty());

    // Manifest facts.
    assert_eq!(m["name"], "frontier-squid");
    assert_eq!(m["vo"], "cms");
    assert_eq!(m["arch"], "x86_64");
    assert_eq!(m["os"]["id"], "scientific");
    assert_eq!(m["os"]["version"], "5.11");
    assert_eq!(m["filesystem"]["type"], "ext3");
    assert_eq!(m["filesystem"]["profile"], "el5");
    assert_eq!(m["requirements"]["memory_mib"], 1024);
    assert_eq!(m["requirements"]["vcpus"], 2);
    assert_eq!(m["requirements"]["min_xen"], "3.1");
    assert_eq!(m["boot"]["kernel"], "/boot/vmlinuz-2.6.18-400.el5");
    assert_eq!(m["boot"]["initrd"], "/boot/initrd-2.6.18-400.el5.img");
    // a 2.6.18 kernel: xenlinux, console xvc0 (recorded for deploy, and in the default cmdline)
    assert_eq!(m["boot"]["kernel_flavour"], "xenlinux");
    assert_eq!(m["boot"]["cmdline"], "root=/dev/xvda ro console=xvc0");
    assert_eq!(m["base"]["sha256"], fx.base_sha.as_str());
    assert_eq!(m["source_date_epoch"], BASE_MTIME);
    assert!(out.join("attestations").is_dir());
    assert!(!out.join(".disk.img.partial").exists());

    // zstd gives back exactly the image the manifest describes.
    let work = fx.tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let img = unpack(&out, &work);
    assert_eq!(sha256_hex(&img), m["image"]["sha256"].as_str().unwrap());
    assert_eq!(
        std::fs::metadata(&img).unwrap().len(),
        m["image"]["size"].as_u64().unwrap()
    );
    assert_eq!(
        sha256_hex(&out.join("disk.img.zst")),
        m["compressed"]["sha256"].as_str().unwrap()
    );
    // veritysetup agrees on the root hash.
    let root = veritysetup_root(&img, m["image"]["verity"]["salt"].as_str().unwrap(), &work);
    assert_eq!(root, m["image"]["verity"]["root"].as_str().unwrap());
    // e2fsck finds nothing to fix.
    fsck_clean(&img);

    // The steps' effects, read from the image by debugfs.
    assert_eq!(
        debugfs(&img, "cat /etc/squid/squid.conf"),
        "http_port 3128\ncache_mem 256 MB\n"
    );
    let st = debugfs(&img, "stat /etc/squid/squid.conf");
    assert!(st.contains("Mode:  0640"), "{st}");
    assert!(st.contains("User:    23   Group:    23"), "{st}");
    assert_eq!(
        debugfs(&img, "cat /etc/motd"),
        "Wafer frontier-squid 1.0.0 for FroNTier cache\n"
    );
    let st = debugfs(&img, "stat /var/cache/squid");
    assert!(
        st.contains("Mode:  0750") && st.contains("User:    23"),
        "{st}"
    );
    let passwd = debugfs(&img, "cat /etc/passwd");
    // Highest free uid in 101..=499 (UID_MIN 500 in login.defs), group created with the same number.
    assert!(
        passwd.contains("frontier:x:499:499:FroNTier:/home/frontier:/sbin/nologin\n"),
        "{passwd}"
    );
    assert!(debugfs(&img, "cat /etc/group").contains("frontier:x:499:\n"));
    assert!(debugfs(&img, "cat /etc/shadow")
        .contains(&format!("frontier:!!:{}::::::\n", BASE_MTIME / 86400)));
    assert!(debugfs(&img, "cat /etc/gshadow").contains("frontier:!::\n"));
    let st = debugfs(&img, "stat /home/frontier");
    assert!(st.contains("User:   499   Group:   499"), "{st}");
    // chkconfig header "- 90 25": no default runlevels, so enabling means what `chkconfig squid
    // on` does: S links in 2345, K links in 0, 1 and 6...
    for level in 0..=6 {
        let rc = debugfs(&img, &format!("ls /etc/rc.d/rc{level}.d"));
        let (want, not) = if (2..=5).contains(&level) {
            ("S90squid", "K25squid")
        } else {
            ("K25squid", "S90squid")
        };
        assert!(rc.contains(want) && !rc.contains(not), "rc{level}.d: {rc}");
    }
    let rc3 = debugfs(&img, "ls /etc/rc.d/rc3.d");
    // ...and the contextualization hook (2345 09 91) starts in 3, stops in 0.
    assert!(rc3.contains("S09wafer-context"), "{rc3}");
    assert!(debugfs(&img, "ls /etc/rc.d/rc0.d").contains("K91wafer-context"));
    assert!(debugfs(&img, "stat /etc/rc.d/rc3.d/S09wafer-context")
        .contains("Fast link dest: \"../init.d/wafer-context\""));
    assert!(debugfs(&img, "cat /etc/xinetd.d/rsync").contains("\tdisable = no\n"));
    // Purge.
    assert!(!debugfs(&img, "ls /etc/ssh").contains("ssh_host_rsa_key"));
    assert!(debugfs(&img, "ls /etc/ssh").contains("sshd_config"));
    assert_eq!(
        debugfs(&img, "cat /etc/sysconfig/network-scripts/ifcfg-eth0"),
        "DEVICE=eth0\nBOOTPROTO=dhcp\n"
    );
    assert!(debugfs(&img, "stat /var/log/messages").contains("Size: 0"));
    assert!(!debugfs(&img, "ls /var/log").contains("messages.1"));
    assert!(!debugfs(&img, "ls /tmp").contains("junk"));
    assert!(!debugfs(&img, "ls /root").contains("bash_history"));
    assert!(
        debugfs(&img, "ls /var/lib").contains("random-seed"),
        "kept on request"
    );

    // The report lists what each step did, with recipe lines.
    let steps = &report.steps;
    assert_eq!(steps.len(), 8);
    assert_eq!(steps[1].kind, "copy");
    assert_eq!(steps[1].added, ["/etc/squid/squid.conf"]);
    assert_eq!(steps[1].line, 18);
    assert!(steps[7]
        .removed
        .contains(&"/etc/ssh/ssh_host_rsa_key".to_string()));
    assert!(report.inputs.contains_key("files/squid.conf"));
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("build-report.json")).unwrap()).unwrap();
    assert_eq!(rep["steps"][1]["added"][0], "/etc/squid/squid.conf");
}

/// Every file of two bundles, byte for byte.
fn assert_same_bundle(a: &Path, b: &Path) {
    let list = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(list(a), list(b));
    for name in list(a) {
        if a.join(&name).is_file() {
            assert!(
                std::fs::read(a.join(&name)).unwrap() == std::fs::read(b.join(&name)).unwrap(),
                "{name} differs"
            );
        }
    }
}

#[test]
fn two_builds_in_different_directories_are_identical() {
    let fx1 = Fixture::new(|_| {});
    let fx2 = Fixture::new(|_| {});
    assert_eq!(
        fx1.base_sha, fx2.base_sha,
        "the test's base tar must itself be reproducible"
    );
    let body = "[[step]]\ntype = \"copy\"\nsrc = \"files\"\ndest = \"/etc/squid\"\n\n[[step]]\ntype = \"users\"\nusers = [ { name = \"dash\" } ]\n";
    let r1 = fx1.recipe(body);
    let r2 = fx2.recipe(body);
    let o1 = fx1.tmp.path().join("out-a");
    let o2 = fx2.tmp.path().join("elsewhere/out-b");
    let mut opts1 = BuildOptions::new(&o1);
    opts1.threads = 1;
    build(&r1, &opts1, &NoProgress).unwrap();
    // A second later, with all cores: the wall clock and thread count must not matter.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    build(&r2, &BuildOptions::new(&o2), &NoProgress).unwrap();
    assert_same_bundle(&o1, &o2);
    // No host path leaks into the bundle's text files.
    for f in ["wafer.json", "build-report.json"] {
        let t = std::fs::read_to_string(o1.join(f)).unwrap();
        assert!(
            !t.contains(fx1.tmp.path().to_str().unwrap()),
            "{f} leaks the build directory"
        );
        assert!(
            !t.contains(fx2.tmp.path().to_str().unwrap()),
            "{f} leaks the build directory"
        );
    }
    // SOURCE_DATE_EPOCH changes the bundle (and is recorded).
    let o3 = fx1.tmp.path().join("out-c");
    let mut opts3 = BuildOptions::new(&o3);
    opts3.source_date_epoch = Some(1_500_000_000);
    build(&r1, &opts3, &NoProgress).unwrap();
    assert_eq!(manifest(&o3)["source_date_epoch"], 1_500_000_000);
    assert_ne!(
        manifest(&o3)["image"]["sha256"],
        manifest(&o1)["image"]["sha256"]
    );
}

fn build_err(fx: &Fixture, body: &str) -> String {
    let recipe = fx.recipe(body);
    let out = fx.tmp.path().join(format!("bundle-{}", rand_suffix()));
    build(&recipe, &BuildOptions::new(&out), &NoProgress)
        .unwrap_err()
        .to_string()
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn error_paths_name_the_recipe_line() {
    let fx = Fixture::new(|_| {});
    let file = fx.dir.join("recipe.toml").display().to_string();

    // Missing copy source (step 1 starts on line 11).
    let e = build_err(
        &fx,
        "\n[[step]]\ntype = \"copy\"\nsrc = \"files/nope.conf\"\ndest = \"/etc/nope.conf\"\n",
    );
    assert!(
        e.starts_with(&format!(
            "{file}:11: step 1 (copy): source 'files/nope.conf'"
        )),
        "{e}"
    );
    assert!(e.contains("No such file or directory"), "{e}");

    // Bad mode.
    let e = build_err(
        &fx,
        "\n[[step]]\ntype = \"chmod\"\npaths = [\"/etc/passwd\"]\nmode = \"rwxr-xr-x\"\n",
    );
    assert_eq!(e, format!("{file}:11: step 'chmod': bad mode 'rwxr-xr-x': expected an octal number such as \"0644\""));

    // Unknown user.
    let e = build_err(&fx, "\n[[step]]\ntype = \"copy\"\nsrc = \"files/squid.conf\"\ndest = \"/etc/x\"\nowner = \"nosuchuser\"\n");
    assert_eq!(
        e,
        format!("{file}:11: step 1 (copy): unknown user 'nosuchuser': not in the image's /etc/passwd (add it with a users step first)")
    );

    // Unknown group in chown.
    let e = build_err(
        &fx,
        "\n[[step]]\ntype = \"chown\"\npaths = [\"/etc/passwd\"]\ngroup = \"wheel\"\n",
    );
    assert_eq!(
        e,
        format!("{file}:11: step 1 (chown): unknown group 'wheel': not in the image's /etc/group")
    );

    // Unknown template variable.
    let e = build_err(
        &fx,
        "\n[[step]]\ntype = \"template\"\nsrc = \"templates/motd.in\"\ndest = \"/etc/motd\"\n",
    );
    assert!(
        e.contains(
            "step 1 (template): template 'templates/motd.in' line 1: unknown variable 'site_role'"
        ),
        "{e}"
    );

    // Services: missing script, missing chkconfig header.
    let e = build_err(
        &fx,
        "\n[[step]]\ntype = \"services\"\nenable = [\"httpd\"]\n",
    );
    assert!(
        e.starts_with(&format!(
            "{file}:11: step 1 (services): service 'httpd' not found"
        )),
        "{e}"
    );
    let e = build_err(
        &fx,
        "\n[[step]]\ntype = \"services\"\nenable = [\"nohdr\"]\n",
    );
    assert!(
        e.contains("/etc/rc.d/init.d/nohdr: no '# chkconfig: <levels> <start> <stop>' header"),
        "{e}"
    );

    // remove with must_exist, on the second step's line.
    let e = build_err(&fx, "\n[[step]]\ntype = \"mkdir\"\npath = \"/srv\"\n\n[[step]]\ntype = \"remove\"\npaths = [\"/opt/**\"]\nmust_exist = true\n");
    assert_eq!(
        e,
        format!("{file}:15: step 2 (remove): '/opt/**' matches nothing in the image")
    );

    // users: uid already taken.
    let e = build_err(
        &fx,
        "\n[[step]]\ntype = \"users\"\nusers = [ { name = \"dash\", uid = 23 } ]\n",
    );
    assert_eq!(
        e,
        format!("{file}:11: step 1 (users): user 'dash': uid 23 is already used by user 'squid'")
    );

    // Image too small, with the size needed.
    let e = build_err(&fx, "\n[output]\nsize = \"1M\"\n");
    assert!(
        e.starts_with(&format!(
            "{file}:12: output.size 1048576 bytes is too small: the contents need at least "
        )),
        "{e}"
    );

    // Declared arch differs from the programs in the image.
    let e = build_err(&fx, "\n[requirements]\narch = \"aarch64\"\n");
    assert_eq!(
        e,
        format!(
            "{file}:12: requirements.arch is aarch64 but the image's programs are built for x86_64"
        )
    );

    // Kernel named in [boot] is not in the image.
    let e = build_err(&fx, "\n[boot]\nkernel = \"/boot/vmlinuz-9.9\"\n");
    assert_eq!(
        e,
        format!("{file}:12: boot.kernel /boot/vmlinuz-9.9: no such file in the image")
    );

    // Unknown key: the TOML error carries line and column.
    let e = build_err(
        &fx,
        "\n[[step]]\ntype = \"mkdir\"\npath = \"/x\"\nowner_name = \"root\"\n",
    );
    assert!(e.contains("unknown field `owner_name`"), "{e}");
    assert!(e.contains("line 11, column 1"), "{e}");
}

#[test]
fn base_digest_mismatch_shows_both_digests() {
    let fx = Fixture::new(|_| {});
    let recipe = fx.recipe("");
    let text = std::fs::read_to_string(&recipe)
        .unwrap()
        .replace(&fx.base_sha, &"ab".repeat(32));
    std::fs::write(&recipe, text).unwrap();
    let e = build(
        &recipe,
        &BuildOptions::new(fx.tmp.path().join("o")),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        format!(
            "{}:9: base base.tar: sha256 mismatch: recipe pins {}, file has {}",
            recipe.display(),
            "ab".repeat(32),
            fx.base_sha
        )
    );
    // Nothing was written.
    assert!(!fx.tmp.path().join("o").exists());
}

#[test]
fn dir_base_is_pinned_by_its_listing_digest() {
    let fx = Fixture::new(|_| {});
    let root = fx.tmp.path().join("root");
    let tree = rootfs::dir::read_dir(&root, &Default::default()).unwrap();
    let digest = builder::tree_digest(&tree).unwrap();
    let recipe = fx.dir.join("dir.toml");
    std::fs::write(
        &recipe,
        format!("[wafer]\nname = \"d\"\nversion = \"1\"\nvo = \"cms\"\n[base]\nkind = \"dir\"\npath = \"../root\"\nsha256 = \"{digest}\"\n[output]\nprofile = \"el9\"\n"),
    )
    .unwrap();
    let out = fx.tmp.path().join("dir-bundle");
    // The base lies outside the recipe's folder: only the operator can allow that.
    let e = build(&recipe, &BuildOptions::new(&out), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("base.path '../root' must be a relative path inside the recipe's folder"),
        "{e}"
    );
    let mut opts = BuildOptions::new(&out);
    opts.allow_host_paths = vec![root.clone()];
    build(&recipe, &opts, &NoProgress).unwrap();
    assert_eq!(manifest(&out)["filesystem"]["type"], "ext4");
    let work = fx.tmp.path().join("w");
    std::fs::create_dir_all(&work).unwrap();
    fsck_clean(&unpack(&out, &work));
    // A changed file changes the digest: the build refuses.
    std::fs::write(root.join("etc/motd"), b"changed\n").unwrap();
    let mut opts = BuildOptions::new(fx.tmp.path().join("dir-bundle-2"));
    opts.allow_host_paths = vec![root.clone()];
    let e = build(&recipe, &opts, &NoProgress).unwrap_err().to_string();
    assert!(e.contains("sha256 mismatch"), "{e}");
}

#[test]
fn kernel_flavour_is_recorded_from_the_kernel_config_or_its_version() {
    // (kernel version, its /boot/config lines if any, recorded flavour, default console)
    let cases: &[(&str, Option<&str>, &str, &str)] = &[
        // pvops by its config, even though the name says xen
        (
            "5.14.0-70.xen.x86_64",
            Some("CONFIG_XEN=y\nCONFIG_HVC_XEN=y\n"),
            "pvops",
            "hvc0",
        ),
        // xenlinux by its config (a SUSE-style forward port, newer than 2.6.26)
        (
            "3.0.101-63-default",
            Some("CONFIG_X86_64_XEN=y\n# CONFIG_HVC_XEN is not set\n"),
            "xenlinux",
            "xvc0",
        ),
        // no config: by the version
        ("4.18.0-553.el8_10.x86_64", None, "pvops", "hvc0"),
        ("2.6.32.59-0.7-xen", None, "xenlinux", "xvc0"),
    ];
    for &(version, config, flavour, console) in cases {
        let fx = Fixture::new(|root| {
            // newer than the fixture's 2.6.18 kernels, so it is the one chosen
            common::put(root, &format!("boot/vmlinuz-{version}"), b"kernel");
            if let Some(c) = config {
                common::put(root, &format!("boot/config-{version}"), c.as_bytes());
            }
        });
        let recipe = fx.recipe("");
        let out = fx.tmp.path().join("bundle");
        build(&recipe, &BuildOptions::new(&out), &NoProgress).unwrap();
        let m = manifest(&out);
        assert_eq!(m["boot"]["kernel"], format!("/boot/vmlinuz-{version}"));
        assert_eq!(m["boot"]["kernel_flavour"], flavour, "{version}");
        assert_eq!(
            m["boot"]["cmdline"],
            format!("root=/dev/xvda ro console={console}"),
            "{version}"
        );
    }
}
