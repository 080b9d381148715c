//! Port detection: one test per init system and per configuration parser, with drop-ins,
//! includes, disabled services and commented lines.

mod common;
use common::*;
use rootfs::Tree;
use vetter::services::BindClass;

/// A systemd image: /sbin/init is systemd, multi-user.target is the default target.
fn systemd_base() -> Tree {
    let mut t = Tree::default();
    base(&mut t);
    file_mode(&mut t, "/usr/lib/systemd/systemd", b"\x7fELF", 0o755);
    symlink(&mut t, "/sbin/init", "../usr/lib/systemd/systemd");
    let u = "/usr/lib/systemd/system";
    file(
        &mut t,
        &format!("{u}/multi-user.target"),
        "[Unit]\nDescription=Multi-User\n",
    );
    symlink(
        &mut t,
        "/etc/systemd/system/default.target",
        &format!("{u}/multi-user.target"),
    );
    t
}

fn sysv_base(t: &mut Tree, enabled: &[&str], disabled: &[&str]) {
    base(t);
    file(
        t,
        "/etc/inittab",
        "# default runlevel\n#id:5:initdefault:\nid:3:initdefault:\n",
    );
    file(t, "/sbin/init", "not really init");
    for s in enabled.iter().chain(disabled) {
        file_mode(t, &format!("/etc/rc.d/init.d/{s}"), b"#!/bin/sh\n", 0o755);
    }
    for s in enabled {
        symlink(
            t,
            &format!("/etc/rc.d/rc3.d/S55{s}"),
            &format!("../init.d/{s}"),
        );
    }
    for s in disabled {
        symlink(
            t,
            &format!("/etc/rc.d/rc3.d/K10{s}"),
            &format!("../init.d/{s}"),
        );
    }
}

#[test]
fn sysv_runlevel_links_and_sshd() {
    let mut t = Tree::default();
    sysv_base(&mut t, &["sshd", "unknownd"], &["squid"]);
    file(&mut t, "/etc/ssh/sshd_config", "#Port 2222\nPort 22\nport 8022\nListenAddress 10.0.0.5\nListenAddress [::1]:2200\nPermitRootLogin no\n");
    let inv = inspect(&t);
    assert_eq!(inv.system.init, "sysvinit");
    assert_eq!(inv.services.default_runlevel, Some(3));
    assert_eq!(
        inv.services.default_runlevel_source.as_ref().unwrap().line,
        Some(3)
    );
    let sshd = service(&inv, "sshd");
    assert!(sshd.enabled);
    assert_eq!(sshd.enabled_by[0].file, "/etc/rc.d/rc3.d/S55sshd");
    let p = ports_of(&inv, "sshd");
    assert_eq!(
        p,
        vec![
            (
                22,
                "tcp".into(),
                Some("10.0.0.5".into()),
                false,
                "/etc/ssh/sshd_config".into(),
                Some(2)
            ),
            (
                8022,
                "tcp".into(),
                Some("10.0.0.5".into()),
                false,
                "/etc/ssh/sshd_config".into(),
                Some(3)
            ),
            (
                2200,
                "tcp".into(),
                Some("::1".into()),
                false,
                "/etc/ssh/sshd_config".into(),
                Some(5)
            ),
        ]
    );
    assert_eq!(sshd.ports[0].bind, BindClass::Private);
    assert_eq!(sshd.ports[2].bind, BindClass::Loopback);
    let squid = service(&inv, "squid");
    assert!(!squid.enabled);
    assert_eq!(squid.state, "disabled");
    let unk = service(&inv, "unknownd");
    assert!(unk.enabled);
    assert_eq!(unk.port_status, "unknown");
    assert_eq!(inv.accounts.permit_root_login.as_ref().unwrap().value, "no");
    assert!(vetter::render::summary(&inv).contains("unknownd [sysv]: enabled, port unknown"));
}

#[test]
fn known_portless_services_open_no_port() {
    // wafer's own first-boot hook (as the builder's contextualize step installs it) and base
    // services that listen on nothing; `network` is not among them (dhclient binds UDP 68).
    let mut t = Tree::default();
    sysv_base(
        &mut t,
        &[
            "wafer-context",
            "crond",
            "messagebus",
            "network",
            "unknownd",
        ],
        &[],
    );
    let inv = inspect(&t);
    for name in ["wafer-context", "crond", "messagebus"] {
        let s = service(&inv, name);
        assert!(s.enabled, "{name}");
        assert_eq!(s.port_status, "none", "{name}");
        assert!(s.ports.is_empty(), "{name}");
        assert!(
            s.notes
                .iter()
                .any(|n| n.starts_with("known service that opens no network port")),
            "{name}: {:?}",
            s.notes
        );
    }
    assert_eq!(service(&inv, "network").port_status, "unknown");
    assert_eq!(service(&inv, "unknownd").port_status, "unknown");
    let summary = vetter::render::summary(&inv);
    assert!(
        summary.contains("wafer-context [sysv]: enabled, no network port"),
        "{summary}"
    );
    assert!(
        summary.contains("network [sysv]: enabled, port unknown"),
        "{summary}"
    );

    // The systemd oneshot unit the builder writes on systemd images without cloud-init.
    let mut t = systemd_base();
    file(
        &mut t,
        "/etc/systemd/system/wafer-context.service",
        "[Unit]\nDescription=wafer contextualization\n[Service]\nType=oneshot\nExecStart=/etc/init.d/wafer-context start\n[Install]\nWantedBy=multi-user.target\n",
    );
    symlink(
        &mut t,
        "/etc/systemd/system/multi-user.target.wants/wafer-context.service",
        "/etc/systemd/system/wafer-context.service",
    );
    let inv = inspect(&t);
    let s = service(&inv, "wafer-context.service");
    assert!(s.enabled);
    assert_eq!(s.port_status, "none");
}

#[test]
fn sshd_defaults_include_and_match() {
    let mut t = Tree::default();
    sysv_base(&mut t, &["sshd"], &[]);
    file(
        &mut t,
        "/etc/ssh/sshd_config",
        "Include sshd_config.d/*.conf\n# Port 99\nPasswordAuthentication yes\nMatch User bob\n  PermitRootLogin yes\n",
    );
    file(
        &mut t,
        "/etc/ssh/sshd_config.d/10-pw.conf",
        "PasswordAuthentication no\nInclude /etc/ssh/sshd_config\n",
    );
    let inv = inspect(&t);
    let p = ports_of(&inv, "sshd");
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].0, p[0].3), (22, true));
    // First value wins: the included file comes first.
    let pa = inv.accounts.password_authentication.as_ref().unwrap();
    assert_eq!(
        (pa.value.as_str(), pa.at.file.as_str()),
        ("no", "/etc/ssh/sshd_config.d/10-pw.conf")
    );
    // PermitRootLogin only inside Match: the global value stays the default.
    assert!(inv.accounts.permit_root_login.is_none());
    assert!(inv
        .problems
        .iter()
        .any(|p| p.message.contains("include loop")));
}

#[test]
fn systemd_wants_dropins_sockets_masks() {
    let mut t = systemd_base();
    let u = "/usr/lib/systemd/system";
    file(
        &mut t,
        &format!("{u}/multi-user.target"),
        "[Unit]\nDescription=Multi-User\nRequires=basic.target\n",
    );
    file(
        &mut t,
        &format!("{u}/basic.target"),
        "[Unit]\nWants=sockets.target\n",
    );
    file(&mut t, &format!("{u}/sockets.target"), "[Unit]\n");
    file(
        &mut t,
        &format!("{u}/sshd.service"),
        "[Service]\nExecStart=/usr/sbin/sshd -D $OPTIONS\n[Install]\nWantedBy=multi-user.target\n",
    );
    symlink(
        &mut t,
        "/etc/systemd/system/multi-user.target.wants/sshd.service",
        &format!("{u}/sshd.service"),
    );
    file_mode(&mut t, "/usr/sbin/sshd", b"not elf", 0o755);
    file(&mut t, "/etc/ssh/sshd_config", "Port 2022\n");
    // httpd: enabled, with a drop-in that changes ExecStart.
    file(
        &mut t,
        &format!("{u}/httpd.service"),
        "[Service]\nExecStart=/usr/sbin/httpd -DFOREGROUND\n",
    );
    file(
        &mut t,
        "/etc/systemd/system/httpd.service.d/override.conf",
        "[Service]\nExecStart=\nExecStart=/opt/httpd/bin/httpd\n",
    );
    symlink(
        &mut t,
        "/etc/systemd/system/multi-user.target.wants/httpd.service",
        &format!("{u}/httpd.service"),
    );
    file(&mut t, "/etc/httpd/conf/httpd.conf", "Listen 8080\n");
    // A socket unit with a drop-in adding a port; a commented Listen line.
    file(
        &mut t,
        &format!("{u}/rsyncd.socket"),
        "[Socket]\n#ListenStream=1\nListenStream=873\nAccept=yes\n",
    );
    file(
        &mut t,
        "/etc/systemd/system/rsyncd.socket.d/extra.conf",
        "[Socket]\nListenStream=127.0.0.1:8873\nListenDatagram=[::]:873\n",
    );
    file(
        &mut t,
        &format!("{u}/rsyncd@.service"),
        "[Service]\nExecStart=-/usr/bin/rsync --daemon\n",
    );
    symlink(
        &mut t,
        "/etc/systemd/system/sockets.target.wants/rsyncd.socket",
        &format!("{u}/rsyncd.socket"),
    );
    // Masked: wanted but linked to /dev/null.
    file(
        &mut t,
        &format!("{u}/squid.service"),
        "[Service]\nExecStart=/usr/sbin/squid\n",
    );
    symlink(&mut t, "/etc/systemd/system/squid.service", "/dev/null");
    file(
        &mut t,
        &format!("{u}/multi-user.target.wants/placeholder"),
        "",
    );
    symlink(
        &mut t,
        "/etc/systemd/system/multi-user.target.wants/squid.service",
        &format!("{u}/squid.service"),
    );
    // Disabled: unit present, nothing wants it.
    file(
        &mut t,
        &format!("{u}/vsftpd.service"),
        "[Service]\nExecStart=/usr/sbin/vsftpd\n",
    );
    // Wanted via a Wants= line, unknown daemon.
    file(
        &mut t,
        &format!("{u}/custom.service"),
        "[Unit]\nWants=chronyd.service\n[Service]\nExecStart=/usr/bin/customd\n",
    );
    symlink(
        &mut t,
        "/etc/systemd/system/multi-user.target.wants/custom.service",
        &format!("{u}/custom.service"),
    );
    file(
        &mut t,
        &format!("{u}/chronyd.service"),
        "[Service]\nExecStart=/usr/sbin/chronyd\n",
    );

    let inv = inspect(&t);
    assert_eq!(inv.system.init, "systemd");
    assert_eq!(
        inv.services.default_target.as_deref(),
        Some("multi-user.target")
    );
    let sshd = service(&inv, "sshd.service");
    assert!(sshd.enabled);
    assert_eq!(
        sshd.enabled_by[0].file,
        "/etc/systemd/system/multi-user.target.wants/sshd.service"
    );
    assert_eq!(sshd.daemon.as_deref(), Some("/usr/sbin/sshd"));
    assert_eq!(
        ports_of(&inv, "sshd.service"),
        vec![(
            2022,
            "tcp".into(),
            None,
            false,
            "/etc/ssh/sshd_config".into(),
            Some(1)
        )]
    );
    let httpd = service(&inv, "httpd.service");
    assert_eq!(httpd.daemon.as_deref(), Some("/opt/httpd/bin/httpd"));
    assert_eq!(ports_of(&inv, "httpd.service")[0].0, 8080);
    let rs = ports_of(&inv, "rsyncd.socket");
    assert_eq!(
        rs,
        vec![
            (
                873,
                "tcp".into(),
                None,
                false,
                "/usr/lib/systemd/system/rsyncd.socket".into(),
                Some(3)
            ),
            (
                8873,
                "tcp".into(),
                Some("127.0.0.1".into()),
                false,
                "/etc/systemd/system/rsyncd.socket.d/extra.conf".into(),
                Some(2)
            ),
            (
                873,
                "udp".into(),
                Some("::".into()),
                false,
                "/etc/systemd/system/rsyncd.socket.d/extra.conf".into(),
                Some(3)
            ),
        ]
    );
    assert_eq!(
        service(&inv, "rsyncd.socket").daemon.as_deref(),
        Some("/usr/bin/rsync")
    );
    let squid = service(&inv, "squid.service");
    assert_eq!((squid.enabled, squid.state.as_str()), (false, "masked"));
    let vs = service(&inv, "vsftpd.service");
    assert_eq!((vs.enabled, vs.state.as_str()), (false, "disabled"));
    let chrony = service(&inv, "chronyd.service");
    assert!(chrony.enabled);
    assert_eq!(
        chrony.enabled_by[0].file,
        "/usr/lib/systemd/system/custom.service"
    );
    assert_eq!(chrony.enabled_by[0].line, Some(2));
    assert_eq!(chrony.port_status, "unknown");
}

#[test]
fn xinetd_services() {
    let mut t = Tree::default();
    sysv_base(&mut t, &["xinetd"], &[]);
    file(
        &mut t,
        "/etc/xinetd.conf",
        "defaults\n{\n  instances = 60\n  disabled = rsync\n}\nincludedir /etc/xinetd.d\n",
    );
    file(&mut t, "/etc/xinetd.d/tftp", "service tftp\n{\n\tsocket_type = dgram\n\tserver = /usr/sbin/in.tftpd\n\tdisable = no\n}\n");
    file(&mut t, "/etc/xinetd.d/gsiftp", "service gsiftp\n{\n socket_type = stream\n server = /usr/sbin/globus-gridftp-server\n port = 2812\n bind = 127.0.0.1\n# disable = yes\n}\n");
    file(
        &mut t,
        "/etc/xinetd.d/telnet",
        "service telnet\n{\n disable = yes\n server = /usr/sbin/in.telnetd\n}\n",
    );
    file(
        &mut t,
        "/etc/xinetd.d/rsync",
        "service rsync\n{\n disable = no\n socket_type = stream\n}\n",
    );
    file(
        &mut t,
        "/etc/xinetd.d/tftp.rpmsave",
        "service bogus\n{\n port = 1\n}\n",
    );
    let inv = inspect(&t);
    let tftp = service(&inv, "tftp");
    assert!(tftp.enabled);
    assert_eq!(tftp.daemon.as_deref(), Some("/usr/sbin/in.tftpd"));
    assert_eq!(
        ports_of(&inv, "tftp"),
        vec![(
            69,
            "udp".into(),
            None,
            false,
            "/etc/services".into(),
            Some(4)
        )]
    );
    assert_eq!(
        ports_of(&inv, "gsiftp"),
        vec![(
            2812,
            "tcp".into(),
            Some("127.0.0.1".into()),
            false,
            "/etc/xinetd.d/gsiftp".into(),
            Some(5)
        )]
    );
    assert!(!service(&inv, "telnet").enabled);
    let rsync = service(&inv, "rsync");
    assert!(!rsync.enabled);
    assert!(rsync
        .enabled_by
        .iter()
        .any(|p| p.file == "/etc/xinetd.conf" && p.line == Some(4)));
    assert!(inv.services.list.iter().all(|s| s.name != "bogus"));

    // With xinetd itself disabled, nothing it serves is enabled.
    let mut t = Tree::default();
    sysv_base(&mut t, &[], &["xinetd"]);
    file(
        &mut t,
        "/etc/xinetd.d/tftp",
        "service tftp\n{\n socket_type = dgram\n disable = no\n}\n",
    );
    let inv = inspect(&t);
    let tftp = service(&inv, "tftp");
    assert_eq!(
        (tftp.enabled, tftp.state.as_str()),
        (false, "enabled (xinetd disabled)")
    );
}

#[test]
fn squid_ports_and_include() {
    let mut t = Tree::default();
    sysv_base(&mut t, &["squid", "frontier-squid"], &[]);
    file(&mut t, "/etc/squid/squid.conf", "# http_port 9999\nhttp_port 3128\nhttp_port 127.0.0.1:8000 accel\ninclude /etc/squid/conf.d/*.conf\nicp_port 0\n");
    file(
        &mut t,
        "/etc/squid/conf.d/a.conf",
        "snmp_port 3401\nhtcp_port 4827\ninclude /etc/squid/squid.conf\n",
    );
    let inv = inspect(&t);
    let p = ports_of(&inv, "squid");
    assert_eq!(
        p,
        vec![
            (
                3128,
                "tcp".into(),
                None,
                false,
                "/etc/squid/squid.conf".into(),
                Some(2)
            ),
            (
                8000,
                "tcp".into(),
                Some("127.0.0.1".into()),
                false,
                "/etc/squid/squid.conf".into(),
                Some(3)
            ),
            (
                3401,
                "udp".into(),
                None,
                false,
                "/etc/squid/conf.d/a.conf".into(),
                Some(1)
            ),
            (
                4827,
                "udp".into(),
                None,
                false,
                "/etc/squid/conf.d/a.conf".into(),
                Some(2)
            ),
        ]
    );
    assert_eq!(ports_of(&inv, "frontier-squid"), p);
    // No http_port: the default.
    let mut t = Tree::default();
    sysv_base(&mut t, &["squid"], &[]);
    file(&mut t, "/etc/squid/squid.conf", "cache_mem 8 MB\n");
    let p = ports_of(&inspect(&t), "squid");
    assert_eq!((p[0].0, p[0].3), (3128, true));
}

#[test]
fn mysql_includes_bind_and_skip_networking() {
    let mut t = Tree::default();
    sysv_base(&mut t, &["mysqld"], &[]);
    file(&mut t, "/etc/my.cnf", "[client]\nport=1111\n[mysqld]\n#port=2222\ndatadir=/var/lib/mysql\n!includedir /etc/my.cnf.d\n");
    file(
        &mut t,
        "/etc/my.cnf.d/server.cnf",
        "[mysqld]\nport = 3307\nbind_address=127.0.0.1\n",
    );
    file(&mut t, "/etc/my.cnf.d/ignored.txt", "[mysqld]\nport=4444\n");
    let inv = inspect(&t);
    let p = ports_of(&inv, "mysqld");
    assert_eq!(
        p,
        vec![(
            3307,
            "tcp".into(),
            Some("127.0.0.1".into()),
            false,
            "/etc/my.cnf.d/server.cnf".into(),
            Some(2)
        )]
    );
    assert_eq!(service(&inv, "mysqld").ports[0].bind, BindClass::Loopback);

    let mut t = Tree::default();
    sysv_base(&mut t, &["mysqld"], &[]);
    file(
        &mut t,
        "/etc/my.cnf",
        "[mysqld]\nskip-networking\n!include /etc/my.cnf\n",
    );
    let inv = inspect(&t);
    let s = service(&inv, "mysqld");
    assert!(s.ports.is_empty());
    assert_eq!(s.port_status, "none");

    let mut t = Tree::default();
    sysv_base(&mut t, &["mysqld"], &[]);
    file(&mut t, "/etc/my.cnf", "[mysqld]\nskip-networking=0\n");
    let p = ports_of(&inspect(&t), "mysqld");
    assert_eq!((p[0].0, p[0].3), (3306, true));
}

#[test]
fn httpd_listen_includes_globs() {
    let mut t = Tree::default();
    sysv_base(&mut t, &["httpd"], &[]);
    file(&mut t, "/etc/httpd/conf/httpd.conf", "ServerRoot \"/etc/httpd\"\n#Listen 12345\nListen 80\nInclude conf.d/*.conf\nIncludeOptional conf.missing/*.conf\n");
    file(
        &mut t,
        "/etc/httpd/conf.d/ssl.conf",
        "<IfModule mod_ssl.c>\nListen 192.168.1.10:443 https\n</IfModule>\n",
    );
    file(&mut t, "/etc/httpd/conf.d/README", "Listen 1\n");
    let inv = inspect(&t);
    let p = ports_of(&inv, "httpd");
    assert_eq!(
        p,
        vec![
            (
                80,
                "tcp".into(),
                None,
                false,
                "/etc/httpd/conf/httpd.conf".into(),
                Some(3)
            ),
            (
                443,
                "tcp".into(),
                Some("192.168.1.10".into()),
                false,
                "/etc/httpd/conf.d/ssl.conf".into(),
                Some(2)
            ),
        ]
    );
    assert!(service(&inv, "httpd")
        .notes
        .iter()
        .any(|n| n.contains("conditional")));
}

#[test]
fn vsftpd_named_rpcbind_xrootd_globus() {
    let mut t = Tree::default();
    sysv_base(
        &mut t,
        &[
            "vsftpd",
            "named",
            "rpcbind",
            "xrootd",
            "globus-gatekeeper",
            "globus-gridftp-server",
        ],
        &[],
    );
    file(
        &mut t,
        "/etc/vsftpd/vsftpd.conf",
        "listen=YES\n#listen_port=2121\nlisten_port=2100\n",
    );
    file(
        &mut t,
        "/etc/named.conf",
        "// comment listen-on port 1 { any; };\noptions {\n  listen-on port 5353 { 127.0.0.1; };\n  /* listen-on-v6 { any; }; */\n};\ninclude \"/etc/named.extra\";\n",
    );
    file(&mut t, "/etc/named.extra", "controls { inet 127.0.0.1 port 9953 allow { localhost; }; };\ninclude \"/etc/named.conf\";\n");
    file(
        &mut t,
        "/etc/xrootd/xrootd-clustered.cfg",
        "# xrd.port 1\nxrd.port 1095\n",
    );
    file(
        &mut t,
        "/etc/globus-gatekeeper.conf",
        "-x509_cert_dir /etc/grid-security/certificates\n-port 2120\n",
    );
    let inv = inspect(&t);
    assert_eq!(
        ports_of(&inv, "vsftpd"),
        vec![(
            2100,
            "tcp".into(),
            None,
            false,
            "/etc/vsftpd/vsftpd.conf".into(),
            Some(3)
        )]
    );
    let named = ports_of(&inv, "named");
    assert_eq!(
        named,
        vec![
            (
                5353,
                "tcp".into(),
                Some("127.0.0.1".into()),
                false,
                "/etc/named.conf".into(),
                Some(3)
            ),
            (
                5353,
                "udp".into(),
                Some("127.0.0.1".into()),
                false,
                "/etc/named.conf".into(),
                Some(3)
            ),
            (
                9953,
                "tcp".into(),
                Some("127.0.0.1".into()),
                false,
                "/etc/named.extra".into(),
                Some(1)
            ),
        ]
    );
    let rpc: Vec<(u16, String)> = ports_of(&inv, "rpcbind")
        .into_iter()
        .map(|p| (p.0, p.1))
        .collect();
    assert_eq!(rpc, vec![(111, "tcp".into()), (111, "udp".into())]);
    assert_eq!(
        ports_of(&inv, "xrootd"),
        vec![(
            1095,
            "tcp".into(),
            None,
            false,
            "/etc/xrootd/xrootd-clustered.cfg".into(),
            Some(2)
        )]
    );
    assert_eq!(
        ports_of(&inv, "globus-gatekeeper"),
        vec![(
            2120,
            "tcp".into(),
            None,
            false,
            "/etc/globus-gatekeeper.conf".into(),
            Some(2)
        )]
    );
    let g = ports_of(&inv, "globus-gridftp-server");
    assert_eq!((g[0].0, g[0].3), (2811, true));

    // vsftpd not standalone: no port; named without listen-on: 53 both protocols by default.
    let mut t = Tree::default();
    sysv_base(&mut t, &["vsftpd", "named"], &[]);
    file(&mut t, "/etc/vsftpd/vsftpd.conf", "listen=NO\n");
    file(
        &mut t,
        "/etc/named.conf",
        "options { directory \"/var/named\"; };\n",
    );
    let inv = inspect(&t);
    assert_eq!(service(&inv, "vsftpd").port_status, "none");
    let n: Vec<(u16, String, bool)> = ports_of(&inv, "named")
        .into_iter()
        .map(|p| (p.0, p.1, p.3))
        .collect();
    assert_eq!(n, vec![(53, "tcp".into(), true), (53, "udp".into(), true)]);
}

#[test]
fn hostile_configs_terminate() {
    let mut t = Tree::default();
    sysv_base(&mut t, &["httpd", "squid", "mysqld", "sshd"], &[]);
    // A chain deeper than the cap, a self-include and a symlink loop.
    for i in 0..40 {
        file(
            &mut t,
            &format!("/etc/httpd/conf/c{i}.conf"),
            &format!("Include conf/c{}.conf\nListen {}\n", i + 1, 1000 + i),
        );
    }
    file(
        &mut t,
        "/etc/httpd/conf/httpd.conf",
        "Include conf/c0.conf\nInclude conf/httpd.conf\nInclude /loop/*\n",
    );
    symlink(&mut t, "/loop", "/loop");
    file(
        &mut t,
        "/etc/squid/squid.conf",
        &"include /etc/squid/squid.conf\n".repeat(1000),
    );
    file(
        &mut t,
        "/etc/my.cnf",
        "!includedir /etc\n[mysqld]\nport=99999999\n",
    );
    let big = "Port 22\n".repeat(700_000);
    file(&mut t, "/etc/ssh/sshd_config", &big);
    let inv = inspect(&t);
    let h = ports_of(&inv, "httpd");
    assert!(h.len() <= 17 && !h.is_empty(), "{}", h.len());
    assert!(inv.problems.iter().any(|p| p.message.contains("deeper")));
    assert!(inv
        .problems
        .iter()
        .any(|p| p.path == "/etc/ssh/sshd_config" && p.message.contains("limit")));
    assert!(inv.problems.iter().any(|p| p.message.contains("bad port")));
}

/// Units that say in their own settings that they cannot listen are "none" with the setting as
/// the reason; a unit that says nothing stays "unknown" (a finding under `ignore_unknown =
/// false`); known terminal and client daemons (getty@, systemd-timesyncd) are "none".
#[test]
fn systemd_units_that_open_no_port() {
    let mut t = systemd_base();
    let u = "/usr/lib/systemd/system";
    let units = [
        ("setup.service", "[Service]\nType=oneshot\nExecStart=/bin/true\n"),
        ("private.service", "[Service]\nExecStart=/usr/bin/worker\nPrivateNetwork=yes\n"),
        (
            "journal.service",
            "[Service]\nExecStart=/usr/bin/j\nRestrictAddressFamilies=AF_UNIX\nRestrictAddressFamilies=AF_NETLINK\n",
        ),
        (
            "inet.service",
            "[Service]\nExecStart=/usr/bin/i\nRestrictAddressFamilies=AF_UNIX AF_INET6\n",
        ),
        (
            "denylist.service",
            "[Service]\nExecStart=/usr/bin/d\nRestrictAddressFamilies=~AF_PACKET\n",
        ),
        ("firewalled.service", "[Service]\nExecStart=/usr/bin/f\nIPAddressDeny=any\n"),
        (
            "loopback.service",
            "[Service]\nExecStart=/usr/bin/l\nIPAddressDeny=any\nIPAddressAllow=localhost\n",
        ),
        ("custom.service", "[Service]\nExecStart=/usr/bin/custom\n"),
        ("getty@.service", "[Service]\nType=idle\nExecStart=-/sbin/agetty %I\n"),
        ("systemd-timesyncd.service", "[Service]\nType=notify\nExecStart=/usr/lib/systemd/systemd-timesyncd\n"),
    ];
    for (name, text) in units {
        file(&mut t, &format!("{u}/{name}"), text);
        let link = if name == "getty@.service" {
            "getty@tty1.service"
        } else {
            name
        };
        symlink(
            &mut t,
            &format!("/etc/systemd/system/multi-user.target.wants/{link}"),
            &format!("{u}/{name}"),
        );
    }
    // A drop-in turning a oneshot back into a daemon is honoured (the last Type= wins).
    file(
        &mut t,
        &format!("{u}/setup2.service"),
        "[Service]\nType=oneshot\nExecStart=/bin/true\n",
    );
    file(
        &mut t,
        "/etc/systemd/system/setup2.service.d/x.conf",
        "[Service]\nType=simple\n",
    );
    symlink(
        &mut t,
        "/etc/systemd/system/multi-user.target.wants/setup2.service",
        &format!("{u}/setup2.service"),
    );
    let inv = inspect(&t);
    let want = [
        ("setup.service", "none", Some("Type=oneshot")),
        ("private.service", "none", Some("PrivateNetwork=yes")),
        (
            "journal.service",
            "none",
            Some("RestrictAddressFamilies=AF_UNIX AF_NETLINK"),
        ),
        ("inet.service", "unknown", None),
        ("denylist.service", "unknown", None),
        ("firewalled.service", "none", Some("IPAddressDeny=any")),
        ("loopback.service", "unknown", None),
        ("custom.service", "unknown", None),
        ("getty@tty1.service", "none", Some("agetty")),
        ("systemd-timesyncd.service", "none", Some("SNTP client")),
        ("setup2.service", "unknown", None),
    ];
    for (name, status, why) in want {
        let s = service(&inv, name);
        assert!(s.enabled, "{name}");
        assert_eq!(s.port_status, status, "{name}: {:?}", s.notes);
        if let Some(w) = why {
            assert!(
                s.notes.iter().any(|n| n.contains(w)),
                "{name}: {:?}",
                s.notes
            );
        }
    }
    // The setting's file and line are the evidence.
    let s = service(&inv, "private.service");
    assert!(
        s.notes
            .iter()
            .any(|n| n.ends_with(&format!("({u}/private.service:3)"))),
        "{:?}",
        s.notes
    );
}
