#!/usr/bin/env bash
# Side-by-side benchmark of `wafer mkfs` / `wafer ls` against e2fsprogs, in one run.
#
#   scripts/bench-mkfs.sh [WORKDIR]
#
# Environment:
#   BENCH_BASE   tree to replicate (default /work/cache/deb-minbase, a debootstrap minbase;
#                falls back to /usr/share when missing)
#   BENCH_COPIES how many copies of BENCH_BASE to put side by side (default: enough for >= 50,000 entries)
#   BENCH_KEEP   set to 1 to keep WORKDIR afterwards
#
# What is compared (all on the same tree, peak RSS from /usr/bin/time -v):
#   1. wafer mkfs tree.tar -o a.img           vs  mke2fs -q -t ext4 -d tree/ b.img SIZE
#      (SIZE: the size wafer chose for a.img, so both write the same amount of filesystem)
#   2. wafer ls b.img --long --no-hash        vs  debugfs -f CMDS b.img, CMDS = one `ls -l DIR` per
#      directory of the tree (debugfs has no recursive ls; this lists the same metadata of every path)
#   3. wafer ls b.img --long (sha256 of all)  vs  debugfs -R 'rdump / OUT' b.img (reads every file's
#      contents out of the image; it writes them to disk where wafer hashes them: the nearest
#      e2fsprogs equivalent of reading all contents)
# Both `ls` runs read b.img (made by mke2fs), so the comparison does not depend on our writer.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /tmp/wafer-bench.XXXXXX)}
mkdir -p "$work"
base=${BENCH_BASE:-/work/cache/deb-minbase}
[ -d "$base" ] || base=/usr/share
cleanup() { [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT

for tool in mke2fs debugfs e2fsck tar /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y e2fsprogs tar time)" >&2; exit 1; }
done

echo "== building wafer (release)"
(cd "$here" && cargo build --release --bin wafer -q)
wafer="${CARGO_TARGET_DIR:-$here/target}/release/wafer"

per_copy=$(find "$base" -xdev | wc -l)
copies=${BENCH_COPIES:-$(( (50000 + per_copy - 1) / per_copy ))}
echo "== tree: $copies copies of $base ($per_copy entries each)"
rm -rf "$work/tree"
mkdir -p "$work/tree"
for i in $(seq 1 "$copies"); do
    cp -a "$base" "$work/tree/copy$i" 2>/dev/null || cp -a --no-preserve=xattr "$base" "$work/tree/copy$i"
done
entries=$(find "$work/tree" | wc -l)
bytes=$(du -sb "$work/tree" | cut -f1)
echo "   $entries entries, $bytes bytes"
[ "$entries" -ge 50000 ] || echo "   warning: fewer than 50,000 entries" >&2
tar --format=posix --xattrs -cf "$work/tree.tar" -C "$work/tree" .
sync

# run NAME CMD...: time one command, print wall seconds and peak RSS; results in $secs/$rss_kb
run() {
    local name=$1; shift
    /usr/bin/time -v -o "$work/time.$name" "$@" > "$work/out.$name" 2> "$work/err.$name" || {
        echo "   $name failed:"; tail -5 "$work/err.$name"; return 1; }
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time.$name")
    rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.$name")
    printf "   %-28s %8.2f s   peak RSS %8d KiB\n" "$name" "$secs" "$rss_kb"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "inf" }'; }

echo "== 1. mkfs"
run wafer-mkfs "$wafer" --quiet mkfs --force "$work/tree.tar" -o "$work/a.img" --fs ext4 --epoch 1700000000
w_secs=$secs; w_rss=$rss_kb
size_bytes=$(stat -c %s "$work/a.img")
size_k=$(( size_bytes / 1024 ))
rm -f "$work/b.img"
run mke2fs-d mke2fs -q -F -t ext4 -E root_owner=0:0 -d "$work/tree" "$work/b.img" "${size_k}k"
m_secs=$secs; m_rss=$rss_kb
echo "   image size ${size_bytes} bytes; wafer is $(ratio "$w_secs" "$m_secs")x the speed of mke2fs -d;"
echo "   wafer peak RSS per entry: $(awk -v r="$w_rss" -v n="$entries" 'BEGIN { printf "%.0f", r * 1024 / n }') bytes"
e2fsck -fn "$work/a.img" > "$work/fsck.a" 2>&1 && echo "   e2fsck -fn a.img: clean" || { echo "   e2fsck -fn a.img: NOT clean"; tail -5 "$work/fsck.a"; }

echo "== 2. listing metadata of every path (b.img, made by mke2fs)"
(cd "$work/tree" && find . -type d | sed 's|^\.||; s|^$|/|' | sed 's|^|ls -l "|; s|$|"|') > "$work/debugfs.cmds"
run wafer-ls-nohash "$wafer" --quiet ls "$work/b.img" --long --no-hash
wl_secs=$secs
run debugfs-ls-l debugfs -f "$work/debugfs.cmds" "$work/b.img"
dl_secs=$secs
echo "   wafer ls is $(ratio "$wl_secs" "$dl_secs")x the speed of debugfs ls -l over every directory"

echo "== 3. reading every file's contents (b.img)"
run wafer-ls-hash "$wafer" --quiet ls "$work/b.img" --long
wh_secs=$secs
mkdir -p "$work/rdump"
run debugfs-rdump debugfs -R "rdump / $work/rdump" "$work/b.img"
dr_secs=$secs
echo "   wafer ls --long (sha256 of all) is $(ratio "$wh_secs" "$dr_secs")x the speed of debugfs rdump"
