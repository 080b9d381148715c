//! Requirement matching and host accounting on the documented example site.

use std::path::Path;

use deploy::fit::{place, used, Allocation, FitError, Requirements};
use deploy::site::{GuestType, Site, XenVersion};

fn site() -> Site {
    Site::from_file(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/site.toml"
    )))
    .unwrap()
}

fn req(memory_mib: u64, vcpus: u32, disk_mib: u64) -> Requirements {
    Requirements {
        memory_mib,
        vcpus,
        disk_mib,
        arch: "x86_64".into(),
        guest_types: vec![GuestType::Pv],
        min_xen: None,
    }
}

#[test]
fn smallest_fitting_slot_is_chosen() {
    let s = site();
    let p = place(&s, &req(1024, 1, 10000), "cms", &[], None).unwrap();
    assert_eq!(p.slot, "edge1"); // edge2 is cdf-only, edge3 is bigger
    assert_eq!(p.guest_type, GuestType::Pv);
    let p = place(&s, &req(1024, 1, 10000), "cdf", &[], None).unwrap();
    assert_eq!(p.slot, "edge2");
}

#[test]
fn every_rejection_has_a_precise_reason() {
    let s = site();
    let mut r = req(6144, 2, 10000);
    r.min_xen = Some(XenVersion(4, 18, 0));
    let allocs = vec![Allocation::for_slot(s.slot("edge3").unwrap(), "lhcb-squid")];
    let e = place(&s, &r, "cms", &allocs, None).unwrap_err();
    let FitError::NoFit { rejections, .. } = &e else {
        panic!("{e}")
    };
    let text = e.to_string();
    assert!(
        text.contains("slot edge1: memory 4096 MiB < required 6144 MiB; Xen 4.17 < required 4.18"),
        "{text}"
    );
    assert!(text.contains("slot edge2: VO cms not allowed; memory 2048 MiB < required 6144 MiB; vcpus 1 < required 2"), "{text}");
    assert!(
        text.contains("slot edge3: in use by lhcb-squid; Xen 4.17 < required 4.18"),
        "{text}"
    );
    assert_eq!(rejections.len(), 3);
    let r2 = Requirements {
        arch: "aarch64".into(),
        guest_types: vec![GuestType::Hvm],
        ..req(100, 1, 100)
    };
    let mut s2 = s.clone();
    if let deploy::site::SiteHypervisor::Xen(x) = &mut s2.hypervisor {
        x.guest_types.remove(&GuestType::Hvm);
    }
    let e = place(&s2, &r2, "atlas", &[], Some("edge1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("slot edge1: arch x86_64 != required aarch64; guest types pv/pvh on this host, wafer needs hvm"), "{e}");
    let e = place(&s, &r2, "atlas", &[], Some("nope")).unwrap_err();
    let known: Vec<String> = s.slots.iter().map(|s| s.name.clone()).collect();
    assert_eq!(
        e,
        FitError::UnknownSlot {
            name: "nope".into(),
            known: known.clone()
        }
    );
    // the error lists the slots that exist
    assert!(e.to_string().ends_with(&known.join(", ")), "{e}");
    assert!(known.len() > 1 && e.to_string().contains(&known[0]), "{e}");
}

#[test]
fn several_vos_share_the_host_without_overcommit() {
    // host: 16384 MiB, 8 vcpus. Make the slots together larger than the host.
    let mut s = site();
    s.host.memory_mib = 12288;
    s.host.vcpus = 6;
    let mut allocs = Vec::new();
    let p1 = place(&s, &req(8000, 4, 50000), "lhcb", &allocs, None).unwrap();
    assert_eq!(p1.slot, "edge3");
    allocs.push(Allocation::for_slot(
        s.slot(&p1.slot).unwrap(),
        "lhcb-frontier",
    ));
    let p2 = place(&s, &req(2000, 1, 1000), "cdf", &allocs, None).unwrap();
    assert_eq!(p2.slot, "edge2");
    allocs.push(Allocation::for_slot(s.slot(&p2.slot).unwrap(), "cdf-dash"));
    let u = used(&allocs);
    assert_eq!(
        (u.memory_mib, u.vcpus, u.disk_mib),
        (8192 + 2048, 5, 102400 + 20480)
    );
    // edge1 (4096 MiB, 2 vcpus) is free, but the host cannot hold it any more
    let e = place(&s, &req(1000, 1, 1000), "atlas", &allocs, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("slot edge1: host memory: 10240 MiB in use + 4096 MiB for this slot > 12288 MiB set aside; host vcpus: 5 in use + 2 for this slot > 6 set aside"), "{e}");
    assert!(
        e.contains("slot edge2: VO atlas not allowed; in use by cdf-dash"),
        "{e}"
    );
    // once one stops, it fits
    allocs.retain(|a| a.deployment != "cdf-dash");
    assert_eq!(
        place(&s, &req(1000, 1, 1000), "atlas", &allocs, None)
            .unwrap()
            .slot,
        "edge1"
    );
    let all = [
        &allocs[..],
        &[Allocation::for_slot(
            s.slot("edge1").unwrap(),
            "atlas-squid",
        )],
    ]
    .concat();
    let u = used(&all);
    assert!(u.memory_mib <= s.host.memory_mib && u.vcpus <= u64::from(s.host.vcpus));
}
