//! IDX files (MNIST, Fashion-MNIST, KMNIST...): a big-endian header followed by u8 data.
//!
//! Images: magic 0x00000803, count, rows, cols, then pixels. Labels: magic 0x00000801, count,
//! then one u8 per label. Files may be gzipped; gzip is detected by its magic bytes, not by
//! the file name, because mirrors are inconsistent about the `.gz` suffix.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::{DataError, Dataset, read_file};

pub const IMAGES_MAGIC: u32 = 0x0000_0803;
pub const LABELS_MAGIC: u32 = 0x0000_0801;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Loads an images file and its labels file (found by [`labels_path_for`]).
/// A directory means its `train-images-idx3-ubyte[.gz]`.
pub fn load(path: &Path) -> Result<Dataset, DataError> {
    let images_path = if path.is_dir() {
        default_images_file(path).ok_or_else(|| {
            DataError::invalid(path, "no train-images-idx3-ubyte[.gz] in this directory")
        })?
    } else {
        path.to_path_buf()
    };
    let mut bytes = read_maybe_gz(&images_path)?;
    let (count, rows, cols, _) = parse_images(&bytes, &images_path)?;
    let labels_path = labels_path_for(&images_path)?;
    // Keep the decompressed buffer as the pixel storage instead of copying it.
    bytes.drain(..16);
    let labels = parse_labels(&read_maybe_gz(&labels_path)?, &labels_path)?;
    if labels.len() != count {
        return Err(DataError::invalid(
            &images_path,
            format!(
                "{count} images but {} has {} labels",
                labels_path.display(),
                labels.len()
            ),
        ));
    }
    let max_label = labels.iter().copied().max().unwrap_or(0) as usize;
    Ok(Dataset {
        name: images_path.display().to_string(),
        images: bytes,
        labels,
        channels: 1,
        height: rows,
        width: cols,
        num_classes: (max_label + 1).max(10),
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

/// Reads a file, gunzipping it if it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = read_file(path)?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    GzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| DataError::invalid(path, format!("cannot decompress gzip data: {e}")))?;
    Ok(out)
}

/// The first big-endian u32 of the (possibly gzipped) file, reading only the start; used by
/// format detection.
pub fn peek_magic(path: &Path) -> Option<u32> {
    fn first4(path: &Path) -> std::io::Result<[u8; 4]> {
        let mut head = [0u8; 4];
        File::open(path)?.read_exact(&mut head)?;
        if head[..2] == GZIP_MAGIC {
            GzDecoder::new(File::open(path)?).read_exact(&mut head)?;
        }
        Ok(head)
    }
    first4(path).ok().map(u32::from_be_bytes)
}

/// Reads `n` big-endian u32 header fields after checking the magic and the length.
fn header(
    bytes: &[u8],
    path: &Path,
    magic: u32,
    what: &str,
    n: usize,
) -> Result<Vec<usize>, DataError> {
    if bytes.len() < 4 {
        return Err(DataError::truncated(path, 4 - bytes.len()));
    }
    let found = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
    if found != magic {
        return Err(DataError::invalid(
            path,
            format!("bad IDX magic 0x{found:08x} (expected 0x{magic:08x} for {what})"),
        ));
    }
    let header_len = 4 * (n + 1);
    if bytes.len() < header_len {
        return Err(DataError::truncated(path, header_len - bytes.len()));
    }
    Ok(bytes[4..header_len]
        .chunks(4)
        .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")) as usize)
        .collect())
}

/// Checks that the payload after the header has exactly `len` bytes and returns it.
fn payload<'a>(
    bytes: &'a [u8],
    path: &Path,
    start: usize,
    len: usize,
) -> Result<&'a [u8], DataError> {
    let end = start.saturating_add(len);
    if bytes.len() < end {
        return Err(DataError::truncated(path, end - bytes.len()));
    }
    if bytes.len() > end {
        return Err(DataError::invalid(
            path,
            format!(
                "{} unexpected bytes after the data announced by the header",
                bytes.len() - end
            ),
        ));
    }
    Ok(&bytes[start..end])
}

/// Parses an images file: returns (count, rows, cols, pixels).
pub fn parse_images<'a>(
    bytes: &'a [u8],
    path: &Path,
) -> Result<(usize, usize, usize, &'a [u8]), DataError> {
    let h = header(bytes, path, IMAGES_MAGIC, "images", 3)?;
    let (count, rows, cols) = (h[0], h[1], h[2]);
    let len = count
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or_else(|| DataError::invalid(path, format!("absurd header {count}x{rows}x{cols}")))?;
    Ok((count, rows, cols, payload(bytes, path, 16, len)?))
}

/// Parses a labels file.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u32>, DataError> {
    let count = header(bytes, path, LABELS_MAGIC, "labels", 1)?[0];
    Ok(payload(bytes, path, 8, count)?
        .iter()
        .map(|&l| u32::from(l))
        .collect())
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
        let labels = vec![7, 0, 11];
        (
            images_bytes(3, 2, 3, &pixels),
            labels_bytes(&labels),
            pixels,
        )
    }

    fn check(d: &Dataset, pixels: &[u8]) {
        assert_eq!((d.len(), d.channels, d.height, d.width), (3, 1, 2, 3));
        assert_eq!(d.images, pixels);
        assert_eq!(d.labels, vec![7, 0, 11]);
        assert_eq!(d.num_classes, 12);
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
            gz(&labels_bytes(&[7, 0, 11])),
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
