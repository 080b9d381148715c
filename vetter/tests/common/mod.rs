#![allow(dead_code)]
use rootfs::{Content, Metadata, Node, NodeKind, Timestamp, Tree};

pub fn meta(perm: u16) -> Metadata {
    Metadata::new(perm, 0, 0, Timestamp::from_secs(1_000_000))
}

pub fn file(t: &mut Tree, path: &str, text: &str) -> rootfs::NodeId {
    file_mode(t, path, text.as_bytes(), 0o644)
}

pub fn file_mode(t: &mut Tree, path: &str, bytes: &[u8], perm: u16) -> rootfs::NodeId {
    t.insert(
        path.as_bytes(),
        Node::new(
            NodeKind::Regular(Content::from_bytes(bytes.to_vec())),
            meta(perm),
        ),
        &meta(0o755),
    )
    .unwrap()
}

pub fn symlink(t: &mut Tree, path: &str, target: &str) {
    t.insert(
        path.as_bytes(),
        Node::new(NodeKind::Symlink(target.as_bytes().to_vec()), meta(0o777)),
        &meta(0o755),
    )
    .unwrap();
}

pub fn dir(t: &mut Tree, path: &str, perm: u16) {
    t.insert(
        path.as_bytes(),
        Node::new(NodeKind::empty_dir(), meta(perm)),
        &meta(0o755),
    )
    .unwrap();
}

/// A minimal Red Hat style base: release file, passwd/group/shadow, /etc/services.
pub fn base(t: &mut Tree) {
    file(
        t,
        "/etc/redhat-release",
        "Scientific Linux SL release 5.11 (Boron)\n",
    );
    file(t, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nbin:x:1:1:bin:/bin:/sbin/nologin\nsshd:x:74:74::/var/empty/sshd:/sbin/nologin\n");
    file(t, "/etc/group", "root:x:0:root\nbin:x:1:\nsshd:x:74:\n");
    file(
        t,
        "/etc/shadow",
        "root:$1$abc$def:15000:0:99999:7:::\nbin:*:15000:0:99999:7:::\nsshd:!!:15000::::::\n",
    );
    file(
        t,
        "/etc/services",
        "# comment\nftp 21/tcp\nssh 22/tcp\ntftp 69/udp\nrsync 873/tcp # rsync\nrsync 873/udp\ngsiftp 2811/tcp\n",
    );
}

pub fn ports_of<'a>(
    inv: &'a vetter::Inventory,
    name: &str,
) -> Vec<(u16, String, Option<String>, bool, String, Option<u32>)> {
    inv.services
        .list
        .iter()
        .filter(|s| s.name == name)
        .flat_map(|s| s.ports.iter())
        .map(|p| {
            (
                p.port,
                p.protocol.clone(),
                p.address.clone(),
                p.default,
                p.source.file.clone(),
                p.source.line,
            )
        })
        .collect()
}

pub fn service<'a>(inv: &'a vetter::Inventory, name: &str) -> &'a vetter::services::Service {
    inv.services
        .list
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no service {name}: {:#?}",
                inv.services
                    .list
                    .iter()
                    .map(|s| &s.name)
                    .collect::<Vec<_>>()
            )
        })
}

pub fn inspect(t: &Tree) -> vetter::Inventory {
    vetter::inspect(t, &vetter::InspectOptions::default()).unwrap()
}
