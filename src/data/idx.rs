//! IDX files (MNIST, Fashion-MNIST, KMNIST...): a big-endian header followed by u8 data.
//!
//! Images: magic 0x00000803, count, rows, cols, then pixels. Labels: magic 0x00000801, count,
//! then one u8 per label. Files may be gzipped; gzip is detected by its magic bytes, not by
//! the file name, because mirrors are inconsistent about the `.gz` suffix.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use super::{DataError, Dataset, MAX_SIDE, bomb_error, check_regular, inflate_cap, open_regular};

/// Magic number of an IDX image file (u8 data, 3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX label file (u8 data, 1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The class count given to IDX sets, which do not record one (MNIST, Fashion-MNIST, KMNIST).
pub const DEFAULT_CLASSES: usize = 10;

/// Loads an images file and its labels file (found by [`labels_path_for`]).
/// A directory means its `train-images-idx3-ubyte[.gz]`. The class count is
/// [`DEFAULT_CLASSES`]; labels are not checked against it here (see [`Dataset::load`]).
pub fn load(path: &Path) -> Result<Dataset, DataError> {
    let images_path = if path.is_dir() {
        default_images_file(path).ok_or_else(|| {
            DataError::invalid(path, "no train-images-idx3-ubyte[.gz] in this directory")
        })?
    } else {
        path.to_path_buf()
    };
    let (file, size) = open_regular(&images_path)?;
    let (count, rows, cols, pixels) = read_images(BufReader::new(file), Some(size), &images_path)?;
    let labels_path = labels_path_for(&images_path)?;
    let (file, size) = open_regular(&labels_path)?;
    let labels = read_labels(BufReader::new(file), Some(size), &labels_path)?;
    assemble(
        &images_path,
        (count, rows, cols, pixels),
        &labels_path,
        labels,
    )
}

/// Parses an images file and a labels file held in memory (raw or gzipped); `images_path`
/// and `labels_path` only name them in messages.
pub fn parse(
    images: &[u8],
    images_path: &Path,
    labels: &[u8],
    labels_path: &Path,
) -> Result<Dataset, DataError> {
    let img = read_images(images, Some(images.len() as u64), images_path)?;
    let lab = read_labels(labels, Some(labels.len() as u64), labels_path)?;
    assemble(images_path, img, labels_path, lab)
}

fn assemble(
    images_path: &Path,
    (count, rows, cols, pixels): (usize, usize, usize, Vec<u8>),
    labels_path: &Path,
    labels: Vec<u32>,
) -> Result<Dataset, DataError> {
    if labels.len() != count {
        return Err(DataError::invalid(
            images_path,
            format!(
                "{count} images but {} has {} labels",
                labels_path.display(),
                labels.len()
            ),
        ));
    }
    Ok(Dataset {
        name: images_path.display().to_string(),
        images: pixels,
        labels,
        channels: 1,
        height: rows,
        width: cols,
        num_classes: DEFAULT_CLASSES,
    })
}

/// `train-images-idx3-ubyte` (or `.gz`) inside `dir`, if present.
pub fn default_images_file(dir: &Path) -> Option<PathBuf> {
    ["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

/// The labels file next to an images file: `images-idx3` becomes `labels-idx1` in the name
/// (also `images.idx3` -> `labels.idx1`), tried with and without `.gz`.
pub fn labels_path_for(images: &Path) -> Result<PathBuf, DataError> {
    let name = images.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let labels_name = if name.contains("images-idx3") {
        name.replace("images-idx3", "labels-idx1")
    } else if name.contains("images.idx3") {
        name.replace("images.idx3", "labels.idx1")
    } else {
        return Err(DataError::invalid(
            images,
            "cannot locate the labels file: the file name does not contain 'images-idx3'",
        ));
    };
    let alternative = match labels_name.strip_suffix(".gz") {
        Some(raw) => raw.to_string(),
        None => format!("{labels_name}.gz"),
    };
    let candidates = [
        images.with_file_name(&labels_name),
        images.with_file_name(alternative),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            DataError::invalid(
                images,
                format!(
                    "labels file not found (tried {} and {})",
                    candidates[0].display(),
                    candidates[1].display()
                ),
            )
        })
}

/// The first big-endian u32 of the (possibly gzipped) file, reading only the start; used by
/// format detection. `None` for anything but a readable regular file of at least 4 bytes.
pub fn peek_magic(path: &Path) -> Option<u32> {
    check_regular(path).ok()?;
    let mut r = BufReader::new(File::open(path).ok()?);
    let mut head = [0u8; 4];
    if is_gzip(&mut r, path).ok()? {
        MultiGzDecoder::new(r).read_exact(&mut head).ok()?;
    } else {
        r.read_exact(&mut head).ok()?;
    }
    Some(u32::from_be_bytes(head))
}

fn is_gzip(r: &mut impl BufRead, path: &Path) -> Result<bool, DataError> {
    // fill_buf may return fewer than 2 bytes only at the end of the stream or for tiny
    // reads; a 1-byte file is not gzip either way.
    let buf = r.fill_buf().map_err(|e| DataError::io(path, e))?;
    Ok(buf.len() >= 2 && buf[..2] == GZIP_MAGIC)
}

fn stream_error(path: &Path, gz: bool, e: std::io::Error) -> DataError {
    if gz {
        DataError::invalid(path, format!("cannot decompress gzip data: {e}"))
    } else {
        DataError::io(path, e)
    }
}

/// An IDX stream, decompressed incrementally: the header is read and checked first, then
/// exactly the payload it announces (plus one byte to detect trailing data), so a stream
/// that inflates to more than the header says is stopped there, and memory grows only with
/// the data actually present.
struct IdxStream<'p> {
    reader: Box<dyn Read + 'p>,
    path: &'p Path,
    gz: bool,
    /// Size of the raw (uncompressed) input, if known: truncation is then found before reading.
    raw_size: Option<u64>,
    /// For gzip: how many more bytes may be inflated ([`inflate_cap`] of the input size).
    budget: Option<u64>,
    cap: u64,
}

impl<'p> IdxStream<'p> {
    fn new<R: BufRead + 'p>(
        mut r: R,
        raw_size: Option<u64>,
        path: &'p Path,
    ) -> Result<Self, DataError> {
        let gz = is_gzip(&mut r, path)?;
        let reader: Box<dyn Read + 'p> = if gz {
            Box::new(MultiGzDecoder::new(r))
        } else {
            Box::new(r)
        };
        // An input of unknown size (a pipe) gets the cap of an empty one.
        let cap = inflate_cap(raw_size.unwrap_or(0));
        Ok(IdxStream {
            reader,
            path,
            gz,
            raw_size: if gz { None } else { raw_size },
            budget: gz.then_some(cap),
            cap,
        })
    }

    /// Reads up to `n` bytes; fewer only at the end of the stream. A gzip stream that would
    /// inflate past its budget is refused as soon as it does.
    fn read_up_to(&mut self, n: u64) -> Result<Vec<u8>, DataError> {
        let limit = match self.budget {
            Some(b) => n.min(b.saturating_add(1)),
            None => n,
        };
        // Grow with the data, never pre-allocating what a header merely claims.
        let mut out = Vec::with_capacity(limit.min(1 << 20) as usize);
        (&mut self.reader)
            .take(limit)
            .read_to_end(&mut out)
            .map_err(|e| stream_error(self.path, self.gz, e))?;
        if let Some(b) = self.budget.as_mut() {
            if out.len() as u64 > *b {
                return Err(bomb_error(self.path, "the gzip data", self.cap));
            }
            *b -= out.len() as u64;
        }
        Ok(out)
    }

    /// Reads the magic and `n` big-endian u32 header fields.
    fn header(&mut self, magic: u32, what: &str, n: usize) -> Result<Vec<usize>, DataError> {
        let head = self.read_up_to(4)?;
        if head.len() < 4 {
            return Err(DataError::truncated(self.path, 4 - head.len()));
        }
        let found = u32::from_be_bytes(head[..4].try_into().expect("4 bytes"));
        if found != magic {
            return Err(DataError::invalid(
                self.path,
                format!("bad IDX magic 0x{found:08x} (expected 0x{magic:08x} for {what})"),
            ));
        }
        let dims = self.read_up_to(4 * n as u64)?;
        if dims.len() < 4 * n {
            return Err(DataError::truncated(self.path, 4 * n - dims.len()));
        }
        Ok(dims
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")) as usize)
            .collect())
    }

    /// Reads exactly `len` payload bytes after a header of `header_len` bytes, rejecting
    /// missing and trailing data.
    fn payload(&mut self, header_len: u64, len: u64) -> Result<Vec<u8>, DataError> {
        if let Some(size) = self.raw_size {
            let end = header_len.saturating_add(len);
            if size < end {
                return Err(DataError::Truncated {
                    path: self.path.display().to_string(),
                    missing: end - size,
                });
            }
            if size > end {
                return Err(DataError::invalid(
                    self.path,
                    format!(
                        "{} unexpected bytes after the data announced by the header",
                        size - end
                    ),
                ));
            }
        }
        let data = self.read_up_to(len.saturating_add(1))?;
        if (data.len() as u64) < len {
            return Err(DataError::Truncated {
                path: self.path.display().to_string(),
                missing: len - data.len() as u64,
            });
        }
        if data.len() as u64 > len {
            return Err(DataError::invalid(
                self.path,
                "more data than the header announces (unexpected bytes after the data)",
            ));
        }
        Ok(data)
    }
}

/// Reads an images stream (raw or gzipped): returns (count, rows, cols, pixels).
/// `raw_size` is the stream's size when known (a file's), for early truncation errors.
pub fn read_images<R: BufRead>(
    r: R,
    raw_size: Option<u64>,
    path: &Path,
) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let mut s = IdxStream::new(r, raw_size, path)?;
    let h = s.header(IMAGES_MAGIC, "images", 3)?;
    let (count, rows, cols) = (h[0], h[1], h[2]);
    if count == 0 {
        return Err(DataError::invalid(path, "the header announces 0 images"));
    }
    if rows == 0 || cols == 0 || rows > MAX_SIDE || cols > MAX_SIDE {
        return Err(DataError::invalid(
            path,
            format!(
                "image size {rows}x{cols} in the header (rows and columns must be in 1..={MAX_SIDE})"
            ),
        ));
    }
    let len = (count as u64) * (rows as u64) * (cols as u64); // < 2^32 · 2^26: no overflow
    let pixels = s.payload(16, len)?;
    Ok((count, rows, cols, pixels))
}

/// Reads a labels stream (raw or gzipped).
pub fn read_labels<R: BufRead>(
    r: R,
    raw_size: Option<u64>,
    path: &Path,
) -> Result<Vec<u32>, DataError> {
    let mut s = IdxStream::new(r, raw_size, path)?;
    let count = s.header(LABELS_MAGIC, "labels", 1)?[0];
    Ok(s.payload(8, count as u64)?
        .iter()
        .map(|&l| u32::from(l))
        .collect())
}

/// Parses an images file held in memory: returns (count, rows, cols, pixels).
pub fn parse_images(
    bytes: &[u8],
    path: &Path,
) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    read_images(bytes, Some(bytes.len() as u64), path)
}

/// Parses a labels file held in memory.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u32>, DataError> {
    read_labels(bytes, Some(bytes.len() as u64), path)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;
    use crate::data::testutil::TempDir;

    pub fn images_bytes(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [IMAGES_MAGIC, count, rows, cols] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(pixels);
        b
    }

    pub fn labels_bytes(labels: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [LABELS_MAGIC, labels.len() as u32] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(labels);
        b
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Three 2x3 images with pixel = 10*image + position, labels 7, 0, 11.
    fn sample() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let pixels: Vec<u8> = (0..3)
            .flat_map(|i| (0..6).map(move |p| 10 * i + p))
            .collect();
        let labels = vec![7, 0, 9];
        (
            images_bytes(3, 2, 3, &pixels),
            labels_bytes(&labels),
            pixels,
        )
    }

    fn check(d: &Dataset, pixels: &[u8]) {
        assert_eq!((d.len(), d.channels, d.height, d.width), (3, 1, 2, 3));
        assert_eq!(d.images, pixels);
        assert_eq!(d.labels, vec![7, 0, 9]);
        assert_eq!(d.num_classes, 10);
        assert_eq!(d.image(1), &[10, 11, 12, 13, 14, 15]);
    }

    #[test]
    fn raw_round_trip() {
        let dir = TempDir::new("idx-raw");
        let (img, lab, pixels) = sample();
        std::fs::write(dir.join("train-images-idx3-ubyte"), img).unwrap();
        std::fs::write(dir.join("train-labels-idx1-ubyte"), lab).unwrap();
        let p = dir.join("train-images-idx3-ubyte");
        check(
            &Dataset::open(&format!("idx:{}", p.display())).unwrap(),
            &pixels,
        );
        // Auto-detected, as a file and as a directory.
        check(&Dataset::open(p.to_str().unwrap()).unwrap(), &pixels);
        check(
            &Dataset::open(dir.path().to_str().unwrap()).unwrap(),
            &pixels,
        );
    }

    #[test]
    fn gzip_round_trip_and_mixed_suffixes() {
        let dir = TempDir::new("idx-gz");
        let (img, lab, pixels) = sample();
        std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), gz(&img)).unwrap();
        // Labels stored raw although the images are gzipped: found without `.gz`.
        std::fs::write(dir.join("t10k-labels-idx1-ubyte"), lab).unwrap();
        let p = dir.join("t10k-images-idx3-ubyte.gz");
        assert_eq!(peek_magic(&p), Some(IMAGES_MAGIC));
        check(&Dataset::open(p.to_str().unwrap()).unwrap(), &pixels);
        // Gzip is detected by magic, not by name.
        std::fs::write(dir.join("x-images-idx3-ubyte"), gz(&img)).unwrap();
        std::fs::write(
            dir.join("x-labels-idx1-ubyte.gz"),
            gz(&labels_bytes(&[7, 0, 9])),
        )
        .unwrap();
        check(&load(&dir.join("x-images-idx3-ubyte")).unwrap(), &pixels);
    }

    #[test]
    fn wrong_magic() {
        let dir = TempDir::new("idx-magic");
        let (_, lab, _) = sample();
        let p = dir.join("train-images-idx3-ubyte.gz");
        std::fs::write(&p, gz(&lab)).unwrap(); // a labels file where images are expected
        std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), gz(&lab)).unwrap();
        let msg = Dataset::open(&format!("idx:{}", p.display()))
            .unwrap_err()
            .to_string();
        assert!(
            msg.ends_with("train-images-idx3-ubyte.gz: bad IDX magic 0x00000801 (expected 0x00000803 for images)"),
            "{msg}"
        );
        // A bare labels file is detected as IDX and rejected precisely.
        let labels = dir.join("train-labels-idx1-ubyte.gz");
        let msg = Dataset::open(labels.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(msg.ends_with("train-labels-idx1-ubyte.gz: bad IDX magic 0x00000801 (expected 0x00000803 for images)"), "{msg}");
    }

    #[test]
    fn truncated_images_and_labels() {
        let dir = TempDir::new("idx-trunc");
        let (img, lab, _) = sample();
        let p = dir.join("train-images-idx3-ubyte");
        std::fs::write(&p, &img[..img.len() - 5]).unwrap();
        std::fs::write(dir.join("train-labels-idx1-ubyte"), &lab).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(
            msg.ends_with("train-images-idx3-ubyte: truncated (needs 5 more bytes)"),
            "{msg}"
        );
        std::fs::write(&p, &img[..10]).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(
            msg.ends_with("train-images-idx3-ubyte: truncated (needs 6 more bytes)"),
            "{msg}"
        );
        std::fs::write(&p, &img).unwrap();
        std::fs::write(dir.join("train-labels-idx1-ubyte"), &lab[..lab.len() - 1]).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(
            msg.ends_with("train-labels-idx1-ubyte: truncated (needs 1 more bytes)"),
            "{msg}"
        );
        // A truncated gzip stream is reported as such.
        let z = gz(&img);
        std::fs::write(&p, &z[..z.len() / 2]).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(
            msg.contains("train-images-idx3-ubyte: cannot decompress gzip data"),
            "{msg}"
        );
    }

    #[test]
    fn count_mismatch_and_missing_labels() {
        let dir = TempDir::new("idx-count");
        let (img, _, _) = sample();
        let p = dir.join("train-images-idx3-ubyte");
        std::fs::write(&p, &img).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(
            msg.contains("train-images-idx3-ubyte: labels file not found")
                && msg.contains("train-labels-idx1-ubyte.gz"),
            "{msg}"
        );
        std::fs::write(dir.join("train-labels-idx1-ubyte"), labels_bytes(&[1, 2])).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(
            msg.contains("3 images but") && msg.contains("has 2 labels"),
            "{msg}"
        );
        let other = dir.join("pixels.idx");
        std::fs::write(&other, &img).unwrap();
        let msg = load(&other).unwrap_err().to_string();
        assert!(
            msg.contains("pixels.idx: cannot locate the labels file"),
            "{msg}"
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let dir = TempDir::new("idx-trailing");
        let (mut img, lab, _) = sample();
        img.push(0);
        let p = dir.join("train-images-idx3-ubyte");
        std::fs::write(&p, &img).unwrap();
        std::fs::write(dir.join("train-labels-idx1-ubyte"), &lab).unwrap();
        let msg = load(&p).unwrap_err().to_string();
        assert!(
            msg.contains("train-images-idx3-ubyte: 1 unexpected bytes"),
            "{msg}"
        );
    }

    #[test]
    fn zero_images_rows_or_cols_are_rejected() {
        let dir = TempDir::new("idx-zero");
        let p = dir.join("train-images-idx3-ubyte");
        std::fs::write(dir.join("train-labels-idx1-ubyte"), labels_bytes(&[])).unwrap();
        std::fs::write(&p, images_bytes(0, 28, 28, &[])).unwrap();
        let msg = Dataset::open(p.to_str().unwrap()).unwrap_err().to_string();
        assert!(
            msg.ends_with("train-images-idx3-ubyte: the header announces 0 images"),
            "{msg}"
        );
        for (rows, cols) in [(0, 28), (28, 0), (9000, 1)] {
            std::fs::write(&p, images_bytes(1, rows, cols, &[])).unwrap();
            let msg = load(&p).unwrap_err().to_string();
            assert!(
                msg.ends_with(&format!(
                    "train-images-idx3-ubyte: image size {rows}x{cols} in the header \
                     (rows and columns must be in 1..=8192)"
                )),
                "{msg}"
            );
        }
    }

    #[test]
    fn multi_member_gzip_is_read_whole() {
        let dir = TempDir::new("idx-multi");
        let (img, lab, pixels) = sample();
        // Two gzip members, as `cat a.gz b.gz` or pigz/bgzip produce.
        let (a, b) = img.split_at(20);
        let p = dir.join("train-images-idx3-ubyte.gz");
        std::fs::write(&p, [gz(a), gz(b)].concat()).unwrap();
        std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), gz(&lab)).unwrap();
        check(&load(&p).unwrap(), &pixels);
    }

    #[test]
    fn gzip_inflating_past_the_header_stops_at_the_header_size() {
        // Header: 2 images of 2x2; the stream then inflates to 64 MiB of zeros. Only the
        // announced 8 bytes (+1) are ever decompressed into memory.
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(&images_bytes(2, 2, 2, &[0; 8])).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            e.write_all(&zeros).unwrap();
        }
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 100_000);
        let err = parse_images(&bomb, Path::new("bomb-images-idx3-ubyte.gz")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bomb-images-idx3-ubyte.gz: more data than the header announces \
             (unexpected bytes after the data)"
        );
        // A header announcing far more than the stream holds is truncated, without
        // allocating the announced 60000 x 8192 x 8192 bytes.
        let liar = gz(&images_bytes(60_000, 8192, 8192, &[1; 100]));
        let err = parse_images(&liar, Path::new("liar.gz")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "liar.gz: truncated (needs 4026531839900 more bytes)"
        );
    }

    #[test]
    fn labels_at_or_above_the_class_count_are_an_error() {
        let dir = TempDir::new("idx-labels");
        let (img, _, _) = sample();
        let p = dir.join("train-images-idx3-ubyte");
        std::fs::write(&p, &img).unwrap();
        std::fs::write(
            dir.join("train-labels-idx1-ubyte"),
            labels_bytes(&[1, 255, 3]),
        )
        .unwrap();
        let msg = Dataset::open(p.to_str().unwrap()).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "{}: label 255 of sample 1 is not below the class count 10 \
                 (set the class count with --num-classes)",
                p.display()
            )
        );
        // An explicit class count that covers the labels is accepted, a smaller one is not.
        let d = Dataset::load(p.to_str().unwrap()).unwrap();
        assert_eq!(d.clone().with_classes(256).unwrap().num_classes, 256);
        assert!(d.with_classes(200).is_err());
    }

    /// The subsets shipped in `assets/` for the default run.
    #[test]
    fn shipped_assets() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/assets");
        for (file, n) in [
            ("mnist/train-images-idx3-ubyte.gz", 2000),
            ("mnist/t10k-images-idx3-ubyte.gz", 500),
            ("fashion-mnist/t10k-images-idx3-ubyte.gz", 500),
        ] {
            let d = Dataset::open(&format!("{root}/{file}")).unwrap();
            assert_eq!(
                (d.len(), d.channels, d.height, d.width, d.num_classes),
                (n, 1, 28, 28, 10)
            );
            assert!(d.labels.iter().all(|&l| l < 10));
            // Every class appears in the subsets.
            for c in 0..10 {
                assert!(d.labels.contains(&c), "{file}: class {c} missing");
            }
        }
        // MNIST's first training label is famously a 5.
        let d = Dataset::open(&format!("{root}/mnist/train-images-idx3-ubyte.gz")).unwrap();
        assert_eq!(&d.labels[..4], &[5, 0, 4, 1]);
    }
}
