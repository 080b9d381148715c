#!/usr/bin/env bash
# Makes (or reuses) the boot check's inputs under CACHE (default target/boot-cache):
#
#   CACHE/debian12-base.tar   the Debian 12 guest base (debootstrap minbase from Debian's archive,
#                             tar with numeric owners and xattrs), the base of
#                             recipes/debian12-bootcheck
#   CACHE/dom0.img            the dom0 of Level B: the same tree plus Xen 4.17's tools, iproute2 and
#                             bridge-utils, and a unit that runs /dev/vdb's test script (ext4,
#                             made with mke2fs -d: nothing is mounted)
#   CACHE/dom0-vmlinuz, CACHE/dom0-initrd.img   its kernel and initrd
#   CACHE/xen.elf             the Xen 4.17 hypervisor (xen-hypervisor-4.17-amd64's xen.gz,
#                             decompressed: a multiboot ELF for qemu -kernel)
#
# One debootstrap serves both: the dom0 tree is a copy of the guest tree with the Xen packages
# installed into it by apt-get in a chroot. Each output is written under a temporary name and
# renamed into place once complete, so an interrupted run leaves nothing that looks finished;
# a later run reuses what is complete. debootstrap's output is not reproducible, so the recipe
# is pinned at run time (tests/boot/run.sh writes this tar's sha256 into a copy of the recipe).
#
# Needs root (debootstrap, chroot), network access to MIRROR, and the Debian packages
# debootstrap, e2fsprogs, tar.
set -euo pipefail
cd "$(dirname "$0")/../.."

CACHE=${CACHE:-target/boot-cache}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# What the guest needs (the trial of issue 12): cloud-init with its NoCloud datasource and the
# python3-cryptography backend debootstrap does not resolve, ifupdown for cloud-init's network
# config on Debian, openssh-server for the key; iproute2 for the self-check's lines.
GUEST_PKGS=linux-image-amd64,systemd-sysv,cloud-init,openssh-server,ifupdown,python3-cffi-backend,locales,iproute2,util-linux
# What dom0 adds on top.
DOM0_PKGS="xen-hypervisor-4.17-amd64 xen-utils-4.17 bridge-utils"

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
log() { echo "make-base: $*" >&2; }

tree="$CACHE/debian12-tree"
if [ ! -f "$tree/.complete" ]; then
    rm -rf "$tree.partial"
    mkdir -p "$tree.partial"
    log "debootstrap $SUITE from $MIRROR (several minutes)"
    t0=$(date +%s)
    if ! debootstrap --variant=minbase --include="$GUEST_PKGS" "$SUITE" "$tree.partial/root" "$MIRROR" \
        > "$CACHE/debootstrap.log" 2>&1; then
        tail -30 "$CACHE/debootstrap.log" >&2
        tail -30 "$tree.partial/root/debootstrap/debootstrap.log" >&2 || true
        exit 1
    fi
    log "debootstrap took $(( $(date +%s) - t0 )) s"
    echo "debootstrap --variant=minbase --include=$GUEST_PKGS $SUITE $MIRROR" > "$tree.partial/.complete"
    rm -rf "$tree"
    mv "$tree.partial" "$tree"
fi

base="$CACHE/debian12-base.tar"
if [ ! -f "$base" ]; then
    log "writing $base"
    tar --numeric-owner --xattrs --xattrs-include='*' --sort=name -C "$tree/root" -cf "$base.partial" .
    mv "$base.partial" "$base"
fi

# `--guest-only` (Level A alone): no dom0, no Xen.
if [ "${1:-}" = --guest-only ]; then
    log "guest base ready (--guest-only: no dom0)"
    exit 0
fi

if [ ! -f "$CACHE/dom0.img" ] || [ ! -f "$CACHE/xen.elf" ]; then
    d="$CACHE/dom0.partial"
    rm -rf "$d"
    mkdir -p "$d"
    log "dom0: copying the tree and installing $DOM0_PKGS"
    t0=$(date +%s)
    cp -a "$tree/root" "$d/root"
    r="$d/root"
    # No service may start inside the chroot.
    printf '#!/bin/sh\nexit 101\n' > "$r/usr/sbin/policy-rc.d"
    chmod 755 "$r/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$r/etc/resolv.conf"
    mount -t proc proc "$r/proc"
    trap 'umount "$r/proc" 2>/dev/null || true' EXIT
    if ! chroot "$r" env DEBIAN_FRONTEND=noninteractive sh -c \
        "apt-get update -qq && apt-get install -y -qq --no-install-recommends $DOM0_PKGS" \
        > "$CACHE/dom0-apt.log" 2>&1; then
        tail -30 "$CACHE/dom0-apt.log" >&2
        exit 1
    fi
    umount "$r/proc"
    trap - EXIT
    rm -f "$r/usr/sbin/policy-rc.d"
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*_Packages

    xen_gz=$(ls "$r"/boot/xen-4.17*-amd64.gz | head -1)
    zcat "$xen_gz" > "$d/xen.elf"
    kver=$(ls "$r"/boot/ | sed -n 's/^vmlinuz-//p' | sort -V | tail -1)
    cp "$r/boot/vmlinuz-$kver" "$d/dom0-vmlinuz"
    cp "$r/boot/initrd.img-$kver" "$d/dom0-initrd.img"

    # dom0's configuration: root on /dev/vda, a serial getty is not needed, the test disk's
    # script runs once the Xen daemons are up; guest consoles logged by xenconsoled.
    echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" > "$r/etc/fstab"
    echo "dom0" > "$r/etc/hostname"
    echo 'root:*' | chroot "$r" chpasswd -e 2>/dev/null || true
    # Debian's init script passes XENCONSOLED_ARGS to xenconsoled: log every guest console to
    # /var/log/xen/console/guest-NAME.log (the boot check reads the guest's self-check there).
    echo 'XENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console"' >> "$r/etc/default/xen"
    cat > "$r/etc/systemd/system/wafer-boottest.service" <<'UNIT'
[Unit]
Description=wafer boot check (Level B): runs /dev/vdb's run-in-dom0.sh, then powers off
After=xen.service xenstored.service xenconsoled.service xen-init-dom0.service network.target
Wants=xen.service

[Service]
Type=oneshot
StandardOutput=journal+console
StandardError=journal+console
ExecStart=/bin/sh -c 'mkdir -p /mnt/test && mount /dev/vdb /mnt/test && exec /bin/sh /mnt/test/run-in-dom0.sh'
ExecStopPost=/bin/sh -c 'sync; umount /mnt/test; systemctl --no-block poweroff'
TimeoutStartSec=3600

[Install]
WantedBy=multi-user.target
UNIT
    ln -sf /etc/systemd/system/wafer-boottest.service "$r/etc/systemd/system/multi-user.target.wants/wafer-boottest.service"
    # Nothing in dom0 waits for a network that is not there, nor asks for a login.
    rm -f "$r/etc/systemd/system/multi-user.target.wants/cloud-"*.service \
          "$r/etc/systemd/system/cloud-init.target.wants/"* 2>/dev/null || true
    touch "$r/etc/cloud/cloud-init.disabled"
    ln -sf /dev/null "$r/etc/systemd/system/getty@.service"
    ln -sf /dev/null "$r/etc/systemd/system/serial-getty@.service"
    ln -sf /dev/null "$r/etc/systemd/system/ssh.service"

    log "dom0: mke2fs -d"
    mke2fs -q -t ext4 -d "$r" -L dom0 "$d/dom0.img.tmp" 3G > /dev/null
    mv "$d/dom0.img.tmp" "$d/dom0.img"
    for f in xen.elf dom0-vmlinuz dom0-initrd.img; do mv "$d/$f" "$CACHE/$f"; done
    mv "$d/dom0.img" "$CACHE/dom0.img"
    rm -rf "$d"
    log "dom0 took $(( $(date +%s) - t0 )) s"
fi
log "ready in $CACHE"
