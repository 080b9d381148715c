#!/usr/bin/env bash
# The boot check (issue 12): a wafer that wafer built, vetted, approved and deployed really boots.
#
#   tests/boot/run.sh [--wafer PATH] [--level a,b] [--without-selfcheck] [--corrupt-cidata]
#
# 1. Makes or reuses the Debian 12 base, the dom0 image and Xen (tests/boot/make-base.sh, cached
#    in target/boot-cache/).
# 2. On this host, with the release wafer (built here unless --wafer names one; a debug wafer is
#    too slow inside TCG): build recipes/debian12-bootcheck (pinned to the base just made, in a
#    copy of the recipe folder) -> vet with tests/boot/policy.toml (a policy a stock Debian server
#    passes) -> approve with a fresh reviewer key -> verify against a fresh trust store.
# 3. Level B: real Xen 4.17 nested under qemu-system-x86_64 (TCG), Debian dom0; inside dom0
#    tests/boot/run-in-dom0.sh runs the real `wafer deploy` on a `xen` site (real `xl create`),
#    collects the guest's console, `wafer ps`, `xl sched-credit`, `wafer stop`. This script then
#    asserts the guest's own WAFER-SELFCHECK lines against the lease, host name and ssh key.
#
# Consoles, logs and the dom0's results are kept under target/boot/ (CI artifacts). Needs root.
# The last line is `N passed, N failed`; the exit status is 0 only if every check passed.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
OUT=${BOOT_OUT:-$ROOT/target/boot}
CACHE=${CACHE:-$ROOT/target/boot-cache}
export CACHE
WAFER=${WAFER:-}
LEVELS="a,b"
# Negative controls (tests/boot/README.md): the check must fail with either.
WITHOUT_SELFCHECK=0
CORRUPT_CIDATA=0
while [ $# -gt 0 ]; do
    case $1 in
        --wafer) WAFER=$2; shift 2 ;;
        --level) LEVELS=$2; shift 2 ;;
        --without-selfcheck) WITHOUT_SELFCHECK=1; shift ;;
        --corrupt-cidata) CORRUPT_CIDATA=1; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

pass=0
fail=0
ok() { echo "PASS $*"; pass=$((pass + 1)); }
ko() { echo "FAIL $*"; fail=$((fail + 1)); }
# check NAME COMMAND...: passes when COMMAND succeeds.
check() { local n=$1; shift; if "$@"; then ok "$n"; else ko "$n"; fi; }
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" = 0 ] && [ "$pass" -gt 0 ]
    exit $?
}
log() { echo "boot: $*" >&2; }
now() { date +%s; }

QEMU_PIDS=()
cleanup() {
    for p in "${QEMU_PIDS[@]}"; do kill "$p" 2>/dev/null; done
}
trap cleanup EXIT

mkdir -p "$OUT"
rm -rf "$OUT/work"
W=$OUT/work
mkdir -p "$W"

# --- inputs ----------------------------------------------------------------------------------
t=$(now)
mb_args=()
case ",$LEVELS," in *,b,*) ;; *) mb_args=(--guest-only) ;; esac
if ! tests/boot/make-base.sh ${mb_args[@]+"${mb_args[@]}"}; then
    ko "make-base.sh: the base, dom0 and Xen"
    finish
fi
log "bases ready in $(( $(now) - t )) s"

if [ -z "$WAFER" ]; then
    log "cargo build --release --bin wafer"
    if ! nice -n 10 cargo build --release --locked --bin wafer >&2; then
        ko "cargo build --release --bin wafer"
        finish
    fi
    WAFER=$ROOT/target/release/wafer
fi
WAFER=$(realpath "$WAFER")

# --- build, vet, approve, verify on the host --------------------------------------------------
cp -r recipes/debian12-bootcheck "$W/recipe"
ln "$CACHE/debian12-base.tar" "$W/recipe/debian12-base.tar" 2>/dev/null \
    || cp "$CACHE/debian12-base.tar" "$W/recipe/debian12-base.tar"
sum=$(sha256sum "$W/recipe/debian12-base.tar" | cut -d' ' -f1)
sed -i "s/^sha256 = \"0\{64\}\"/sha256 = \"$sum\"/" "$W/recipe/recipe.toml"
check "recipe pinned to the base made (sha256 $sum)" grep -q "^sha256 = \"$sum\"" "$W/recipe/recipe.toml"
if [ "$WITHOUT_SELFCHECK" = 1 ]; then
    # Negative control: the recipe without the steps that install and enable the self-check unit.
    python3 - "$W/recipe/recipe.toml" <<'PY'
import re, sys
p = sys.argv[1]
parts = re.split(r"(?m)^(?=\[\[step\]\])", open(p).read())
open(p, "w").write("".join(x for x in parts if "wafer-selfcheck.service" not in x))
PY
    log "negative control: recipe without the self-check unit"
fi

t=$(now)
check "wafer build" "$WAFER" -q build "$W/recipe/recipe.toml" -o "$W/bundle"
log "build took $(( $(now) - t )) s"
t=$(now)
"$WAFER" -q vet "$W/bundle" --policy tests/boot/policy.toml --report "$W/verdict.json" > "$W/vet.txt" 2>&1
vet_rc=$?
check "wafer vet passes tests/boot/policy.toml (exit $vet_rc; $W/vet.txt)" test "$vet_rc" = 0
log "vet took $(( $(now) - t )) s"

mkdir -p "$W/keys" "$W/trust/reviewers"
"$WAFER" -q key generate reviewer --dir "$W/keys" > /dev/null
cp "$W/keys/reviewer.pub" "$W/trust/reviewers/reviewer.pub"
cat > "$W/trust/trust.toml" <<TOML
format = 1
max_approval_age_days = 30

[reviewers]
threshold = 1
keys = ["reviewers/reviewer.pub"]
TOML
check "wafer approve" "$WAFER" -q approve "$W/bundle" --key "$W/keys/reviewer.key" \
    --policy tests/boot/policy.toml --report "$W/verdict.json" --expires 7d
"$WAFER" -q verify "$W/bundle" --trust "$W/trust" > "$W/verify.txt" 2>&1
check "wafer verify ($W/verify.txt)" test $? = 0

# The key the deploy gives the guest.
ssh-keygen -q -t ed25519 -N '' -C wafer-bootcheck -f "$W/id_ed25519"
{
    echo '#cloud-config'
    echo 'disable_root: false'
    echo 'ssh_authorized_keys:'
    echo "  - $(cat "$W/id_ed25519.pub")"
} > "$W/user-data"
# The wafer's filesystem UUID, read by blkid from the head of the image (the oracle for rootuuid).
image_uuid=$(zstd -dc "$W/bundle/disk.img.zst" 2>/dev/null | head -c 8M > "$W/head.img"; blkid -p -o value -s UUID "$W/head.img")
rm -f "$W/head.img"
image_size=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["image"]["size"])' "$W/bundle/wafer.json")

# selfcheck FILE KEY: the values of `WAFER-SELFCHECK KEY=...` lines in a console log, one a line.
selfcheck() {
    tr -d '\r' < "$1" | sed -n "s/.*WAFER-SELFCHECK $2=\(.*\)$/\1/p" | sort -u
}
# has FILE KEY VALUE: the guest reported KEY=VALUE.
has() { selfcheck "$1" "$2" | grep -qxF -- "$3"; }

# --- Level B: nested Xen ---------------------------------------------------------------------
level_b() {
    local B=$OUT/xen P=$W/xen-payload
    rm -rf "$B"
    mkdir -p "$B" "$P/bin"
    cp "$WAFER" "$P/bin/wafer"
    cp -r "$W/bundle" "$P/bundle"
    cp -r "$W/trust" "$P/trust"
    cp "$W/user-data" "$P/user-data"
    cp tests/boot/run-in-dom0.sh "$P/run-in-dom0.sh"
    cp tests/boot/site-xen.toml "$P/site.toml"
    mkdir -p "$P/storage" "$P/state"
    local t=$(now)
    mke2fs -q -t ext4 -E root_owner=0:0 -d "$P" -L wafertest "$W/xen-payload.img" 8G > /dev/null
    rm -rf "$P"
    log "Level B: booting Xen 4.17 nested under QEMU (TCG; several minutes)"
    local kopts="root=/dev/vda rw console=hvc0 earlyprintk=xen systemd.show_status=1"
    timeout 2400 qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 3072 -smp 2 \
        -nographic -no-reboot -nodefaults -serial "file:$B/console.log" -monitor none \
        -kernel "$CACHE/xen.elf" \
        -append "dom0_mem=1536M,max:1536M dom0_max_vcpus=2 sched=credit console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all" \
        -initrd "$CACHE/dom0-vmlinuz $kopts,$CACHE/dom0-initrd.img" \
        -drive "file=$CACHE/dom0.img,if=virtio,format=raw,snapshot=on" \
        -drive "file=$W/xen-payload.img,if=virtio,format=raw" \
        > "$B/qemu.out" 2>&1 &
    QEMU_PIDS+=($!)
    wait $!
    local rc=$?
    log "Level B: QEMU ended ($rc) after $(( $(now) - t )) s"
    echo "level_b_seconds=$(( $(now) - t ))" > "$B/timing.txt"
    check "Level B: QEMU with nested Xen ended within the timeout (exit $rc)" test "$rc" = 0
    # Everything dom0 wrote, out of its test disk, without mounting it.
    mkdir -p "$B/dom0"
    debugfs -R "rdump / $B/dom0" "$W/xen-payload.img" > /dev/null 2>&1
    rm -rf "$B/dom0/bundle" "$B/dom0/bin" "$B/dom0/storage" "$B/dom0/lost+found"
    local R=$B/dom0/results.txt G=$B/dom0/guest-console.log
    [ -f "$R" ] || : > "$R"
    [ -f "$G" ] || : > "$G"
    cp "$G" "$B/guest-console.log"
    rm -f "$W/xen-payload.img"
    r() { sed -n "s/^WAFER-DOM0 $1=//p" "$R" | tail -1; }
    check "Level B: dom0 ran the test to its end ($R)" grep -qx 'WAFER-DOM0 done' "$R"
    check "Level B: Xen's xl answered in dom0" test "$(r xl_ready)" = 1
    check "Level B: xenconsoled runs in dom0" test "$(r xenconsoled)" -ge 1
    check "Level B: wafer deploy (real xl create) succeeded" test "$(r deploy_rc)" = 0
    local ip mac name
    ip=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["leases"][0]["ip"])' "$B/dom0/deploy.json" 2>/dev/null)
    mac=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["leases"][0]["mac"])' "$B/dom0/deploy.json" 2>/dev/null)
    name=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["leases"][0].get("hostname") or r["name"])' "$B/dom0/deploy.json" 2>/dev/null)
    check "Level B: the deploy record holds a lease (ip ${ip:-none}, mac ${mac:-none})" test -n "$ip" -a -n "$mac"
    check "Level B: wafer ps --json shows bootcheck-xen running" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
sys.exit(0 if any(r["name"]=="bootcheck-xen" and r["state"]=="running" for r in d["deployments"]) else 1)' "$B/dom0/ps-running.json"
    check "Level B: xl list shows the domain" test "$(r xl_list_running)" = present
    check "Level B: xl sched-credit shows the slot's weight 256 and cap 50 (got $(r sched_weight)/$(r sched_cap), scheduler $(r xen_scheduler))" \
        test "$(r sched_cap)" = 50 -a "$(r sched_weight)" = 256
    check "Level B: the guest's self-check came back through xenconsoled (guest-console.log)" \
        test "$(r selfcheck_done)" = 1
    check "Level B: guest hostname = $name" has "$G" hostname "$name"
    check "Level B: guest eth0 has the leased $ip/24" has "$G" addr "eth0:$ip/24"
    check "Level B: guest eth0 has the leased MAC $mac" has "$G" mac "eth0:$mac"
    check "Level B: guest has exactly one address" test "$(selfcheck "$G" addr | wc -l)" = 1
    check "Level B: guest default route via the site's gateway 192.0.2.1" \
        bash -c "tr -d '\r' < '$G' | grep -q 'WAFER-SELFCHECK route=default via 192.0.2.1 dev eth0'"
    check "Level B: the guest reached its gateway (dom0's bridge)" has "$G" gateway "192.0.2.1:reachable"
    check "Level B: the deploy's ssh key landed (root)" has "$G" sshkey "root:ssh-ed25519:wafer-bootcheck"
    check "Level B: guest root is /dev/xvda of the wafer's size ($image_size) and UUID ($image_uuid)" \
        bash -c "$(declare -f selfcheck has); has '$G' root /dev/xvda && has '$G' rootsize $image_size && has '$G' rootuuid '$image_uuid'"
    check "Level B: guest sees the CIDATA disk as xvdb" \
        bash -c "$(declare -f selfcheck); selfcheck '$G' disk | grep -q '^xvdb:.*:CIDATA\$'"
    check "Level B: cloud-init finished without error" has "$G" cloudinit done
    check "Level B: the guest powered itself off" test "$(r guest_powered_off)" = 1
    check "Level B: second deploy ran" test "$(r deploy2_rc)" = 0 -a "$(r xl_list_2)" = present -a "$(r leases_2)" = 1
    check "Level B: wafer stop destroyed the running domain" test "$(r stop2_rc)" = 0 -a -z "$(r xl_list_after_stop2)"
    check "Level B: wafer stop of the powered-off guest succeeded" test "$(r stop1_rc)" = 0
    check "Level B: every lease freed" test "$(r leases_after)" = 0
    check "Level B: wafer ps --json shows no deployment" python3 -c '
import json,sys
d=json.load(open(sys.argv[1])); sys.exit(0 if not d["deployments"] and not d["leases"] else 1)' "$B/dom0/ps-after.json"
    log "Level B: deploy $(r deploy_seconds) s, self-check after $(r selfcheck_seconds) s"
}


# --- Level A: wafer's qemu hypervisor -------------------------------------------------------
# pids of QEMU processes whose command line names DIR.
qemu_pids_under() { pgrep -f "qemu-system-x86_64.*$1" || true; }

level_a() {
    local A=$OUT/qemu
    rm -rf "$A"
    mkdir -p "$A/storage" "$A/state"
    sed -e "s|@STORAGE@|$A/storage|" -e "s|@STATE@|$A/state|" -e "s|@TRUST@|$W/trust|" \
        tests/boot/site-qemu.toml > "$A/site.toml"
    if [ "$CORRUPT_CIDATA" = 1 ]; then
        sed -i "s|^accel = |binary = \"$ROOT/tests/boot/qemu-corrupt-cidata\"\naccel = |" "$A/site.toml"
        log "negative control: QEMU gets a zeroed CIDATA disk"
    fi
    local S=$A/site.toml

    # A tampered copy (one byte of disk.img.zst flipped) is refused before any QEMU starts.
    cp -r "$W/bundle" "$W/tampered"
    python3 - "$W/tampered/disk.img.zst" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(4096)
    b = f.read(1)
    f.seek(4096)
    f.write(bytes([b[0] ^ 0x01]))
PY
    "$WAFER" -q deploy "$W/tampered" --site "$S" --name bootcheck-tampered \
        --user-data "$W/user-data" > "$A/tampered.out" 2>&1
    local trc=$?
    check "Level A: the tampered copy is refused (exit $trc; $A/tampered.out)" test "$trc" != 0
    check "Level A: no QEMU process started for it" test -z "$(qemu_pids_under "$A/storage")"
    check "Level A: no pidfile, console or disk written for it" \
        test -z "$(find "$A/storage" -mindepth 1 -print -quit)"
    check "Level A: no lease left by it" test -z "$(find "$A/state" -path '*leases*' -name '*.json' -print -quit)"

    local t=$(now)
    "$WAFER" -q deploy "$W/bundle" --site "$S" --name bootcheck-qemu \
        --user-data "$W/user-data" --json > "$A/deploy.json" 2> "$A/deploy.err"
    local drc=$?
    echo "level_a_deploy_seconds=$(( $(now) - t ))" > "$A/timing.txt"
    check "Level A: wafer deploy on the qemu site (exit $drc; $A/deploy.err)" test "$drc" = 0
    for p in $(qemu_pids_under "$A/storage"); do QEMU_PIDS+=("$p"); done
    "$WAFER" ps --site "$S" --json > "$A/ps-running.json" 2>&1
    check "Level A: wafer ps --json shows bootcheck-qemu running" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
sys.exit(0 if any(r["name"]=="bootcheck-qemu" and r["state"]=="running" for r in d["deployments"]) else 1)' "$A/ps-running.json"
    local ip mac name
    ip=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["leases"][0]["ip"])' "$A/deploy.json" 2>/dev/null)
    mac=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["leases"][0]["mac"])' "$A/deploy.json" 2>/dev/null)
    name=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["leases"][0].get("hostname") or r["name"])' "$A/deploy.json" 2>/dev/null)
    # The guest's serial console, as the deployment keeps it.
    local G
    G=$(find "$A/storage" -name console.log -path '*bootcheck-qemu*' | head -1)
    # Up to 20 minutes for the report; but once cloud-init says it finished, the self-check (ordered
    # after cloud-final) has 180 s more, so a wafer without it fails in minutes.
    local seen=0 i fin=0
    for i in $(seq 1 1200); do
        if [ -n "$G" ] && grep -qa 'WAFER-SELFCHECK done' "$G"; then seen=1; break; fi
        [ -n "$G" ] || G=$(find "$A/storage" -name console.log -path '*bootcheck-qemu*' | head -1)
        if [ -n "$G" ] && grep -qaE 'Cloud-init v\. .* finished' "$G"; then
            fin=$((fin + 1))
            [ "$fin" -gt 180 ] && break
        fi
        sleep 1
    done
    echo "level_a_selfcheck_seconds=$(( $(now) - t ))" >> "$A/timing.txt"
    [ -n "$G" ] && cp "$G" "$A/guest-console.log"
    G=$A/guest-console.log
    [ -f "$G" ] || : > "$G"
    check "Level A: the guest's self-check came back on its serial console" test "$seen" = 1
    check "Level A: guest hostname = $name" has "$G" hostname "$name"
    check "Level A: guest eth0 has the leased $ip/24" has "$G" addr "eth0:$ip/24"
    check "Level A: guest eth0 has the leased MAC $mac" has "$G" mac "eth0:$mac"
    check "Level A: guest default route via the site's gateway 192.0.2.1" \
        bash -c "tr -d '\r' < '$G' | grep -q 'WAFER-SELFCHECK route=default via 192.0.2.1 dev eth0'"
    check "Level A: the deploy's ssh key landed (root)" has "$G" sshkey "root:ssh-ed25519:wafer-bootcheck"
    check "Level A: guest root is /dev/vda of the wafer's size ($image_size) and UUID ($image_uuid)" \
        bash -c "$(declare -f selfcheck has); has '$G' root /dev/vda && has '$G' rootsize $image_size && has '$G' rootuuid '$image_uuid'"
    check "Level A: guest sees the CIDATA disk as vdb" \
        bash -c "$(declare -f selfcheck); selfcheck '$G' disk | grep -q '^vdb:.*:CIDATA\$'"
    check "Level A: cloud-init finished without error" has "$G" cloudinit done

    # A second deployment, stopped while it runs.
    "$WAFER" -q deploy "$W/bundle" --site "$S" --name bootcheck-qemu-stop \
        --user-data "$W/user-data" --json > "$A/deploy-stop.json" 2> "$A/deploy-stop.err"
    check "Level A: second deploy" test $? = 0
    for p in $(qemu_pids_under "$A/storage/bootcheck-qemu-stop"); do QEMU_PIDS+=("$p"); done
    check "Level A: its QEMU runs" test -n "$(qemu_pids_under "bootcheck-qemu-stop")"
    "$WAFER" -q stop bootcheck-qemu-stop --site "$S" > "$A/stop2.out" 2>&1
    check "Level A: wafer stop of the running guest (exit $?)" test -z "$(qemu_pids_under "bootcheck-qemu-stop")"
    "$WAFER" -q stop bootcheck-qemu --site "$S" > "$A/stop1.out" 2>&1
    check "Level A: wafer stop of the self-checked guest (exit $?)" test -z "$(qemu_pids_under "bootcheck-qemu/")"
    "$WAFER" ps --site "$S" --json > "$A/ps-after.json" 2>&1
    check "Level A: every lease and deployment freed" python3 -c '
import json,sys
d=json.load(open(sys.argv[1])); sys.exit(0 if not d["deployments"] and not d["leases"] else 1)' "$A/ps-after.json"
}

case ",$LEVELS," in *,a,*) level_a ;; esac
case ",$LEVELS," in *,b,*) level_b ;; esac
finish
