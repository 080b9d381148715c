//! Site configuration: the documented example parses, and every validation rule bites.

use std::net::Ipv4Addr;
use std::path::Path;

use deploy::site::{GuestType, Site, SiteError, XenVersion};

const EXAMPLE: &str = include_str!("../examples/site.toml");

fn parse(text: &str) -> Result<Site, SiteError> {
    Site::from_toml_str(text, "site.toml", Some(Path::new("/srv/site")))
}

#[test]
fn example_parses_with_expected_values() {
    let site = Site::from_file(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/site.toml"
    )))
    .unwrap();
    assert_eq!(site.name, "uni-edge");
    let xen = site.xen().unwrap();
    assert_eq!(xen.version, XenVersion(4, 17, 0));
    assert!(xen.guest_types.contains(&GuestType::Pvh));
    assert_eq!(site.slots.len(), 3);
    assert_eq!(
        site.slot("edge2").unwrap().cpus.as_deref(),
        Some(&[6u32][..])
    );
    let public = site.network("public").unwrap();
    // /29 inside a /24: all 8 addresses, plus two host lines
    assert_eq!(public.pool.len(), 10);
    assert_eq!(public.pool[0].ip, Ipv4Addr::new(192, 0, 2, 16));
    assert_eq!(
        public.pool[9].hostname.as_deref(),
        Some("squid2.edge.example.org")
    );
    assert_eq!(public.net.to_string(), "192.0.2.0/24");
    let private = site.network("private").unwrap();
    assert_eq!(private.net.to_string(), "10.20.0.0/16");
    assert_eq!(private.pool.len(), 16 + 4);
    assert_eq!(private.gateway, None);
    assert_eq!(site.storage_dir, Path::new("/var/lib/wafer/storage"));
}

#[test]
fn docs_example_is_the_same_file() {
    // docs/site.md embeds the example verbatim so the documentation cannot drift.
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/site.md")).unwrap();
    assert!(
        doc.contains(EXAMPLE.trim_end()),
        "docs/site.md does not contain deploy/examples/site.toml verbatim"
    );
}

#[test]
fn unknown_key_is_refused_with_line_and_column() {
    let text = EXAMPLE.replace("vcpus = 2\ncpu_weight", "vcpu = 2\ncpu_weight");
    let e = parse(&text).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, SiteError::Toml { .. }), "{msg}");
    assert!(msg.contains("unknown field `vcpu`"), "{msg}");
    assert!(msg.contains("line 3") || msg.contains("line "), "{msg}");
    let line = EXAMPLE
        .lines()
        .position(|l| l.starts_with("vcpus = 2"))
        .unwrap()
        + 1;
    assert!(
        msg.contains(&format!("line {line}")),
        "expected line {line} in {msg}"
    );
}

fn invalid(edit: &dyn Fn(String) -> String, field: &str, fragment: &str) {
    let text = edit(EXAMPLE.to_string());
    assert_ne!(text, EXAMPLE, "edit for {field} changed nothing");
    match parse(&text) {
        Err(SiteError::Invalid {
            field: f, message, ..
        }) => {
            assert_eq!(f, field, "message: {message}");
            assert!(
                message.contains(fragment),
                "{field}: {message:?} lacks {fragment:?}"
            );
        }
        Err(other) => panic!("{field}: expected Invalid, got {other}"),
        Ok(_) => panic!("{field}: expected Invalid, got a valid site"),
    }
}

#[test]
fn validation_rules() {
    invalid(
        &|t| {
            t.replace(
                "ranges = [\"192.0.2.16/29\"]",
                "ranges = [\"192.0.3.0/29\"]",
            )
        },
        "network[public].ranges[0]",
        "is not inside the network 192.0.2.0/24",
    );
    invalid(
        &|t| {
            t.replace(
                "ranges = [\"192.0.2.16/29\"]",
                "ranges = [\"192.0.2.0/29\"]",
            )
        },
        "network[public].ranges[0]",
        "contains the gateway 192.0.2.1",
    );
    invalid(
        &|t| t.replace("ip = \"192.0.2.40\"", "ip = \"192.0.2.1\""),
        "network[public].host[0]",
        "is the gateway",
    );
    invalid(
        &|t| t.replace("ip = \"192.0.2.40\"", "ip = \"192.0.2.17\""),
        "network[public].host[0]",
        "in the pool twice",
    );
    invalid(
        &|t| t.replace("ip = \"192.0.2.40\"", "ip = \"198.51.100.4\""),
        "network[public].host[0]",
        "not a host address",
    );
    invalid(
        &|t| t.replace("mac_prefix = \"02:16:3e\"", "mac_prefix = \"00:16:3e\""),
        "network[public].mac_prefix",
        "locally-administered",
    );
    invalid(
        &|t| t.replace("mac_prefix = \"02:16:3e\"", "mac_prefix = \"02:16\""),
        "network[public].mac_prefix",
        "not a MAC prefix",
    );
    invalid(
        &|t| t.replace("prefix = 24 ", "netmask = \"255.0.255.0\" "),
        "network[public].netmask",
        "not a contiguous netmask",
    );
    invalid(
        &|t| t.replace("prefix = 24 ", "prefix = 24\nnetmask = \"255.255.255.0\" "),
        "network[public].netmask",
        "not both",
    );
    invalid(
        &|t| t.replace("name = \"edge2\"", "name = \"edge1\""),
        "slot[edge1].name",
        "declared twice",
    );
    invalid(
        &|t| t.replace("name = \"edge2\"", "name = \"../x\""),
        "slot[../x].name",
        "not allowed",
    );
    invalid(
        &|t| t.replace("name = \"private\"\nbridge", "name = \"public\"\nbridge"),
        "network[public].name",
        "declared twice",
    );
    invalid(
        &|t| t.replace("memory_mib = 8192", "memory_mib = 32768"),
        "slot[edge3].memory_mib",
        "32768 MiB is more than the 16384 MiB the host sets aside",
    );
    invalid(
        &|t| t.replace("vcpus = 4", "vcpus = 9"),
        "slot[edge3].vcpus",
        "9 is more than the 8 vcpus",
    );
    invalid(
        &|t| t.replace("disk_mib = 102400", "disk_mib = 999999"),
        "slot[edge3].disk_mib",
        "more than the 409600 MiB",
    );
    invalid(
        &|t| t.replace("cpus = [6]", "cpus = [1]"),
        "slot[edge2].cpus",
        "CPU 1 is not among the host's pcpus",
    );
    invalid(
        &|t| t.replace("cpus = [6]", "cpus = [6, 6]"),
        "slot[edge2].cpus",
        "twice",
    );
    invalid(
        &|t| t.replace("cpu_cap = 200", "cpu_cap = 201"),
        "slot[edge1].cpu_cap",
        "201% is more than 2 vcpus",
    );
    invalid(
        &|t| t.replace("networks = [\"public\"]", "networks = [\"dmz\"]"),
        "slot[edge2].networks",
        "\"dmz\" is not declared",
    );
    invalid(
        &|t| t.replace("version = \"4.17\"", "version = \"4\""),
        "xen.version",
        "not a Xen version",
    );
    invalid(
        &|t| {
            t.replace(
                "state_dir = \"/var/lib/wafer/state\"",
                "state_dir = \"/var/lib/../state\"",
            )
        },
        "paths.state_dir",
        "'..'",
    );
    invalid(
        &|t| t.replace("10.20.2.0/30", "10.20.1.8/30"),
        "network[private].ranges[1]",
        "in the pool twice",
    );
    invalid(
        &|t| t.replace("address = \"10.20.0.0\"", "address = \"10.20.0.1\""),
        "network[private].address",
        "not the network address",
    );
    invalid(
        &|t| {
            t.replace("address = \"10.20.0.0\"", "address = \"10.0.0.0\"")
                .replace("netmask = \"255.255.0.0\"", "netmask = \"255.0.0.0\"")
                .replace(
                    "ranges = [\"10.20.1.0/28\", \"10.20.2.0/30\"]",
                    "ranges = [\"10.0.0.0/15\"]",
                )
        },
        "network[private].ranges[0]",
        "65536",
    );
}

#[test]
fn relative_paths_resolve_against_the_site_dir() {
    let text = EXAMPLE.replace("\"/var/lib/wafer/storage\"", "\"storage\"");
    let site = parse(&text).unwrap();
    assert_eq!(site.storage_dir, Path::new("/srv/site/storage"));
    let e = Site::from_toml_str(&text, "x", None).unwrap_err();
    assert!(e.to_string().contains("relative"), "{e}");
}

#[test]
fn garbage_never_panics() {
    for text in ["", "name = 1", "[host]\nmemory_mib = -1", "[[slot]]\nname=\"a\"", "\u{0}\u{1}", "name = \"x\"\n[host]\nmemory_mib = 18446744073709551615\nvcpus = 4294967295\ndisk_mib = 1\n"] {
        assert!(parse(text).is_err());
    }
}

#[test]
fn only_a_bounded_regular_file_is_read_as_a_site_file() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("site.toml");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    // no writer ever opens the FIFO: a blocking open would hang here
    let e = Site::from_file(&fifo).unwrap_err().to_string();
    assert!(e.contains("site.toml") && e.contains("FIFO"), "{e}");
    let e = Site::from_file(Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/dev/zero") && e.contains("character device"),
        "{e}"
    );
    let big = d.path().join("big.toml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(deploy::site::limits::MAX_FILE_BYTES + 1)
        .unwrap();
    let e = Site::from_file(&big).unwrap_err().to_string();
    assert!(e.contains("big.toml") && e.contains("larger than"), "{e}");
}

#[test]
fn relative_paths_resolve_against_the_site_folder_and_only_the_result_is_checked() {
    let text = EXAMPLE
        .replace(
            "state_dir = \"/var/lib/wafer/state\"",
            "state_dir = \"../state\"",
        )
        .replace(
            "storage_dir = \"/var/lib/wafer/storage\"",
            "storage_dir = \"./disks/./here\"",
        );
    let site = parse(&text).unwrap();
    assert_eq!(site.state_dir, Path::new("/srv/state"));
    assert_eq!(site.storage_dir, Path::new("/srv/site/disks/here"));
    // `..` after a name does not resolve cleanly (the name may be a link): refused
    let e = parse(&text.replace("\"../state\"", "\"x/../state\""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("paths.state_dir") && e.contains("'..'"), "{e}");

    // from a file reached through `..`: the file's real folder is the base
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("etc/wafer");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(tmp.path().join("work")).unwrap();
    std::fs::write(conf.join("site.toml"), &text).unwrap();
    let via = tmp.path().join("work/../etc/wafer/./site.toml");
    let site = Site::from_file(&via).unwrap();
    let real = std::fs::canonicalize(tmp.path()).unwrap();
    assert_eq!(site.state_dir, real.join("etc/state"));
    assert_eq!(site.storage_dir, real.join("etc/wafer/disks/here"));
}
