//! Verify-while-streaming ([`bundle::stream`]) and delta pulls ([`bundle::delta`]) against a
//! local "remote" (a file read at offsets, counting what it serves). The oracle for every pull
//! is the new bundle's own `disk.img.zst`: the pulled file must be byte-identical to it, and the
//! sink checks it against the manifest's digests, which are computed here by
//! [`bundle::digest`] on the file the seekable writer made.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use bundle::delta::{
    self, assemble, parse_tail, plan, read_remote_table, BlockIndex, DeltaError, FetchError,
    FileRange, Plan, RangeFetch,
};
use bundle::digest::{digest_seekable, DigestOptions};
use bundle::manifest::{
    FsFacts, ManifestBase, ManifestCompressed, ManifestImage, ManifestRecipe, ManifestRequirements,
    ManifestVerity, OsInfo,
};
use bundle::stream::{Expected, StreamError, StreamSink};
use bundle::{Bundle, BundleWriter, Manifest};
use rootfs::atomic::Replace;

const FRAME: usize = 64 << 10;
const B: usize = 4096;

/// Deterministic pseudo-random bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Half-compressible: only the low nibble varies.
        v.extend_from_slice(&(x & 0x0f0f_0f0f_0f0f_0f0f).to_le_bytes());
    }
    v.truncate(n);
    v
}

/// An "image" of `files` 4 KiB-aligned files (sizes from `sizes`), with zero gaps, padded to
/// `total` bytes.
fn image(files: &[(u64, usize)], total: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(total);
    for (seed, size) in files {
        v.extend_from_slice(&noise(*size, *seed));
        let pad = v.len().div_ceil(B) * B - v.len();
        v.extend(std::iter::repeat_n(0u8, pad));
        if seed % 5 == 0 {
            v.extend_from_slice(&[0u8; B]);
        }
    }
    assert!(v.len() <= total);
    v.resize(total, 0);
    v
}

/// The old and new images: 120 files; the new one upgrades "package" files 40..44 (new content
/// and sizes), which shifts every later file by a few blocks, as an allocator would.
fn pair() -> (Vec<u8>, Vec<u8>) {
    let sizes: Vec<(u64, usize)> = (0..120u64)
        .map(|i| (i + 1, 3000 + (i as usize * 7919) % 40_000))
        .collect();
    let mut new = sizes.clone();
    for f in &mut new[40..44] {
        f.0 += 1000;
        f.1 += 9000;
    }
    let total = 6 << 20;
    (image(&sizes, total), image(&new, total))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A bundle at `dir/name` holding `raw`, written with [`BundleWriter`], its digests from
/// [`bundle::digest`].
fn bundle_of(dir: &Path, name: &str, raw: &[u8]) -> PathBuf {
    let dest = dir.join(name);
    let w = BundleWriter::create(&dest, Replace::No).unwrap();
    let zst = w.path().join("disk.img.zst");
    let table = rootfs::zseek::compress(raw, fs::File::create(&zst).unwrap(), FRAME, 3, 2).unwrap();
    let salt = vec![7u8; 32];
    let d = digest_seekable(
        fs::File::open(&zst).unwrap(),
        &DigestOptions {
            salt: salt.clone(),
            sha256: true,
            compressed_sha256: true,
            threads: 1,
        },
    )
    .unwrap();
    let m = Manifest {
        format: bundle::FORMAT.into(),
        name: "delta".into(),
        version: name.into(),
        vo: "test".into(),
        os: OsInfo {
            id: "unknown".into(),
            version: String::new(),
            name: "unknown".into(),
        },
        arch: "x86_64".into(),
        filesystem: FsFacts {
            fs_type: "ext4".into(),
            profile: "el9".into(),
            size: d.size,
        },
        requirements: ManifestRequirements {
            memory_mib: 64,
            vcpus: 1,
            disk_mib: 8,
            arch: "x86_64".into(),
            guest_types: vec!["pv".into()],
            min_xen: None,
        },
        boot: None,
        image: ManifestImage {
            sha256: hex(&d.sha256.unwrap()),
            size: d.size,
            verity: ManifestVerity {
                root: d.verity.root_hex(),
                salt: hex(&salt),
                hash_algorithm: "sha256".into(),
                data_block_size: 4096,
                hash_block_size: 4096,
                format: 1,
            },
        },
        compressed: ManifestCompressed {
            file: "disk.img.zst".into(),
            sha256: hex(&d.compressed_sha256.unwrap()),
            size: fs::metadata(&zst).unwrap().len(),
            frame_size: FRAME as u64,
            level: 3,
            frames: table.frames.len() as u64,
        },
        recipe: ManifestRecipe {
            sha256: "00".repeat(32),
            inputs_sha256: "11".repeat(32),
        },
        base: ManifestBase {
            kind: "ext".into(),
            sha256: "22".repeat(32),
        },
        packages: None,
        source_date_epoch: 1_700_000_000,
    };
    w.write_manifest(&m).unwrap();
    w.commit().unwrap();
    dest
}

struct Fixture {
    _dir: tempfile::TempDir,
    work: PathBuf,
    old: Bundle,
    new: Bundle,
    new_disk: Vec<u8>,
    index: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair();
    let old = Bundle::open(&bundle_of(dir.path(), "1", &a)).unwrap();
    let new = Bundle::open(&bundle_of(dir.path(), "2", &b)).unwrap();
    let index = BlockIndex::compute(new.disk()).unwrap().to_bytes().unwrap();
    let new_disk = fs::read(new.disk().path()).unwrap();
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    Fixture {
        work,
        old,
        new,
        new_disk,
        index,
        _dir: dir,
    }
}

impl Fixture {
    fn expected(&self) -> Expected {
        Expected::from_manifest(self.new.manifest()).unwrap()
    }
    fn remote(&self) -> FileRange {
        FileRange::open(self.new.disk().path()).unwrap()
    }
    fn partial(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }
}

/// A remote whose bytes are `data` with `edit` applied to every response.
struct Edited<F: FnMut(u64, &mut Vec<u8>)> {
    data: Vec<u8>,
    edit: F,
}

impl<F: FnMut(u64, &mut Vec<u8>)> RangeFetch for Edited<F> {
    fn fetch(&mut self, offset: u64, len: u64, out: &mut dyn Write) -> Result<(), FetchError> {
        let mut v = self.data[offset as usize..(offset + len) as usize].to_vec();
        (self.edit)(offset, &mut v);
        out.write_all(&v)?;
        Ok(())
    }
}

#[test]
fn delta_pull_rebuilds_the_new_disk_byte_for_byte_and_fetches_little() {
    let f = fixture();
    let layer = f.new_disk.len() as u64;
    // Fixed-offset frames mostly differ (the upgrade shifted later files) ...
    let same_at_index = f
        .old
        .disk()
        .table()
        .frames
        .iter()
        .zip(&f.new.disk().table().frames)
        .filter(|(a, b)| a.compressed_size == b.compressed_size)
        .count();
    let sink = StreamSink::create(&f.partial("a"), f.expected()).unwrap();
    let mut remote = f.remote();
    let (done, summary) =
        delta::pull(Some(f.old.disk()), Some(&f.index), &mut remote, sink).unwrap();
    assert_eq!(fs::read(&done.path).unwrap(), f.new_disk);
    assert_eq!(summary.index_ignored, None);
    assert_eq!(summary.report.frames_refetched, 0);
    assert_eq!(remote.fetched(), summary.total_fetched());
    let n = f.new.disk().frames();
    assert_eq!(
        summary.report.frames_local + summary.report.frames_fetched,
        n
    );
    // ... but the block index finds the shifted blocks: only the frames holding the upgraded
    // files (and the one the shift splits) are fetched.
    assert!(
        summary.report.frames_local * 4 > n * 3,
        "{} of {n} frames local ({same_at_index} identical at the same index)",
        summary.report.frames_local
    );
    assert!(
        remote.fetched() * 4 < layer,
        "fetched {} of {layer}",
        remote.fetched()
    );
    // Adjacent frames to fetch are one request each run.
    assert!(remote.requests() <= summary.report.frames_fetched as u64 + 1);
    assert_eq!(done.digests.table, *f.new.disk().table());
}

#[test]
fn full_pull_without_an_earlier_version_fetches_the_layer_once() {
    let f = fixture();
    let sink = StreamSink::create(&f.partial("a"), f.expected()).unwrap();
    let mut remote = f.remote();
    let (done, summary) = delta::pull(None, None, &mut remote, sink).unwrap();
    assert_eq!(fs::read(&done.path).unwrap(), f.new_disk);
    assert_eq!(
        summary.report.bytes_fetched + summary.tail_bytes,
        remote.fetched()
    );
    // The frames once, plus the tail read for the seek table.
    assert_eq!(
        remote.fetched(),
        f.new_disk.len() as u64 + summary.tail_bytes - (f.new.disk().table().table_frame_size())
    );
    assert_eq!(remote.requests(), 2);
}

#[test]
fn block_index_round_trips_and_refuses_damage() {
    let f = fixture();
    let ix = BlockIndex::compute(f.new.disk()).unwrap();
    assert_eq!(BlockIndex::parse(&f.index).unwrap(), ix);
    assert_eq!(ix.blocks.len() as u64, f.new.disk().size() / B as u64);
    assert!(ix.blocks.contains(&0), "zero blocks are marked");
    // Damaged bytes: each is a typed Index error, never a panic.
    let mut cut = f.index.clone();
    cut.truncate(cut.len() / 2);
    assert!(matches!(BlockIndex::parse(&cut), Err(DeltaError::Index(_))));
    let mut extra = f.index.clone();
    extra.push(0);
    assert!(matches!(
        BlockIndex::parse(&extra),
        Err(DeltaError::Index(_))
    ));
    assert!(matches!(
        BlockIndex::parse(b"{}"),
        Err(DeltaError::Index(_))
    ));
    // A zstd frame declaring 1 GiB is refused before anything is allocated for it.
    let mut c = zstd::bulk::Compressor::new(1).unwrap();
    c.include_contentsize(true).unwrap();
    let big = c.compress(&vec![0u8; 80 << 20]).unwrap();
    let e = BlockIndex::parse(&big).unwrap_err();
    assert!(e.to_string().contains("more than"), "{e}");
    // Inconsistent counts inside a valid frame.
    let mut raw = zstd::bulk::decompress(&f.index, 64 << 20).unwrap();
    raw[56] ^= 1; // frame count
    let bytes = zstd::bulk::Compressor::new(1)
        .and_then(|mut c| {
            c.include_contentsize(true)?;
            c.compress(&raw)
        })
        .unwrap();
    assert!(matches!(
        BlockIndex::parse(&bytes),
        Err(DeltaError::Index(_))
    ));
}

/// Pulls with `index` (a lie of some kind) and checks the result is still the signed disk.
fn pull_with_index(f: &Fixture, name: &str, index: &[u8]) -> delta::PullSummary {
    let sink = StreamSink::create(&f.partial(name), f.expected()).unwrap();
    let mut remote = f.remote();
    let (done, summary) = delta::pull(Some(f.old.disk()), Some(index), &mut remote, sink).unwrap();
    assert_eq!(fs::read(&done.path).unwrap(), f.new_disk, "{name}");
    summary
}

fn encode(ix: &BlockIndex) -> Vec<u8> {
    ix.to_bytes().unwrap()
}

#[test]
fn a_lying_index_wastes_bandwidth_but_never_gives_a_wrong_disk() {
    let f = fixture();
    let good = BlockIndex::parse(&f.index).unwrap();
    let layer = f.new_disk.len() as u64;

    // Wrong frame digests: every rebuilt frame is refused and fetched instead.
    let mut ix = good.clone();
    for fr in &mut ix.frames {
        fr.sha256[0] ^= 1;
    }
    let s = pull_with_index(&f, "sha", &encode(&ix));
    assert!(s.report.frames_refetched > 0);
    assert_eq!(s.report.frames_local, 0);

    // Block keys pointing at the wrong old blocks (the old image's own index, claimed for the new
    // layer): rebuilds do not match the frame digests, those frames are fetched.
    let old_ix = BlockIndex::compute(f.old.disk()).unwrap();
    let mut ix = good.clone();
    ix.blocks = old_ix.blocks.clone();
    let s = pull_with_index(&f, "keys", &encode(&ix));
    assert!(s.report.frames_refetched > 0, "{s:?}");

    // Every block claimed to be zero.
    let mut ix = good.clone();
    ix.blocks.iter_mut().for_each(|b| *b = 0);
    let s = pull_with_index(&f, "zeros", &encode(&ix));
    assert!(s.report.frames_refetched > 0);

    // The index of another layer: ignored, everything fetched.
    let s = pull_with_index(&f, "other", &encode(&old_ix));
    assert!(
        s.index_ignored
            .as_deref()
            .unwrap_or("")
            .contains("another layer"),
        "{s:?}"
    );
    assert!(s.report.bytes_fetched >= layer - f.new.disk().table().table_frame_size());

    // Frame sizes that disagree with the layer's seek table: ignored.
    let mut ix = good.clone();
    ix.frames[3].compressed_size += 1;
    let s = pull_with_index(&f, "sizes", &encode(&ix));
    assert!(s.index_ignored.is_some());

    // Garbage: ignored.
    let s = pull_with_index(&f, "garbage", b"not an index");
    assert!(s.index_ignored.unwrap().contains("block index"));
}

#[test]
fn a_remote_sending_wrong_bytes_is_refused() {
    let f = fixture();
    let flip_at = f.new.disk().table().frames[5].compressed_offset + 10;
    // One flipped byte inside a fetched frame (full pull: every frame is fetched).
    let mut remote = Edited {
        data: f.new_disk.clone(),
        edit: |off: u64, v: &mut Vec<u8>| {
            if off <= flip_at && flip_at < off + v.len() as u64 {
                v[(flip_at - off) as usize] ^= 0x40;
            }
        },
    };
    let sink = StreamSink::create(&f.partial("flip"), f.expected()).unwrap();
    let e = delta::pull(None, None, &mut remote, sink).unwrap_err();
    assert!(
        matches!(
            e,
            DeltaError::Stream(StreamError::Decode { .. } | StreamError::Mismatch { .. })
        ),
        "{e}"
    );

    // A remote that sends one byte too few, or one too many.
    for delta_len in [-1i64, 1] {
        let mut remote = Edited {
            data: f.new_disk.clone(),
            edit: move |_, v: &mut Vec<u8>| {
                if delta_len < 0 {
                    v.pop();
                } else {
                    v.push(0);
                }
            },
        };
        let sink =
            StreamSink::create(&f.partial(&format!("len{delta_len}")), f.expected()).unwrap();
        let e = delta::pull(None, None, &mut remote, sink).unwrap_err();
        assert!(matches!(e, DeltaError::WrongLength { .. }), "{e}");
    }

    // Another wafer's layer (same shape, other bytes) behind the same manifest: refused.
    let mut remote = FileRange::open(f.old.disk().path()).unwrap();
    let sink = StreamSink::create(&f.partial("other"), f.expected()).unwrap();
    let e = delta::pull(None, None, &mut remote, sink).unwrap_err();
    assert!(
        matches!(
            e,
            DeltaError::Tail { .. }
                | DeltaError::WrongLength { .. }
                | DeltaError::Fetch { .. }
                | DeltaError::Stream(_)
        ),
        "{e}"
    );
}

#[test]
fn truncated_layers_and_wrong_seek_tables_are_typed_errors() {
    let f = fixture();
    let exp = f.expected();
    let layer = f.new_disk.len() as u64;
    // A truncated layer: the tail fetch asks past the end.
    let cut = f.work.join("cut.zst");
    fs::write(&cut, &f.new_disk[..f.new_disk.len() - 100]).unwrap();
    let e = read_remote_table(&mut FileRange::open(&cut).unwrap(), &exp).unwrap_err();
    assert!(matches!(e, DeltaError::Fetch { .. }), "{e}");

    let tail_len = f.new.disk().table().table_frame_size() as usize;
    let tail = &f.new_disk[f.new_disk.len() - tail_len..];
    assert_eq!(
        parse_tail(layer, tail, exp.frames).unwrap(),
        *f.new.disk().table()
    );
    // The manifest says another frame count.
    let e = parse_tail(layer, tail, exp.frames + 1).unwrap_err();
    assert!(e.to_string().contains("signed wafer.json"), "{e}");
    // A footer declaring 2^27 frames: refused from the footer, before any allocation.
    let mut t = tail.to_vec();
    let n = t.len();
    t[n - 9..n - 5].copy_from_slice(&0x0800_0000u32.to_le_bytes());
    assert!(matches!(
        parse_tail(layer, &t, exp.frames),
        Err(DeltaError::Tail { .. })
    ));
    assert!(matches!(
        parse_tail(u64::MAX, &t, 0x0800_0000),
        Err(DeltaError::Tail { .. })
    ));
    // An entry changed: the frames no longer fill the layer.
    let mut t = tail.to_vec();
    t[8] = t[8].wrapping_add(1);
    assert!(matches!(
        parse_tail(layer, &t, exp.frames),
        Err(DeltaError::Tail { .. })
    ));
    // The registry's blob is longer than compressed.size (its manifest may say anything): the
    // signed size decides what is read; the extra bytes are never fetched, the result is the
    // signed disk.
    let longer = f.work.join("longer.zst");
    let mut v = f.new_disk.clone();
    v.extend_from_slice(&[0u8; 100]);
    fs::write(&longer, v).unwrap();
    let sink = StreamSink::create(&f.partial("longer"), exp.clone()).unwrap();
    let (done, _) = delta::pull(None, None, &mut FileRange::open(&longer).unwrap(), sink).unwrap();
    assert_eq!(fs::read(&done.path).unwrap(), f.new_disk);
    // Garbage appended instead of a valid tail at the signed size: refused at the tail.
    let bad = f.work.join("bad.zst");
    let mut v = f.new_disk[..f.new_disk.len() - 4].to_vec();
    v.extend_from_slice(&[0xff; 4]);
    fs::write(&bad, v).unwrap();
    let e = read_remote_table(&mut FileRange::open(&bad).unwrap(), &exp).unwrap_err();
    assert!(matches!(e, DeltaError::Tail { .. }), "{e}");
    // A manifest declaring an absurd frame count.
    let mut m = f.new.manifest().clone();
    m.compressed.frames = u64::from(u32::MAX);
    assert!(matches!(
        Expected::from_manifest(&m),
        Err(StreamError::Manifest { .. })
    ));
    // Too short for a footer.
    assert!(parse_tail(layer, &tail[tail.len() - 5..], exp.frames).is_err());
}

/// Interrupted after `cut` bytes, then resumed from the partial file: the same file.
#[test]
fn resume_from_partial_files_at_several_cut_points_gives_the_identical_file() {
    let f = fixture();
    let t = f.new.disk().table();
    let layer = f.new_disk.len();
    let cuts = [
        0,
        1,
        t.frames[1].compressed_offset as usize,
        t.frames[7].compressed_offset as usize + 17,
        t.compressed_frames_size() as usize,
        layer - 1,
        layer,
    ];
    for (k, cut) in cuts.into_iter().enumerate() {
        for use_delta in [false, true] {
            let p = f.partial(&format!("r{k}-{use_delta}"));
            let mut s = StreamSink::create(&p, f.expected()).unwrap();
            s.push(&f.new_disk[..cut]).unwrap();
            drop(s); // interrupted
            let sink = StreamSink::open(&p, f.expected()).unwrap();
            assert_eq!(sink.position(), cut as u64);
            let mut remote = f.remote();
            let (old, index) = if use_delta {
                (Some(f.old.disk()), Some(&f.index[..]))
            } else {
                (None, None)
            };
            let (done, summary) = delta::pull(old, index, &mut remote, sink).unwrap();
            assert_eq!(fs::read(&done.path).unwrap(), f.new_disk, "cut {cut}");
            if !use_delta {
                // Only what was missing is fetched (and the tail for the seek table).
                assert!(
                    summary.report.bytes_fetched <= (layer - cut) as u64,
                    "cut {cut}: {summary:?}"
                );
            }
        }
    }
    // A partial file longer than the layer, or not zstd, cannot be resumed.
    let p = f.partial("long");
    let mut v = f.new_disk.clone();
    v.push(1);
    fs::write(&p, &v).unwrap();
    assert!(matches!(
        StreamSink::resume(&p, f.expected()),
        Err(StreamError::TooLong { .. })
    ));
    let p = f.partial("junk");
    fs::write(&p, b"this is not zstd at all").unwrap();
    assert!(matches!(
        StreamSink::resume(&p, f.expected()),
        Err(StreamError::Decode { .. })
    ));
    // Never through a link.
    let l = f.partial("link");
    std::os::unix::fs::symlink(f.new.disk().path(), &l).unwrap();
    assert!(StreamSink::resume(&l, f.expected()).is_err());
    assert!(StreamSink::create(&l, f.expected()).is_err());
}

#[test]
fn the_sink_checks_every_digest_and_bound() {
    let f = fixture();
    let push_all = |name: &str, exp: Expected| -> Result<(), StreamError> {
        let mut s = StreamSink::create(&f.partial(name), exp)?;
        for c in f.new_disk.chunks(50_000) {
            s.push(c)?;
        }
        s.finish().map(|_| ())
    };
    push_all("ok", f.expected()).unwrap();
    let mismatch = |name: &str, edit: &dyn Fn(&mut Expected), what: &str| {
        let mut e = f.expected();
        edit(&mut e);
        match push_all(name, e) {
            Err(StreamError::Mismatch { what: w, .. }) => assert_eq!(w, what),
            other => panic!("{name}: {other:?}"),
        }
    };
    mismatch(
        "c",
        &|e| e.compressed_sha256[0] ^= 1,
        "sha256 of disk.img.zst",
    );
    mismatch("i", &|e| e.image_sha256[0] ^= 1, "image sha256");
    mismatch("v", &|e| e.verity_root[0] ^= 1, "dm-verity root");
    mismatch("s", &|e| e.verity_salt[0] ^= 1, "dm-verity root");
    // More bytes than compressed.size, fewer, more decompressed bytes than image.size.
    let mut e = f.expected();
    e.compressed_size -= 1;
    assert!(matches!(
        push_all("long", e),
        Err(StreamError::TooLong { .. })
    ));
    let mut e = f.expected();
    e.compressed_size += 1;
    assert!(matches!(
        push_all("short", e),
        Err(StreamError::Truncated { .. })
    ));
    let mut e = f.expected();
    e.image_size -= 4096;
    assert!(matches!(
        push_all("img", e),
        Err(StreamError::ImageTooLong { .. })
    ));
    // After an error, nothing more is accepted.
    let mut s = StreamSink::create(&f.partial("poison"), f.expected()).unwrap();
    assert!(s.push(b"garbage that is not zstd").is_err());
    assert!(matches!(s.push(b"x"), Err(StreamError::Poisoned { .. })));
    // A frame asking for a 1 GiB window is refused (memory bound), not decoded.
    let mut z = zstd::stream::raw::Encoder::new(1).unwrap();
    use zstd::stream::raw::Operation;
    z.set_parameter(zstd::stream::raw::CParameter::WindowLog(30))
        .unwrap();
    let mut out = vec![0u8; 1 << 16];
    let mut ob = zstd::stream::raw::OutBuffer::around(&mut out[..]);
    let data = noise(1 << 16, 9);
    let mut ib = zstd::stream::raw::InBuffer::around(&data[..]);
    z.run(&mut ib, &mut ob).unwrap();
    z.finish(&mut ob, true).unwrap();
    let n = ob.pos();
    let mut e = f.expected();
    e.compressed_size = n as u64;
    e.image_size = 1 << 40;
    let mut s = StreamSink::create(&f.partial("window"), e).unwrap();
    let r = s.push(&out[..n]);
    assert!(matches!(r, Err(StreamError::Decode { .. })), "{r:?}");
}

#[test]
fn plan_reports_bytes_and_assemble_follows_it() {
    let f = fixture();
    let exp = f.expected();
    let mut remote = f.remote();
    let rt = read_remote_table(&mut remote, &exp).unwrap();
    let ix = BlockIndex::parse(&f.index).unwrap();
    let p = plan(f.old.disk(), &ix, &rt, &exp).unwrap();
    assert_eq!(
        p.bytes_to_fetch,
        p.ranges.iter().map(|r| r.len).sum::<u64>()
    );
    assert!(p
        .ranges
        .windows(2)
        .all(|w| w[0].offset + w[0].len < w[1].offset));
    let mut sink = StreamSink::create(&f.partial("p"), exp.clone()).unwrap();
    let before = remote.fetched();
    let report = assemble(&p, Some(f.old.disk()), &mut remote, &mut sink).unwrap();
    assert_eq!(report.bytes_fetched, p.bytes_to_fetch);
    assert_eq!(remote.fetched() - before, p.bytes_to_fetch);
    assert_eq!(remote.requests(), 1 + p.ranges.len() as u64);
    let done = sink.finish().unwrap();
    assert_eq!(fs::read(&done.path).unwrap(), f.new_disk);
    // The full plan fetches every frame in one range.
    let full = Plan::full(&rt, &exp, None);
    assert_eq!(full.ranges.len(), 1);
    assert_eq!(
        full.bytes_to_fetch,
        f.new.disk().table().compressed_frames_size()
    );
}
