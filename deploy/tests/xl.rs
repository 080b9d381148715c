//! xl.cfg: Xen's own example configs parse to the documented values; our guest configs parse
//! back to the same values; the disk and vif spec parsers agree with xl's test vectors.

use deploy::site::{GuestType, XenVersion};
use deploy::xl::{
    parse_disk, parse_vif, DiskFormat, DiskSpec, GuestConfig, Value, VifSpec, XlConfig,
};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../testdata/xen-xl-configs/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn xen_examples_parse() {
    let pv = XlConfig::parse(&fixture("xlexample.pvlinux")).unwrap();
    assert_eq!(pv.get("type"), None);
    assert_eq!(pv.get_str("name").unwrap(), Some("example.pvlinux"));
    assert_eq!(pv.get_str("kernel").unwrap(), Some("/boot/vmlinuz"));
    assert_eq!(pv.get_str("extra").unwrap(), Some("root=/dev/xvda1"));
    assert_eq!(pv.get_num("memory").unwrap(), Some(128));
    assert_eq!(pv.get_num("vcpus").unwrap(), Some(2));
    assert_eq!(
        pv.get("vif"),
        Some(&Value::List(vec![Value::Str(String::new())]))
    );
    assert_eq!(
        pv.get_str_list("disk").unwrap(),
        Some(vec!["/dev/vg/guest-volume,raw,xvda,rw"])
    );
    for commented in ["uuid", "ramdisk", "maxmem"] {
        assert_eq!(pv.get(commented), None, "{commented} is commented out");
    }
    let g = GuestConfig::from_config(&pv).unwrap();
    assert_eq!(
        (g.guest_type, g.memory_mib, g.vcpus),
        (GuestType::Pv, 128, 2)
    );
    assert_eq!(g.cmdline.as_deref(), Some("root=/dev/xvda1"));
    assert_eq!(
        g.disks[0],
        DiskSpec::raw("/dev/vg/guest-volume", "xvda", true)
    );
    assert_eq!(g.vifs, vec![VifSpec::default()]);

    let pvh = XlConfig::parse(&fixture("xlexample.pvhlinux")).unwrap();
    let g = GuestConfig::from_config(&pvh).unwrap();
    assert_eq!(
        (g.name.as_str(), g.guest_type, g.memory_mib, g.vcpus),
        ("example.pvhlinux", GuestType::Pvh, 512, 4)
    );
    assert_eq!(
        g.disks[0].target.as_deref(),
        Some("/dev/zvol/tank/guest-volume")
    );

    let hvm = XlConfig::parse(&fixture("xlexample.hvm")).unwrap();
    assert_eq!(hvm.get_num("sdl").unwrap(), Some(1));
    for commented in ["uuid", "viridian", "vnc", "maxmem"] {
        assert_eq!(hvm.get(commented), None);
    }
    let g = GuestConfig::from_config(&hvm).unwrap();
    assert_eq!(
        (g.guest_type, g.kernel.as_deref(), g.memory_mib),
        (GuestType::Hvm, None, 128)
    );

    let pool = XlConfig::parse(&fixture("cpupool")).unwrap();
    assert_eq!(pool.get_str("sched").unwrap(), Some("credit"));
    assert_eq!(pool.get_str_list("cpus").unwrap(), Some(vec!["2", "3"]));

    // xl.conf: every setting is a commented default
    let conf = XlConfig::parse(&fixture("xl.conf")).unwrap();
    assert!(conf.entries.is_empty(), "{:?}", conf.entries);
    // uncommenting its lines gives valid settings, dotted keys included
    let uncommented: String = fixture("xl.conf")
        .lines()
        .map(|l| {
            l.strip_prefix('#')
                .filter(|r| r.contains('=') && !r.starts_with(' '))
                .unwrap_or("")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let conf = XlConfig::parse(&uncommented).unwrap();
    assert!(conf.entries.len() >= 10);
    assert_eq!(conf.get_str("vif.default.bridge").unwrap(), Some("xenbr0"));
    assert_eq!(conf.get_num("run_hotplug_scripts").unwrap(), Some(1));
}

#[test]
fn syntax_details() {
    let c = XlConfig::parse("name=\"h0\"; type='hvm'\nmemory = 0x100\nvcpus=010\nx = [ 'a',\n  [ 1, \"b\\n\\x41\\101\" ], ]\ns = \"a\"\ns += 'b'\n").unwrap();
    assert_eq!(c.get_str("type").unwrap(), Some("hvm"));
    assert_eq!(c.get_num("memory").unwrap(), Some(256));
    assert_eq!(c.get_num("vcpus").unwrap(), Some(8));
    assert_eq!(
        c.get("x"),
        Some(&Value::List(vec![
            Value::Str("a".into()),
            Value::List(vec![Value::Num(1), Value::Str("b\nAA".into())])
        ]))
    );
    assert_eq!(c.get_str("s").unwrap(), Some("ab"));
    for (bad, line) in [
        ("name = \"x", 1),
        ("a = 1\nb = = 2", 2),
        ("a = 1 2", 1),
        ("a = [1,", 1),
        ("= 3", 1),
        ("a = 09", 1),
        ("a = 'x\\q'", 1),
    ] {
        match XlConfig::parse(bad) {
            Err(deploy::xl::XlError::Syntax { line: l, .. }) => assert_eq!(l, line, "{bad:?}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let deep = "a = ".to_string() + &"[".repeat(100);
    assert!(XlConfig::parse(&deep).is_err());
}

/// xl's `-N block-attach` dump of a parsed disk (fields in libxl's IDL order; defaults omitted).
fn xl_disk_dump(d: &DiskSpec) -> String {
    let mut f: Vec<(String, String)> = Vec::new();
    let q = |s: &str| format!("\"{s}\"");
    if let Some(t) = &d.target {
        f.push(("pdev_path".into(), q(t)));
    }
    f.push(("vdev".into(), q(&d.vdev)));
    if let Some(b) = &d.backend_type {
        f.push(("backend".into(), q(b)));
    }
    f.push(("format".into(), q(d.format.as_str())));
    if let Some(s) = &d.script {
        f.push(("script".into(), q(s)));
    }
    if d.removable {
        f.push(("removable".into(), "1".into()));
    }
    if d.readwrite {
        f.push(("readwrite".into(), "1".into()));
    }
    if d.is_cdrom {
        f.push(("is_cdrom".into(), "1".into()));
    }
    if let Some(x) = d.discard {
        f.push(("discard_enable".into(), q(if x { "True" } else { "False" })));
    }
    if let Some(x) = d.trusted {
        f.push(("trusted".into(), q(if x { "True" } else { "False" })));
    }
    let body: Vec<String> = f.iter().map(|(k, v)| format!("    \"{k}\": {v}")).collect();
    format!("disk: {{\n{}\n}}\n\n", body.join(",\n"))
}

fn cases(name: &str) -> Vec<(Vec<String>, i64, String)> {
    fixture(name)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let args = v["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect();
            (
                args,
                v["expected_rc"].as_i64().unwrap(),
                v["expected_stdout"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn disk_specs_agree_with_xl_test_vectors() {
    let all = cases("diskspec-parse-cases.corrected.jsonl");
    assert_eq!(all.len(), 28);
    for (args, rc, stdout) in all {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        match parse_disk(&a) {
            Ok(d) => {
                assert_eq!(rc, 0, "{args:?} accepted, xl refuses it");
                assert_eq!(xl_disk_dump(&d), stdout, "{args:?}");
                // and our keyword form of it parses back to the same
                assert_eq!(
                    parse_disk(&[&d.to_spec()]).unwrap(),
                    d,
                    "{args:?} -> {}",
                    d.to_spec()
                );
            }
            Err(e) => assert_eq!(rc, 1, "{args:?} refused ({e}), xl accepts it"),
        }
    }
    // the uncorrected fixture differs only in expected output of accepted cases
    let orig = cases("diskspec-parse-cases.jsonl");
    let fixed = cases("diskspec-parse-cases.corrected.jsonl");
    assert_eq!(
        orig.iter().map(|c| (&c.0, c.1)).collect::<Vec<_>>(),
        fixed.iter().map(|c| (&c.0, c.1)).collect::<Vec<_>>()
    );
}

#[test]
fn vif_specs_agree_with_xl_test_vectors() {
    let all = cases("vifspec-parse-cases.jsonl");
    assert_eq!(all.len(), 44);
    for (args, rc, stdout) in all {
        assert_eq!(args.len(), 1);
        match parse_vif(&args[0]) {
            Ok(v) => {
                assert_eq!(rc, 0, "{args:?} accepted, xl refuses it");
                let mut f = Vec::new();
                if let Some((b, i)) = v.rate {
                    f.push(format!("    \"rate_bytes_per_interval\": {b}"));
                    f.push(format!("    \"rate_interval_usecs\": {i}"));
                }
                if let Some(t) = v.trusted {
                    f.push(format!(
                        "    \"trusted\": \"{}\"",
                        if t { "True" } else { "False" }
                    ));
                }
                assert_eq!(
                    format!("vif: {{\n{}\n}}\n\n", f.join(",\n")),
                    stdout,
                    "{args:?}"
                );
            }
            Err(e) => assert_eq!(rc, 1, "{args:?} refused ({e}), xl accepts it"),
        }
    }
}

fn guest() -> GuestConfig {
    let mut cidata = DiskSpec::raw("/var/lib/wafer/storage/cms-squid/cidata.img", "xvdb", false);
    cidata.format = DiskFormat::Raw;
    GuestConfig {
        name: "cms-squid".into(),
        guest_type: GuestType::Pvh,
        kernel: Some("/var/lib/wafer/storage/cms-squid/vmlinuz".into()),
        ramdisk: Some("/var/lib/wafer/storage/cms-squid/initrd.img".into()),
        cmdline: Some("root=/dev/xvda ro console=hvc0 quote=\"x\" back\\slash".into()),
        memory_mib: 4096,
        vcpus: 2,
        cpu_weight: Some(512),
        cpu_cap: Some(200),
        cpus: None,
        disks: vec![
            DiskSpec::raw("/var/lib/wafer/storage/cms-squid/disk.img", "xvda", true),
            cidata,
        ],
        vifs: vec![
            VifSpec {
                mac: Some("02:16:3e:12:34:56".into()),
                bridge: Some("xenbr0".into()),
                ..VifSpec::default()
            },
            VifSpec {
                mac: Some("06:00:5e:aa:bb:cc".into()),
                bridge: Some("xenbr1".into()),
                ..VifSpec::default()
            },
        ],
        on_poweroff: "destroy".into(),
        on_reboot: "restart".into(),
        on_crash: "destroy".into(),
    }
}

#[test]
fn written_config_reads_back_the_same() {
    let g = guest();
    let text = g.to_xl(XenVersion(4, 17, 0)).unwrap();
    assert!(text.contains("disk = [ \"format=raw, vdev=xvda, access=rw, target=/var/lib/wafer/storage/cms-squid/disk.img\", \"format=raw, vdev=xvdb, access=ro, target=/var/lib/wafer/storage/cms-squid/cidata.img\" ]"), "{text}");
    assert!(text.contains("vif = [ \"mac=02:16:3e:12:34:56, bridge=xenbr0\", \"mac=06:00:5e:aa:bb:cc, bridge=xenbr1\" ]"), "{text}");
    assert!(text.contains("memory = 4096\nmaxmem = 4096\n"), "{text}");
    let back = GuestConfig::from_config(&XlConfig::parse(&text).unwrap()).unwrap();
    assert_eq!(back, g);
    let mut pinned = guest();
    pinned.cpu_weight = None;
    pinned.cpu_cap = None;
    pinned.cpus = Some(vec![2, 3]);
    pinned.guest_type = GuestType::Hvm;
    let text = pinned.to_xl(XenVersion(4, 17, 0)).unwrap();
    assert!(text.contains("cpus = \"2,3\""));
    assert_eq!(
        GuestConfig::from_config(&XlConfig::parse(&text).unwrap()).unwrap(),
        pinned
    );
    // values that would be misread are refused rather than written
    let mut bad = guest();
    bad.vifs[0].bridge = Some("xenbr0, script=/tmp/evil".into());
    assert!(bad.to_xl(XenVersion(4, 17, 0)).is_err());
    let mut bad = guest();
    bad.name = "../x".into();
    assert!(bad.to_xl(XenVersion(4, 17, 0)).is_err());
    let mut bad = guest();
    bad.cmdline = Some("a\nb = 1".into());
    assert!(bad.to_xl(XenVersion(4, 17, 0)).is_err());
}

#[test]
fn xl_list_output_parses_strictly() {
    // The shape xl 4.x prints (tabs in the header, as xl_info.c writes it; a dying domain
    // without a name shows as "(null)").
    let text = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n\
        Domain-0                                     0  1024     4     r-----    1234.5\n\
        cms-squid                                    3  1024     1     -b----      12.0\n\
        (null)                                       5     0     1     --p--d       0.3\n";
    let d = deploy::xl::parse_list(text).unwrap();
    let names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["Domain-0", "cms-squid", "(null)"]);
    assert_eq!((d[1].id, d[1].memory_mib, d[1].vcpus), (3, 1024, 1));
    assert_eq!(d[2].state, "--p--d");
    // only the header: no guests
    assert!(deploy::xl::parse_list("Name ID Mem VCPUs State Time(s)\n")
        .unwrap()
        .is_empty());
    // anything else is refused with the line: the caller must not guess which guests exist
    for (bad, why) in [
        ("", "empty"),
        (
            "libxl: error: cannot connect\n",
            "line 1: expected the header",
        ),
        (
            "Name ID Mem VCPUs State Time(s)\nx 1 2 3 -b----\n",
            "line 2: 5 columns",
        ),
        (
            "Name ID Mem VCPUs State Time(s)\nx one 2 3 -b---- 1.0\n",
            "domain id \"one\"",
        ),
        (
            "Name ID Mem VCPUs State Time(s)\nx 1 2 3 -q---- 1.0\n",
            "state \"-q----\"",
        ),
        (
            "Name ID Mem VCPUs State Time(s)\nx 1 2 3 -b---- 1.0.0\n",
            "time",
        ),
        (
            "Name ID Mem VCPUs State Time(s)\nx 1 -2 3 -b---- 1\n",
            "memory",
        ),
    ] {
        let e = deploy::xl::parse_list(bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
}
