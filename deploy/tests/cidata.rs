//! CIDATA image checked by the real tools: fsck.fat (dosfstools), mdir/mtype/mlabel (mtools),
//! and cloud-init's own network-config parser (`cloud-init devel net-convert`).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use deploy::cidata::{build_image, write_image, Context, Interface, DEFAULT_USER_DATA};

fn run(tool: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(tool)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {tool} (install the Debian package providing it): {e}")
        });
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ctx() -> Context {
    Context {
        instance_id: "wafer-cms-squid-1a2b3c".into(),
        hostname: "squid1.edge.example.org".into(),
        interfaces: vec![
            Interface {
                name: "eth0".into(),
                network: "public".into(),
                mac: "02:16:3e:12:34:56".parse().unwrap(),
                address: Ipv4Addr::new(192, 0, 2, 17),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
                dns: vec![Ipv4Addr::new(192, 0, 2, 53), Ipv4Addr::new(192, 0, 2, 54)],
                search: Some("edge.example.org".into()),
            },
            Interface {
                name: "eth1".into(),
                network: "private".into(),
                mac: "06:00:5e:aa:bb:cc".parse().unwrap(),
                address: Ipv4Addr::new(10, 20, 1, 5),
                prefix: 16,
                gateway: None,
                dns: vec![],
                search: None,
            },
        ],
        user_data: None,
    }
}

#[test]
fn image_passes_fsck_and_mtools_show_the_files() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("cidata.img");
    let c = ctx();
    write_image(&c, &img).unwrap();
    let p = img.to_str().unwrap();

    let (rc, out, err) = run("fsck.fat", &["-n", p]);
    assert_eq!(rc, 0, "fsck.fat -n failed:\n{out}\n{err}");

    let (rc, out, err) = run("mlabel", &["-i", p, "-s", "::"]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("Volume label is CIDATA"), "{out}");

    let (rc, out, err) = run("mdir", &["-i", p, "-b", "::"]);
    assert_eq!(rc, 0, "{err}");
    let mut names: Vec<&str> = out.lines().map(|l| l.trim_start_matches("::/")).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "meta-data",
            "network-config",
            "user-data",
            "wafer-context.env"
        ],
        "{out}"
    );

    for (name, want) in [
        ("meta-data", c.meta_data()),
        ("network-config", c.network_config()),
        ("user-data", DEFAULT_USER_DATA.to_string()),
        ("wafer-context.env", c.context_env()),
    ] {
        let (rc, out, err) = run("mtype", &["-i", p, &format!("::{name}")]);
        assert_eq!(rc, 0, "{err}");
        assert_eq!(out, want, "{name}");
    }
    let (_, meta, _) = run("mtype", &["-i", p, "::meta-data"]);
    assert_eq!(
        meta,
        "instance-id: wafer-cms-squid-1a2b3c\nlocal-hostname: squid1.edge.example.org\n"
    );

    // blkid (util-linux) sees the label the way cloud-init's NoCloud lookup does
    let (rc, out, _) = run("blkid", &["-p", "-o", "value", "-s", "LABEL", p]);
    assert_eq!((rc, out.trim()), (0, "CIDATA"));
}

#[test]
fn reproducible_bytes_and_user_data_passthrough() {
    let a = build_image(&ctx()).unwrap();
    let b = build_image(&ctx()).unwrap();
    assert!(a == b, "two builds differ");
    let mut c2 = ctx();
    c2.instance_id = "other".into();
    assert!(build_image(&c2).unwrap() != a);

    // a VO's user-data (here a real cloud-init example) goes in byte for byte, large ones too
    let ud = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/cloud-init-nocloud/cloud-config-run-cmds.txt"
    ))
    .unwrap();
    let mut big = ud.clone();
    big.extend(std::iter::repeat_n(b'#', 3 << 20));
    for data in [ud, big] {
        let mut c = ctx();
        c.user_data = Some(data.clone());
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("x.img");
        write_image(&c, &img).unwrap();
        let p = img.to_str().unwrap();
        let (rc, out, err) = run("fsck.fat", &["-n", p]);
        assert_eq!(rc, 0, "{out}{err}");
        let copy = d.path().join("ud");
        let (rc, _, err) = run("mcopy", &["-i", p, "::user-data", copy.to_str().unwrap()]);
        assert_eq!(rc, 0, "{err}");
        assert!(std::fs::read(&copy).unwrap() == data);
    }
    let mut c = ctx();
    c.user_data = Some(vec![0; deploy::cidata::MAX_USER_DATA + 1]);
    assert!(build_image(&c).is_err());
    let mut c = ctx();
    c.hostname = "bad_host".into();
    assert!(build_image(&c).is_err());
}

fn net_convert(nc: &Path, out: &Path, distro: &str, kind: &str) -> (i32, String) {
    let (rc, o, e) = run(
        "cloud-init",
        &[
            "devel",
            "net-convert",
            "-p",
            nc.to_str().unwrap(),
            "-k",
            "yaml",
            "-d",
            out.to_str().unwrap(),
            "-D",
            distro,
            "-O",
            kind,
        ],
    );
    (rc, format!("{o}{e}"))
}

fn read_tree(dir: &Path) -> String {
    let mut s = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                s.push_str(&std::fs::read_to_string(e.path()).unwrap());
            }
        }
    }
    s
}

#[test]
fn cloud_init_parses_our_network_config() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("cidata.img");
    write_image(&ctx(), &img).unwrap();
    // take the file back out of the image, as the guest would see it
    let nc = d.path().join("network-config");
    let (rc, _, err) = run(
        "mcopy",
        &[
            "-i",
            img.to_str().unwrap(),
            "::network-config",
            nc.to_str().unwrap(),
        ],
    );
    assert_eq!(rc, 0, "{err}");

    let out = d.path().join("networkd");
    let (rc, log) = net_convert(&nc, &out, "debian", "networkd");
    assert_eq!(rc, 0, "cloud-init rejected network-config:\n{log}");
    let units = read_tree(&out);
    for want in [
        "MACAddress=02:16:3e:12:34:56",
        "Address=192.0.2.17/24",
        "Gateway=192.0.2.1",
        "DNS=192.0.2.53 192.0.2.54",
        "MACAddress=06:00:5e:aa:bb:cc",
        "Address=10.20.1.5/16",
    ] {
        assert!(
            units.contains(want),
            "networkd output lacks {want}:\n{units}"
        );
    }
    assert_eq!(
        units.matches("Gateway=").count(),
        1,
        "one default route:\n{units}"
    );

    // the RHEL-family renderer (old SL/CentOS guests use ifcfg files)
    let out = d.path().join("sysconfig");
    let (rc, log) = net_convert(&nc, &out, "centos", "sysconfig");
    assert_eq!(rc, 0, "{log}");
    let ifcfg = read_tree(&out);
    assert!(
        ifcfg.contains("IPADDR=192.0.2.17") && ifcfg.contains("HWADDR=02:16:3e:12:34:56"),
        "{ifcfg}"
    );

    // and cloud-init does refuse a broken one, so the check above means something
    let bad = d.path().join("bad");
    for (i, broken) in [
        "version: 1\nconfig:\n  - type: bogus\n    name: eth0\n",
        "version: 1\nconfig:\n  - type: physical\n    name: eth0\n    subnets: [{type: static, address: 192.0.2.5, netmask: \"255.0.255.0\"}]\n",
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(&bad, broken).unwrap();
        let (rc, _) = net_convert(&bad, &d.path().join(format!("o{i}")), "debian", "networkd");
        assert_ne!(rc, 0, "cloud-init accepted a broken network-config:\n{broken}");
    }
}

#[test]
fn default_user_data_passes_cloud_init_schema() {
    let d = tempfile::tempdir().unwrap();
    let ud = d.path().join("user-data");
    std::fs::write(&ud, ctx().user_data()).unwrap();
    let (rc, out, err) = run("cloud-init", &["schema", "-c", ud.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("Valid"), "{out}");
}

#[test]
fn context_env_is_sourceable_by_sh() {
    let d = tempfile::tempdir().unwrap();
    let env = d.path().join("wafer-context.env");
    std::fs::write(&env, ctx().context_env()).unwrap();
    let (rc, out, err) = run(
        "sh",
        &["-c", &format!(". {}; echo \"$WAFER_HOSTNAME|$WAFER_IFACES|$WAFER_ETH0_IP/$WAFER_ETH0_PREFIX|$WAFER_ETH0_GATEWAY|$WAFER_ETH1_NETMASK|$WAFER_ETH1_GATEWAY|$WAFER_DNS\"", env.display())],
    );
    assert_eq!(rc, 0, "{err}");
    assert_eq!(out.trim(), "squid1.edge.example.org|eth0 eth1|192.0.2.17/24|192.0.2.1|255.255.0.0||192.0.2.53 192.0.2.54");
}
