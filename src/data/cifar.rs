//! CIFAR-10 and CIFAR-100 "binary version" files.
//!
//! CIFAR-10 records are 3073 bytes: label, then 1024 R, 1024 G, 1024 B (already CHW, 32x32).
//! CIFAR-100 records are 3074 bytes: coarse label, fine label, then the same 3072 pixels; we
//! use the fine label (100 classes).

use std::path::{Path, PathBuf};

use super::{DataError, Dataset, read_file};

const PIXELS: usize = 3 * 32 * 32;

/// Which of the two CIFAR record layouts a file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// 3073-byte records: label, pixels; 10 classes.
    Cifar10,
    /// 3074-byte records: coarse label, fine label, pixels; 100 (fine) classes.
    Cifar100,
}

impl Variant {
    pub(crate) fn record_size(self) -> usize {
        PIXELS + self.label_bytes()
    }

    fn label_bytes(self) -> usize {
        match self {
            Variant::Cifar10 => 1,
            Variant::Cifar100 => 2,
        }
    }

    pub(crate) fn num_classes(self) -> usize {
        match self {
            Variant::Cifar10 => 10,
            Variant::Cifar100 => 100,
        }
    }

    fn display_name(self) -> &'static str {
        match self {
            Variant::Cifar10 => "CIFAR-10",
            Variant::Cifar100 => "CIFAR-100",
        }
    }
}

/// Loads a batch file, or a directory (see [`files_for`]).
pub fn load(path: &Path, variant: Variant) -> Result<Dataset, DataError> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for file in files_for(path, variant)? {
        read_records(&file, variant, &mut images, &mut labels)?;
    }
    Ok(Dataset {
        name: path.display().to_string(),
        images,
        labels,
        channels: 3,
        height: 32,
        width: 32,
        num_classes: variant.num_classes(),
    })
}

/// The files a path stands for. A file is itself. A CIFAR-10 directory means all its
/// `data_batch_*.bin` (in numeric order), or `test_batch.bin` if there are none; a CIFAR-100
/// directory means `train.bin`, or `test.bin` if there is no `train.bin`.
pub fn files_for(path: &Path, variant: Variant) -> Result<Vec<PathBuf>, DataError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let (batches, fallback) = match variant {
        Variant::Cifar10 => (data_batches(path)?, "test_batch.bin"),
        Variant::Cifar100 => {
            let train = path.join("train.bin");
            (
                if train.is_file() { vec![train] } else { vec![] },
                "test.bin",
            )
        }
    };
    if !batches.is_empty() {
        return Ok(batches);
    }
    let fallback = path.join(fallback);
    if fallback.is_file() {
        return Ok(vec![fallback]);
    }
    let expected = match variant {
        Variant::Cifar10 => "data_batch_*.bin or test_batch.bin",
        Variant::Cifar100 => "train.bin or test.bin",
    };
    Err(DataError::invalid(
        path,
        format!("no {expected} in this {} directory", variant.display_name()),
    ))
}

/// `data_batch_N.bin` files in `dir`, sorted by N so that 10 comes after 9.
fn data_batches(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix("data_batch_"))
            .and_then(|n| n.strip_suffix(".bin"))
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        found.push((n, entry.path()));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Parses one batch file held in memory; `path` only names it in messages.
pub fn parse(bytes: &[u8], path: &Path, variant: Variant) -> Result<Dataset, DataError> {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    parse_records(bytes, path, variant, &mut images, &mut labels)?;
    Ok(Dataset {
        name: path.display().to_string(),
        images,
        labels,
        channels: 3,
        height: 32,
        width: 32,
        num_classes: variant.num_classes(),
    })
}

/// Appends the records of one file.
fn read_records(
    path: &Path,
    variant: Variant,
    images: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) -> Result<(), DataError> {
    let bytes = read_file(path)?;
    parse_records(&bytes, path, variant, images, labels)
}

fn parse_records(
    bytes: &[u8],
    path: &Path,
    variant: Variant,
    images: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) -> Result<(), DataError> {
    let rec = variant.record_size();
    if bytes.is_empty() {
        return Err(DataError::invalid(path, "empty file"));
    }
    if !bytes.len().is_multiple_of(rec) {
        return Err(DataError::invalid(
            path,
            format!(
                "size {} is not a multiple of the {} record size {rec}",
                bytes.len(),
                variant.display_name()
            ),
        ));
    }
    images.reserve(bytes.len() / rec * PIXELS);
    for (i, record) in bytes.chunks_exact(rec).enumerate() {
        let (label_bytes, pixels) = record.split_at(variant.label_bytes());
        let label = *label_bytes.last().expect("at least one label byte");
        if usize::from(label) >= variant.num_classes() {
            return Err(DataError::invalid(
                path,
                format!(
                    "record {i}: label {label} out of range ({} has {} classes)",
                    variant.display_name(),
                    variant.num_classes()
                ),
            ));
        }
        labels.push(u32::from(label));
        images.extend_from_slice(pixels);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;

    /// A record whose pixels encode (record seed, channel, position) so misplacement shows.
    fn record(label_bytes: &[u8], seed: u8) -> Vec<u8> {
        let mut r = label_bytes.to_vec();
        r.extend((0..PIXELS).map(|p| seed.wrapping_mul(31).wrapping_add((p % 251) as u8)));
        r
    }

    #[test]
    fn cifar10_file_round_trip() {
        let dir = TempDir::new("cifar10-file");
        let p = dir.join("data_batch_1.bin");
        let recs = [record(&[3], 1), record(&[9], 2)];
        std::fs::write(&p, recs.concat()).unwrap();
        let d = Dataset::open(&format!("cifar10:{}", p.display())).unwrap();
        assert_eq!(
            (d.len(), d.channels, d.height, d.width, d.num_classes),
            (2, 3, 32, 32, 10)
        );
        assert_eq!(d.labels, vec![3, 9]);
        assert_eq!(d.image(0), &recs[0][1..]);
        assert_eq!(d.image(1), &recs[1][1..]);
        // Auto-detected from the size.
        assert_eq!(Dataset::open(p.to_str().unwrap()).unwrap(), d);
    }

    #[test]
    fn cifar10_directory_concatenates_batches_in_numeric_order() {
        let dir = TempDir::new("cifar10-dir");
        for n in [2, 10, 1] {
            std::fs::write(
                dir.join(&format!("data_batch_{n}.bin")),
                record(&[n as u8 % 10], n as u8),
            )
            .unwrap();
        }
        std::fs::write(dir.join("test_batch.bin"), record(&[5], 0)).unwrap();
        let d = Dataset::open(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(d.labels, vec![1, 2, 0]);
        assert_eq!(d.image(2), &record(&[0], 10)[1..]);
        // Without data batches, the directory means the test batch.
        let test_only = TempDir::new("cifar10-test");
        std::fs::write(test_only.join("test_batch.bin"), record(&[5], 0)).unwrap();
        assert_eq!(
            Dataset::open(test_only.path().to_str().unwrap())
                .unwrap()
                .labels,
            vec![5]
        );
    }

    #[test]
    fn cifar100_uses_fine_label() {
        let dir = TempDir::new("cifar100");
        let recs = [record(&[4, 77], 1), record(&[19, 99], 2)];
        std::fs::write(dir.join("train.bin"), recs.concat()).unwrap();
        let d = Dataset::open(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(d.num_classes, 100);
        assert_eq!(d.labels, vec![77, 99]);
        assert_eq!(d.image(1), &recs[1][2..]);
        let f = Dataset::open(&format!("cifar100:{}", dir.join("train.bin").display())).unwrap();
        assert_eq!(f.labels, d.labels);
    }

    #[test]
    fn wrong_record_size() {
        let dir = TempDir::new("cifar-size");
        let p = dir.join("data_batch_1.bin");
        let mut bytes = [record(&[1], 0), record(&[2], 0)].concat();
        bytes.extend_from_slice(&[0; 7]);
        std::fs::write(&p, &bytes).unwrap();
        let msg = Dataset::open(&format!("cifar10:{}", p.display()))
            .unwrap_err()
            .to_string();
        assert!(
            msg.ends_with(
                "data_batch_1.bin: size 6153 is not a multiple of the CIFAR-10 record size 3073"
            ),
            "{msg}"
        );
        let msg = Dataset::open(&format!("cifar100:{}", p.display()))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(
                "data_batch_1.bin: size 6153 is not a multiple of the CIFAR-100 record size 3074"
            ),
            "{msg}"
        );
    }

    #[test]
    fn bad_label_and_empty_dir() {
        let dir = TempDir::new("cifar-label");
        let p = dir.join("test_batch.bin");
        std::fs::write(&p, [record(&[1], 0), record(&[10], 0)].concat()).unwrap();
        let msg = load(&p, Variant::Cifar10).unwrap_err().to_string();
        assert!(
            msg.contains("test_batch.bin: record 1: label 10 out of range"),
            "{msg}"
        );
        let empty = TempDir::new("cifar-empty");
        let msg = load(empty.path(), Variant::Cifar100)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no train.bin or test.bin"), "{msg}");
        let z = empty.join("data_batch_1.bin");
        std::fs::write(&z, b"").unwrap();
        let msg = load(&z, Variant::Cifar10).unwrap_err().to_string();
        assert!(msg.ends_with("data_batch_1.bin: empty file"), "{msg}");
    }
}
