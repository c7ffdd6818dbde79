//! Seeded fuzzing of every parser: IDX (raw and gzipped), CIFAR-10/100, SVHN `.mat` (plain
//! and compressed), image decoding, checkpoint files (the safetensors header and the model
//! config inside it) and score files. For each, `CASES` inputs per run: valid seeds mutated
//! (bit flips, interesting integers, insertions, deletions, duplications, truncations,
//! splices; for compressed formats also mutations of the decompressed content, recompressed)
//! and purely random bytes, among them decompression bombs.
//!
//! Every input must end in `Ok` or `Err`, never a panic; what a parser accepts must then go
//! through the downstream code (validation, conversion, normalisation, batching) without a
//! panic either; and the peak resident memory of the process while one parser runs stays
//! within 256 MiB + 64 × its largest input (checked where `/proc/self/status` exists).
//!
//! This file holds one test so that nothing else runs in the process while memory is
//! measured. A failing input is written to the temp directory and named in the panic.
mod common;

use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use isomax::checkpoint::{Checkpoint, check_config};
use isomax::data::{Augment, Dataset, Loader, Normalization, cifar, folder, idx, svhn};
use isomax::ood::{ood_metrics, parse_scores, threshold_at_tpr};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Instant;

/// Inputs per parser and run.
const CASES: usize = 20_000;

const INTERESTING_U32: [u32; 20] = [
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    10,
    255,
    256,
    8192,
    8193,
    30000,
    0x7fff,
    0xffff,
    0x10000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];
const INTERESTING_U8: [u8; 8] = [0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, 10];

struct Mutator {
    rng: StdRng,
}

impl Mutator {
    fn pos(&mut self, len: usize) -> usize {
        if len == 0 {
            0
        } else {
            self.rng.random_range(0..len)
        }
    }

    fn random_bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.rng.random_range(0..=max);
        (0..n).map(|_| self.rng.random()).collect()
    }

    /// One to four stacked mutations of `seed`; `others` feed splices.
    fn mutate(&mut self, seed: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..self.rng.random_range(1..=4) {
            match self.rng.random_range(0..9) {
                0 if !v.is_empty() => {
                    let i = self.pos(v.len());
                    v[i] ^= 1 << self.rng.random_range(0..8);
                }
                1 if !v.is_empty() => {
                    let i = self.pos(v.len());
                    v[i] = INTERESTING_U8[self.rng.random_range(0..INTERESTING_U8.len())];
                }
                2 if v.len() >= 4 => {
                    let i = self.pos(v.len() - 3);
                    let x = INTERESTING_U32[self.rng.random_range(0..INTERESTING_U32.len())];
                    let b = if self.rng.random_bool(0.5) {
                        x.to_be_bytes()
                    } else {
                        x.to_le_bytes()
                    };
                    v[i..i + 4].copy_from_slice(&b);
                }
                3 => {
                    let i = self.pos(v.len() + 1);
                    let ins = self.random_bytes(16);
                    v.splice(i..i, ins);
                }
                4 if !v.is_empty() => {
                    let i = self.pos(v.len());
                    let n = self.rng.random_range(1..=(v.len() - i).min(64));
                    v.drain(i..i + n);
                }
                5 if !v.is_empty() => {
                    let i = self.pos(v.len());
                    let n = self.rng.random_range(1..=(v.len() - i).min(64));
                    let chunk = v[i..i + n].to_vec();
                    let at = self.pos(v.len() + 1);
                    v.splice(at..at, chunk);
                }
                6 => {
                    let n = self.pos(v.len() + 1);
                    v.truncate(n);
                }
                7 if !others.is_empty() => {
                    let o = &others[self.rng.random_range(0..others.len())];
                    let (a, b) = (self.pos(v.len() + 1), self.pos(o.len() + 1));
                    v.truncate(a);
                    v.extend_from_slice(&o[b..]);
                }
                _ if !v.is_empty() => {
                    let i = self.pos(v.len());
                    v[i] = self.rng.random();
                }
                _ => v.push(self.rng.random()),
            }
        }
        v
    }
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A gzip stream of `header` followed by `mib` MiB of zeros (about 1 KiB per MiB).
fn gz_bomb(header: &[u8], mib: usize) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(header).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..mib {
        e.write_all(&zeros).unwrap();
    }
    e.finish().unwrap()
}

fn idx_images(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [idx::IMAGES_MAGIC, count, rows, cols] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend((0..count * rows * cols).map(|p| (p * 37 % 251) as u8));
    b
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [idx::LABELS_MAGIC, labels.len() as u32] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(labels);
    b
}

/// Little-endian MAT level-5 pieces, enough for SVHN's numeric arrays.
mod mat {
    pub fn header() -> Vec<u8> {
        let mut h = b"MATLAB 5.0 MAT-file, fuzz seed".to_vec();
        h.resize(116, b' ');
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(&0x0100u16.to_le_bytes());
        h.extend_from_slice(b"IM");
        h
    }

    pub fn element(ty: u32, data: &[u8]) -> Vec<u8> {
        let mut e = ty.to_le_bytes().to_vec();
        e.extend_from_slice(&(data.len() as u32).to_le_bytes());
        e.extend_from_slice(data);
        e.resize(e.len().next_multiple_of(8), 0);
        e
    }

    pub fn matrix(name: &str, class: u32, dims: &[u32], ty: u32, data: &[u8]) -> Vec<u8> {
        let mut flags = class.to_le_bytes().to_vec();
        flags.extend_from_slice(&[0; 4]);
        let mut body = element(6, &flags);
        let dims: Vec<u8> = dims.iter().flat_map(|d| d.to_le_bytes()).collect();
        body.extend(element(5, &dims));
        body.extend(element(1, name.as_bytes()));
        body.extend(element(ty, data));
        element(14, &body)
    }

    pub fn compressed(z: &[u8]) -> Vec<u8> {
        let mut e = 15u32.to_le_bytes().to_vec();
        e.extend_from_slice(&(z.len() as u32).to_le_bytes());
        e.extend_from_slice(z);
        e
    }

    /// X (2x3 pixels, 3 channels, 2 images, uint8) and y (2 doubles), as top-level elements.
    pub fn variables() -> (Vec<u8>, Vec<u8>) {
        let x: Vec<u8> = (0..36).map(|v| v * 7).collect();
        let y: Vec<u8> = [10.0f64, 3.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        (
            matrix("X", 9, &[2, 3, 3, 2], 2, &x),
            matrix("y", 6, &[2, 1], 9, &y),
        )
    }
}

fn checkpoint_seed(config: &str) -> Vec<u8> {
    common::checkpoint_bytes(
        config,
        &common::state_json().to_string(),
        &[
            ("head.prototypes", vec![10, 4], vec![0.5; 40]),
            (
                "optimizer.velocity.head.prototypes",
                vec![10, 4],
                vec![0.0; 40],
            ),
        ],
    )
}

/// What a dataset parser accepted must survive the code that consumes datasets.
fn downstream(d: Dataset) {
    let d = d.clone().with_classes(256).unwrap_or(d);
    let valid = d.validate().is_ok();
    let converted = d.converted(if d.channels == 1 { 3 } else { 1 }, 5, 7);
    assert_eq!(converted.is_ok(), d.check_shape().is_ok(), "{}", d.name);
    if !valid {
        return;
    }
    let norm = Normalization::from_dataset(&d).expect("valid dataset");
    let loader = Loader::new(&d, 3, true, 1, Some(Augment::cifar()), norm, false)
        .expect("valid dataset and its own normalisation");
    let batch = loader
        .epoch(0)
        .next()
        .expect("a non-empty dataset has a batch");
    assert!(batch.images.iter().all(|v| v.is_finite()));
}

/// Peak resident memory of this process in bytes, after resetting it (Linux only).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Parses one input; true if it was accepted.
type Parser = Box<dyn Fn(&[u8]) -> bool>;
/// Turns mutated decompressed content back into an input (compresses it).
type Recompress = fn(&[u8]) -> Vec<u8>;

struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    /// Decompression bombs: parsed once each (inflating them takes time), not mutated.
    bombs: Vec<Vec<u8>>,
    /// Mutate this decompressed content and recompress it, for half of the cases.
    inner: Option<(Vec<Vec<u8>>, Recompress)>,
    /// Random inputs start with one of these (a magic number) half of the time.
    prefixes: Vec<Vec<u8>>,
    parse: Parser,
}

/// Returns the largest input, the number of inputs accepted, and the peak RSS (0 if unknown).
fn run(target: &Target, seed: u64) -> (usize, usize, usize) {
    let mut m = Mutator {
        rng: StdRng::seed_from_u64(seed),
    };
    let all = || target.seeds.iter().chain(&target.bombs);
    let mut max_len = all().map(Vec::len).max().unwrap_or(0);
    let measured = reset_peak();
    // The seeds and bombs themselves first, then the mutants.
    for (i, s) in all().enumerate() {
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.parse)(s)));
        assert!(outcome.is_ok(), "{}: seed {i} panicked", target.name);
    }
    let bound = 256 * (1 << 20) + 64 * max_len as u64;
    if measured && let Some(peak) = peak_rss() {
        assert!(
            peak <= bound,
            "{}: peak RSS {} MiB over the bound {} MiB on the seeds",
            target.name,
            peak >> 20,
            bound >> 20
        );
    }
    let mut accepted = 0;
    for case in 0..CASES {
        let input = match m.rng.random_range(0..10) {
            // Purely random, sometimes behind a valid magic number.
            0 => {
                let mut v = if !target.prefixes.is_empty() && m.rng.random_bool(0.5) {
                    target.prefixes[m.rng.random_range(0..target.prefixes.len())].clone()
                } else {
                    Vec::new()
                };
                v.extend(m.random_bytes(600));
                v
            }
            1..=4 if target.inner.is_some() => {
                let (inner, compress) = target.inner.as_ref().unwrap();
                let s = &inner[m.rng.random_range(0..inner.len())];
                compress(&m.mutate(s, inner))
            }
            _ => {
                let s = &target.seeds[m.rng.random_range(0..target.seeds.len())];
                m.mutate(s, &target.seeds)
            }
        };
        max_len = max_len.max(input.len());
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.parse)(&input)));
        accepted += usize::from(matches!(outcome, Ok(true)));
        if outcome.is_err() {
            let file = std::env::temp_dir().join(format!("isomax-fuzz-{}-{case}.bin", target.name));
            std::fs::write(&file, &input).unwrap();
            panic!(
                "{}: case {case} (seed {seed}) panicked; input saved to {}",
                target.name,
                file.display()
            );
        }
    }
    if measured && let Some(peak) = peak_rss() {
        let bound = 256 * (1 << 20) + 64 * max_len as u64;
        assert!(
            peak <= bound,
            "{}: peak RSS {} MiB over the bound {} MiB",
            target.name,
            peak >> 20,
            bound >> 20
        );
        return (max_len, accepted, peak as usize);
    }
    (max_len, accepted, 0)
}

fn targets() -> Vec<Target> {
    let p = Path::new;
    let images = idx_images(5, 4, 3);
    let labels = idx_labels(&[1, 0, 9, 3, 7]);
    let big_labels = idx_labels(&[200, 0, 255, 3, 7]);
    let images_gz = gz(&images);
    let labels_gz = gz(&labels);
    // Header: 5 images of 4x3; then 512 MiB of zeros (past the bound if inflated).
    let idx_bomb = gz_bomb(&images[..16], 512);
    let label_bomb = gz_bomb(&labels[..8], 512);
    // Headers that announce far more than the 512 MiB of zeros that follow: only the
    // decompression cap keeps these from filling memory.
    let header =
        |words: &[u32]| -> Vec<u8> { words.iter().flat_map(|w| w.to_be_bytes()).collect() };
    let idx_liar = gz_bomb(&header(&[idx::IMAGES_MAGIC, 0x7fff_ffff, 4, 3]), 512);
    let label_liar = gz_bomb(&header(&[idx::LABELS_MAGIC, 0xffff_ffff]), 512);

    let cifar10: Vec<u8> = (0..2)
        .flat_map(|r| {
            let mut rec = vec![r * 7 % 10];
            rec.extend((0..3072).map(|p| (p % 251) as u8));
            rec
        })
        .collect();
    let cifar100: Vec<u8> = (0..2)
        .flat_map(|r| {
            let mut rec = vec![r, 90 + r];
            rec.extend((0..3072).map(|p| (p % 241) as u8));
            rec
        })
        .collect();

    let (x, y) = mat::variables();
    let plain = [mat::header(), x.clone(), y.clone()].concat();
    let compressed = [
        mat::header(),
        mat::compressed(&zlib(&x)),
        mat::compressed(&zlib(&y)),
    ]
    .concat();
    // X's inner tag announces its real size; the stream then inflates to 512 MiB of zeros.
    let mut zbomb = ZlibEncoder::new(Vec::new(), Compression::best());
    zbomb.write_all(&x).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..512 {
        zbomb.write_all(&zeros).unwrap();
    }
    let mat_bomb = [
        mat::header(),
        mat::compressed(&zbomb.finish().unwrap()),
        y.clone(),
    ]
    .concat();
    // An inner tag announcing 4 GiB over 512 MiB of zeros.
    let mut zliar = ZlibEncoder::new(Vec::new(), Compression::best());
    zliar.write_all(&14u32.to_le_bytes()).unwrap();
    zliar.write_all(&u32::MAX.to_le_bytes()).unwrap();
    for _ in 0..512 {
        zliar.write_all(&zeros).unwrap();
    }
    let mat_liar = [mat::header(), mat::compressed(&zliar.finish().unwrap())].concat();

    let encode = |img: image::DynamicImage, fmt| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, fmt).unwrap();
        out.into_inner()
    };
    let rgb = image::RgbImage::from_fn(6, 5, |x, y| image::Rgb([x as u8 * 40, y as u8 * 50, 7]));
    let gray = image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * y) as u8]));
    let png = encode(rgb.clone().into(), image::ImageFormat::Png);
    let gray_png = encode(gray.into(), image::ImageFormat::Png);
    let jpeg = encode(rgb.into(), image::ImageFormat::Jpeg);

    let config = common::config_json().to_string();
    let ck = checkpoint_seed(&config);

    let scores = b"0.5\n0.25\n# comment\n-1e-3 # trailing\n\n7\n1.000000001\n".to_vec();

    let idx_parse = |labels: Vec<u8>| -> Parser {
        Box::new(move |b| {
            idx::parse(b, Path::new("i"), &labels, Path::new("l"))
                .map(downstream)
                .is_ok()
        })
    };
    let idx_labels_parse = |images: Vec<u8>| -> Parser {
        Box::new(move |b| {
            idx::parse(&images, Path::new("i"), b, Path::new("l"))
                .map(downstream)
                .is_ok()
        })
    };
    let idx_magic = |m: u32| m.to_be_bytes().to_vec();
    vec![
        Target {
            name: "idx-images-raw",
            seeds: vec![images.clone(), idx_images(1, 1, 1), idx_images(2, 8, 8)],
            bombs: vec![],
            inner: None,
            prefixes: vec![idx_magic(idx::IMAGES_MAGIC)],
            parse: idx_parse(labels.clone()),
        },
        Target {
            name: "idx-labels-raw",
            seeds: vec![labels.clone(), big_labels.clone()],
            bombs: vec![],
            inner: None,
            prefixes: vec![idx_magic(idx::LABELS_MAGIC)],
            parse: idx_labels_parse(images.clone()),
        },
        Target {
            name: "idx-images-gz",
            seeds: vec![
                images_gz.clone(),
                [gz(&images[..30]), gz(&images[30..])].concat(),
            ],
            bombs: vec![idx_bomb, idx_liar],
            inner: Some((vec![images.clone(), idx_images(1, 2, 2)], gz)),
            prefixes: vec![vec![0x1f, 0x8b, 8, 0]],
            parse: idx_parse(labels_gz.clone()),
        },
        Target {
            name: "idx-labels-gz",
            seeds: vec![labels_gz],
            bombs: vec![label_bomb, label_liar],
            inner: Some((vec![labels, big_labels], gz)),
            prefixes: vec![vec![0x1f, 0x8b, 8, 0]],
            parse: idx_labels_parse(images_gz),
        },
        Target {
            name: "cifar10",
            seeds: vec![cifar10.clone(), cifar10[..3073].to_vec()],
            bombs: vec![],
            inner: None,
            prefixes: vec![],
            parse: Box::new(move |b| {
                cifar::parse(b, p("c"), cifar::Variant::Cifar10)
                    .map(downstream)
                    .is_ok()
            }),
        },
        Target {
            name: "cifar100",
            seeds: vec![cifar100.clone(), cifar100[..3074].to_vec()],
            bombs: vec![],
            inner: None,
            prefixes: vec![],
            parse: Box::new(move |b| {
                cifar::parse(b, p("c"), cifar::Variant::Cifar100)
                    .map(downstream)
                    .is_ok()
            }),
        },
        Target {
            name: "svhn-plain",
            seeds: vec![plain.clone()],
            bombs: vec![],
            inner: None,
            prefixes: vec![mat::header()],
            parse: Box::new(move |b| svhn::parse(b, p("s.mat")).map(downstream).is_ok()),
        },
        Target {
            name: "svhn-compressed",
            seeds: vec![compressed],
            bombs: vec![mat_bomb, mat_liar],
            // Mutate X's element itself, then compress it into a file with a valid y.
            inner: Some((vec![x, plain], |inner: &[u8]| {
                let (_, y) = mat::variables();
                [mat::header(), mat::compressed(&zlib(inner)), y].concat()
            })),
            prefixes: vec![mat::header()],
            parse: Box::new(move |b| svhn::parse(b, p("s.mat")).map(downstream).is_ok()),
        },
        Target {
            name: "image-decode",
            seeds: vec![png.clone(), gray_png, jpeg],
            bombs: vec![],
            inner: None,
            prefixes: vec![png[..8].to_vec(), vec![0xff, 0xd8, 0xff]],
            parse: Box::new(move |b| {
                folder::decode_bytes(b, p("x.png"))
                    .map(|img| {
                        let rgb = img.to_rgb8();
                        image::imageops::resize(&rgb, 4, 4, image::imageops::FilterType::Triangle)
                    })
                    .is_ok()
            }),
        },
        Target {
            name: "checkpoint-file",
            seeds: vec![ck.clone()],
            bombs: vec![],
            inner: None,
            prefixes: vec![ck[..8].to_vec()],
            parse: Box::new(move |b| {
                Checkpoint::from_bytes(b, p("c.safetensors"))
                    .map(|c| {
                        assert!(check_config(&c.config).is_ok());
                        c.has_optimizer_state()
                    })
                    .is_ok()
            }),
        },
        Target {
            name: "checkpoint-config",
            // The config JSON is mutated, then stored in an otherwise valid file.
            seeds: vec![ck],
            bombs: vec![],
            inner: Some((vec![config.into_bytes()], |json: &[u8]| {
                checkpoint_seed(&String::from_utf8_lossy(json))
            })),
            prefixes: vec![],
            parse: Box::new(move |b| {
                Checkpoint::from_bytes(b, p("c.safetensors"))
                    .map(|c| assert!(check_config(&c.config).is_ok()))
                    .is_ok()
            }),
        },
        Target {
            name: "metrics-scores",
            seeds: vec![scores, b"1\n2\n3\n".to_vec(), b"\xef\xbb\xbf0.1\n".to_vec()],
            bombs: vec![],
            inner: None,
            prefixes: vec![],
            parse: Box::new(move |b| {
                parse_scores(b, p("s.txt"))
                    .map(|s| {
                        assert!(!s.is_empty() && s.iter().all(|v| v.is_finite()));
                        ood_metrics(&s, &[0.1, 0.2, 0.3]).expect("finite, non-empty scores");
                        let f: Vec<f32> = s.iter().map(|&v| v as f32).collect();
                        let _ = threshold_at_tpr(&f, 0.95);
                    })
                    .is_ok()
            }),
        },
    ]
}

#[test]
fn every_parser_survives_mutated_and_random_inputs() {
    let t0 = Instant::now();
    // The seeds parse, so that mutations start from inputs that reach deep code.
    the_seeds_are_valid_inputs();
    let targets = targets();
    let total = targets.len() * CASES;
    for (i, t) in targets.iter().enumerate() {
        let t1 = Instant::now();
        let (max_len, accepted, peak) = run(t, 0x1505_0000 + i as u64);
        eprintln!(
            "fuzz {:<18} {CASES} inputs ({accepted} accepted) in {:>5.2} s, largest {:>7} bytes, \
             peak RSS {} MiB",
            t.name,
            t1.elapsed().as_secs_f64(),
            max_len,
            peak >> 20
        );
    }
    eprintln!(
        "fuzz: {total} inputs over {} parsers in {:.1} s",
        targets.len(),
        t0.elapsed().as_secs_f64()
    );
}

fn the_seeds_are_valid_inputs() {
    let images = idx_images(5, 4, 3);
    let labels = idx_labels(&[1, 0, 9, 3, 7]);
    idx::parse(&gz(&images), Path::new("i"), &labels, Path::new("l"))
        .unwrap()
        .validate()
        .unwrap();
    let (x, y) = mat::variables();
    svhn::parse(
        &[mat::header(), x.clone(), y.clone()].concat(),
        Path::new("s"),
    )
    .unwrap()
    .validate()
    .unwrap();
    svhn::parse(
        &[
            mat::header(),
            mat::compressed(&zlib(&x)),
            mat::compressed(&zlib(&y)),
        ]
        .concat(),
        Path::new("s"),
    )
    .unwrap();
    let ck = checkpoint_seed(&common::config_json().to_string());
    let c = Checkpoint::from_bytes(&ck, Path::new("c")).unwrap();
    assert!(c.has_optimizer_state());
}
