//! The `contextualize` step: how a wafer takes its hostname, addresses and credentials from the
//! site's contextualization disk (see docs/context.md for the `wafer-context.env` format).
//!
//! * Guests with cloud-init get the NoCloud datasource enabled
//!   (`/etc/cloud/cloud.cfg.d/90-wafer.cfg`); the CIDATA disk carries meta-data, user-data and
//!   network-config for them.
//! * Old guests get `wafer-context`, a SysV init script (chkconfig `2345 09 91`, before the network
//!   at 10) that mounts the disk labelled `CIDATA` read-only, reads `wafer-context.env` and writes
//!   the hostname, `ifcfg-ethN` files and `resolv.conf`. On systemd images without cloud-init a
//!   oneshot unit runs the same script.

use rootfs::{Metadata, Tree};

use super::{join, services, write_file, StepContext, StepError, StepReport, StepResult};

/// The cloud-init drop-in.
pub const CLOUD_CFG_PATH: &str = "/etc/cloud/cloud.cfg.d/90-wafer.cfg";

const CLOUD_CFG: &str = "# Written by wafer: take instance data from the site's CIDATA disk.\ndatasource_list: [ NoCloud, None ]\n";

/// The first-boot script (POSIX sh; bash 3 on EL4 runs it).
pub const SCRIPT: &str = r##"#!/bin/sh
#
# wafer-context	Take hostname, addresses and credentials from the site's
#		contextualization disk (label CIDATA, file wafer-context.env).
#
# chkconfig: 2345 09 91
# description: wafer first-boot contextualization (hostname, ifcfg files, DNS).
#
### BEGIN INIT INFO
# Provides: wafer-context
# Required-Start: $local_fs
# Should-Start:
# Default-Start: 2 3 4 5
# Default-Stop: 0 1 6
# Short-Description: wafer contextualization from the CIDATA disk
### END INIT INFO

PATH=/sbin:/usr/sbin:/bin:/usr/bin
export PATH
MNT=/var/run/wafer-context
NETDIR=/etc/sysconfig/network-scripts

find_disk() {
	for label in CIDATA cidata; do
		dev=`findfs LABEL=$label 2>/dev/null`
		[ -z "$dev" ] && dev=`blkid -l -t LABEL=$label -o device 2>/dev/null`
		if [ -n "$dev" ]; then
			echo "$dev"
			return 0
		fi
	done
	return 1
}

# Read the KEY='value' lines wafer deploy writes (docs/context.md). The file is parsed, never
# sourced: only WAFER_* keys and values of safe characters are taken.
read_env() {
	while IFS= read -r line || [ -n "$line" ]; do
		case "$line" in
			''|'#'*) continue ;;
		esac
		key=${line%%=*}
		val=${line#*=}
		case "$key" in
			WAFER_*) ;;
			*) continue ;;
		esac
		case "$key" in
			*[!A-Z0-9_]*) continue ;;
		esac
		val=${val#\'}
		val=${val%\'}
		case "$val" in
			*[!A-Za-z0-9.:,_/\ -]*) echo "wafer-context: ignoring unsafe value for $key" >&2; continue ;;
		esac
		eval "$key=\$val"
	done < "$1"
}

set_kv() { # file key value
	if [ -f "$1" ] && grep -q "^$2=" "$1"; then
		sed -i "s|^$2=.*|$2=$3|" "$1"
	else
		echo "$2=$3" >> "$1"
	fi
}

apply() {
	if [ -n "$WAFER_HOSTNAME" ]; then
		set_kv /etc/sysconfig/network HOSTNAME "$WAFER_HOSTNAME"
		echo "$WAFER_HOSTNAME" > /etc/hostname
		hostname "$WAFER_HOSTNAME"
	fi
	[ -d "$NETDIR" ] || mkdir -p "$NETDIR"
	for ifc in $WAFER_IFACES; do
		case "$ifc" in
			*[!a-z0-9]*) echo "wafer-context: ignoring interface name $ifc" >&2; continue ;;
		esac
		p=WAFER_`echo "$ifc" | tr 'a-z' 'A-Z'`
		eval "mac=\$${p}_MAC ip=\$${p}_IP mask=\$${p}_NETMASK gw=\$${p}_GATEWAY"
		{
			echo "# Written by wafer-context at boot"
			echo "DEVICE=$ifc"
			[ -n "$mac" ] && echo "HWADDR=$mac"
			echo "ONBOOT=yes"
			if [ -n "$ip" ]; then
				echo "BOOTPROTO=static"
				echo "IPADDR=$ip"
				[ -n "$mask" ] && echo "NETMASK=$mask"
				[ -n "$gw" ] && echo "GATEWAY=$gw"
			else
				echo "BOOTPROTO=dhcp"
			fi
		} > "$NETDIR/ifcfg-$ifc"
	done
	if [ -n "$WAFER_DNS" ]; then
		{
			echo "# Written by wafer-context at boot"
			[ -n "$WAFER_SEARCH" ] && echo "search $WAFER_SEARCH"
			for ns in $WAFER_DNS; do echo "nameserver $ns"; done
		} > /etc/resolv.conf
	fi
}

start() {
	dev=`find_disk` || { echo "wafer-context: no CIDATA disk, nothing to do"; return 0; }
	mkdir -p "$MNT"
	mount -o ro "$dev" "$MNT" || { echo "wafer-context: cannot mount $dev" >&2; return 1; }
	if [ -f "$MNT/wafer-context.env" ]; then
		read_env "$MNT/wafer-context.env"
		apply
	fi
	if [ -f "$MNT/authorized_keys" ]; then
		mkdir -p /root/.ssh
		chmod 700 /root/.ssh
		cp "$MNT/authorized_keys" /root/.ssh/authorized_keys
		chmod 600 /root/.ssh/authorized_keys
	fi
	umount "$MNT"
	return 0
}

case "$1" in
	start) start ;;
	stop|status|restart|reload) exit 0 ;;
	*) echo "Usage: $0 {start|stop}"; exit 2 ;;
esac
"##;

const UNIT: &str = "[Unit]
Description=wafer contextualization from the CIDATA disk
DefaultDependencies=no
After=local-fs.target
Before=network-pre.target network.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=@SCRIPT@ start

[Install]
WantedBy=multi-user.target
";

/// Whether the image has cloud-init.
pub fn has_cloud_init(tree: &Tree) -> bool {
    tree.lookup(b"/etc/cloud/cloud.cfg").is_some() || tree.lookup(b"/usr/bin/cloud-init").is_some()
}

/// Install the hook (`method`: auto, sysv, cloud-init).
pub fn install(
    tree: &mut Tree,
    ctx: &StepContext,
    method: Option<&str>,
    r: &mut StepReport,
) -> StepResult {
    let cloud = has_cloud_init(tree);
    let method = match method.unwrap_or("auto") {
        "auto" if cloud => "cloud-init",
        "auto" => "sysv",
        m => m,
    };
    if method == "cloud-init" {
        if !cloud {
            return Err(StepError::new(
                "method cloud-init: the image has no cloud-init (/etc/cloud/cloud.cfg)",
            ));
        }
        let existed = write_file(
            tree,
            ctx,
            CLOUD_CFG_PATH,
            CLOUD_CFG.as_bytes().to_vec(),
            Metadata::new(0o644, 0, 0, ctx.epoch),
        )?;
        r.note_write(CLOUD_CFG_PATH, existed);
        r.notes.push("cloud-init NoCloud datasource enabled".into());
        return Ok(());
    }
    let initd = if tree.lookup(b"/etc/rc.d").is_some() {
        "/etc/rc.d/init.d"
    } else {
        "/etc/init.d"
    };
    let script = join(initd, "wafer-context");
    let existed = write_file(
        tree,
        ctx,
        &script,
        SCRIPT.as_bytes().to_vec(),
        Metadata::new(0o755, 0, 0, ctx.epoch),
    )?;
    r.note_write(&script, existed);
    if services::has_systemd(tree) {
        let unit_path = "/etc/systemd/system/wafer-context.service";
        let unit = UNIT.replace("@SCRIPT@", &script);
        let existed = write_file(
            tree,
            ctx,
            unit_path,
            unit.into_bytes(),
            Metadata::new(0o644, 0, 0, ctx.epoch),
        )?;
        r.note_write(unit_path, existed);
        let link = "/etc/systemd/system/multi-user.target.wants/wafer-context.service";
        if super::put_symlink(tree, ctx, link, unit_path)?.is_some() {
            r.added.push(link.into());
        }
        r.notes
            .push("systemd oneshot unit wafer-context.service runs the first-boot script".into());
    } else {
        services::apply(tree, ctx, &["wafer-context".to_string()], &[], &[], r)?;
        r.notes
            .push("SysV first-boot script wafer-context enabled in runlevels 2345".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_parses_with_dash_and_reads_the_deploy_env_format() {
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(SCRIPT)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Only the function definitions, then read_env on a file in deploy's format.
        let funcs = &SCRIPT[..SCRIPT.find("start() {").unwrap()];
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("wafer-context.env");
        std::fs::write(
            &env,
            "# comment\nWAFER_HOSTNAME='cms-squid-01'\nWAFER_DNS='10.0.0.2 10.0.0.3'\nWAFER_IFACES='eth0'\nWAFER_ETH0_MAC='52:54:00:12:34:56'\nWAFER_EVIL='$(touch /tmp/x)'\nPATH='/nope'\n",
        )
        .unwrap();
        let prog = format!("{funcs}\nread_env '{}'\necho \"$WAFER_HOSTNAME|$WAFER_DNS|$WAFER_ETH0_MAC|${{WAFER_EVIL:-unset}}|$PATH\"\n", env.display());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(prog)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "cms-squid-01|10.0.0.2 10.0.0.3|52:54:00:12:34:56|unset|/sbin:/usr/sbin:/bin:/usr/bin\n"
        );
    }
}
