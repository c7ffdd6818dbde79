//! Dataset loading: IDX (MNIST-like), CIFAR-10/100 binary, SVHN `.mat`, and image folders.
//!
//! Every format is decoded into one in-memory [`Dataset`] of u8 CHW images so that the rest of
//! the engine (augmentation, batching, training) never cares where the data came from.
//! Each format lives in its own module; [`Dataset::open`] only parses the spec and dispatches.

pub mod augment;
pub mod cifar;
pub mod folder;
pub mod idx;
pub mod loader;
pub mod svhn;

use std::fs;
use std::io;
use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

pub use augment::{Augment, Normalization, Transform};
pub use loader::{Batch, Loader};

/// Errors from reading a dataset. Every variant that concerns a file names it first, so a
/// user looking at a one-line message knows which file to fix.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The path does not exist.
    #[error("{path}: no such file or directory")]
    NotFound {
        /// The missing path.
        path: String,
    },
    /// Opening or reading the file failed.
    #[error("{path}: {err}")]
    Io {
        /// The file.
        path: String,
        /// The underlying I/O error.
        err: io::Error,
    },
    /// The file ends before the data its header (or format) promises.
    #[error("{path}: truncated (needs {missing} more bytes)")]
    Truncated {
        /// The file.
        path: String,
        /// Bytes missing at the end.
        missing: u64,
    },
    /// The file exists and was read, but its content is not what the format requires.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// An image file of an image folder could not be decoded.
    #[error("{path}: cannot decode image: {err}")]
    Image {
        /// The image file.
        path: String,
        /// The decoder's error.
        err: image::ImageError,
    },
    /// An image folder holds no decodable images.
    #[error("{path}: no images found")]
    NoImages {
        /// The folder.
        path: String,
    },
    /// Arguments that do not fit together (an image and its shape, a normalization and the
    /// channel count, a batch size of 0...).
    #[error("{0}")]
    Mismatch(String),
    /// A `FORMAT:PATH` spec names a format that does not exist.
    #[error("unknown dataset format '{format}' (expected idx, cifar10, cifar100, svhn, folder)")]
    UnknownFormat {
        /// The format as written.
        format: String,
    },
    #[error(
        "{path}: cannot detect the dataset format; write FORMAT:PATH with FORMAT one of \
         idx, cifar10, cifar100, svhn, folder"
    )]
    /// A bare path whose format cannot be told from its file names, sizes or magic numbers.
    Undetected {
        /// The path.
        path: String,
    },
}

impl DataError {
    pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> Self {
        DataError::Invalid {
            path: path.display().to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn truncated(path: &Path, missing: usize) -> Self {
        DataError::Truncated {
            path: path.display().to_string(),
            missing: missing as u64,
        }
    }

    /// Maps "not found" to its own variant so the message reads the same on every OS.
    pub(crate) fn io(path: &Path, err: io::Error) -> Self {
        let path = path.display().to_string();
        if err.kind() == io::ErrorKind::NotFound {
            DataError::NotFound { path }
        } else {
            DataError::Io { path, err }
        }
    }
}

/// The largest image side any loader accepts (and a checkpoint may declare). Larger images
/// would need gigabytes per batch long before a model could use them.
pub const MAX_SIDE: usize = 8192;

/// The most bytes a compressed stream of `compressed` bytes may inflate to: 16 times its size
/// plus 32 MiB. Real datasets compress far less than 16:1 (MNIST about 5:1), while deflate
/// reaches 1000:1 on constant data: past this, a stream is refused as a decompression bomb,
/// so memory stays within a small multiple of the input whatever its headers claim.
pub fn inflate_cap(compressed: u64) -> u64 {
    (32 << 20) + compressed.saturating_mul(16)
}

pub(crate) fn bomb_error(path: &Path, what: &str, cap: u64) -> DataError {
    DataError::invalid(
        path,
        format!(
            "{what} inflates to more than {cap} bytes (16 times its compressed size plus \
             32 MiB): refused as a likely decompression bomb"
        ),
    )
}

/// Fails unless `path` is a regular file (after following links). Checked before opening, so
/// that a FIFO does not block and a device such as `/dev/zero` is not read forever.
pub(crate) fn check_regular(path: &Path) -> Result<fs::Metadata, DataError> {
    let meta = fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if !meta.is_file() {
        return Err(DataError::invalid(
            path,
            "not a regular file (devices, FIFOs and sockets cannot be read as data)",
        ));
    }
    Ok(meta)
}

/// Opens a regular file for reading, with the path in any error; returns it and its size.
pub(crate) fn open_regular(path: &Path) -> Result<(fs::File, u64), DataError> {
    let size = check_regular(path)?.len();
    let file = fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    Ok((file, size))
}

/// Reads a whole regular file, with the path in any error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    let (file, size) = open_regular(path)?;
    let mut out = Vec::with_capacity(size as usize);
    // The size is only a hint: read to the end, but never past what the file held at open
    // plus one byte (a file growing while read is reported, not followed forever).
    file.take(size.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| DataError::io(path, e))?;
    if out.len() as u64 > size {
        return Err(DataError::invalid(path, "the file grew while it was read"));
    }
    Ok(out)
}

/// The on-disk formats understood by [`Dataset::open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// IDX files (MNIST, Fashion-MNIST, KMNIST), optionally gzipped.
    Idx,
    /// CIFAR-10 binary version.
    Cifar10,
    /// CIFAR-100 binary version (fine labels).
    Cifar100,
    /// SVHN cropped digits ("format 2"), MATLAB `.mat` files.
    Svhn,
    /// A directory of PNG/JPEG images: one subdirectory per class, or a single class.
    Folder,
}

impl Format {
    /// The prefix used in a dataset spec (`idx:PATH`).
    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name.to_ascii_lowercase().as_str() {
            "idx" => Format::Idx,
            "cifar10" => Format::Cifar10,
            "cifar100" => Format::Cifar100,
            "svhn" => Format::Svhn,
            "folder" => Format::Folder,
            _ => return None,
        })
    }

    /// The format a dataset spec names or, for a bare path, the detected one.
    pub fn of_spec(spec: &str) -> Result<Format, DataError> {
        let (format, path) = parse_spec(spec)?;
        match format {
            Some(f) => Ok(f),
            None => Format::detect(Path::new(path)),
        }
    }

    /// The paper's fixed per-channel normalisation for this format, if it has one
    /// (CIFAR-10, CIFAR-100, SVHN); other data is normalised with its own statistics.
    pub fn paper_normalization(self) -> Option<Normalization> {
        match self {
            Format::Cifar10 => Some(Normalization::cifar10()),
            Format::Cifar100 => Some(Normalization::cifar100()),
            Format::Svhn => Some(Normalization::svhn()),
            Format::Idx | Format::Folder => None,
        }
    }

    /// Guesses the format of an existing path from names and magic numbers.
    pub fn detect(path: &Path) -> Result<Format, DataError> {
        let undetected = || DataError::Undetected {
            path: path.display().to_string(),
        };
        if path.is_dir() {
            let has = |name: &str| path.join(name).is_file();
            return if has("data_batch_1.bin") || has("test_batch.bin") {
                Ok(Format::Cifar10)
            } else if has("train.bin") || has("test.bin") {
                Ok(Format::Cifar100)
            } else if idx::default_images_file(path).is_some() {
                Ok(Format::Idx)
            } else if folder::has_images(path) {
                Ok(Format::Folder)
            } else {
                Err(undetected())
            };
        }
        // Before any open: a FIFO would block, a device would never end.
        check_regular(path)?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        if ext.as_deref() == Some("mat") {
            return Ok(Format::Svhn);
        }
        // A labels file is taken as IDX too, so the user gets a precise "bad IDX magic" error.
        if matches!(
            idx::peek_magic(path),
            Some(idx::IMAGES_MAGIC | idx::LABELS_MAGIC)
        ) {
            return Ok(Format::Idx);
        }
        if ext.as_deref() == Some("bin") {
            let size = fs::metadata(path)
                .map_err(|e| DataError::io(path, e))?
                .len();
            if size > 0 && size % cifar::Variant::Cifar10.record_size() as u64 == 0 {
                return Ok(Format::Cifar10);
            }
            if size > 0 && size % cifar::Variant::Cifar100.record_size() as u64 == 0 {
                return Ok(Format::Cifar100);
            }
        }
        Err(undetected())
    }
}

/// Checks an image shape: 1 or 3 channels, height and width in `1..=MAX_SIDE`. The message
/// says what is wrong, without a file name.
pub fn check_image_shape(channels: usize, height: usize, width: usize) -> Result<(), String> {
    if channels != 1 && channels != 3 {
        return Err(format!(
            "{channels} channels (images must have 1 (gray) or 3 (RGB))"
        ));
    }
    if height == 0 || width == 0 || height > MAX_SIDE || width > MAX_SIDE {
        return Err(format!(
            "image size {height}x{width} (height and width must be in 1..={MAX_SIDE})"
        ));
    }
    Ok(())
}

/// Splits "FORMAT:PATH" into its parts; a bare PATH (or an existing path that happens to
/// contain ':') has no format.
fn parse_spec(spec: &str) -> Result<(Option<Format>, &str), DataError> {
    if let Some((prefix, rest)) = spec.split_once(':') {
        // Single letters are left alone so Windows drive letters ("C:\...") stay paths.
        let looks_like_prefix = prefix.len() > 1
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if looks_like_prefix && !Path::new(spec).exists() {
            return match Format::from_name(prefix) {
                Some(format) => Ok((Some(format), rest)),
                None => Err(DataError::UnknownFormat {
                    format: prefix.to_string(),
                }),
            };
        }
    }
    Ok((None, spec))
}

/// A labelled image dataset held in memory.
///
/// Images are stored as u8, CHW per image, contiguous:
/// `images.len() == len * channels * height * width`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Where the data came from (usually the path it was read from), for messages and reports.
    pub name: String,
    /// Pixels, u8, CHW per image, images contiguous.
    pub images: Vec<u8>,
    /// One class index per image, each `< num_classes`.
    pub labels: Vec<u32>,
    /// Channels per image (1 grey, 3 RGB).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Number of classes.
    pub num_classes: usize,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the dataset holds no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of u8 values in one image (`channels * height * width`).
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Image `i` as CHW u8.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Parses a dataset spec "FORMAT:PATH" or a bare PATH (format auto-detected) and checks
    /// the result ([`Dataset::validate`], labels included).
    /// FORMAT is one of idx, cifar10, cifar100, svhn, folder.
    pub fn open(spec: &str) -> Result<Dataset, DataError> {
        let d = Dataset::load(spec)?;
        d.check_labels()?;
        Ok(d)
    }

    /// Like [`Dataset::open`], but the labels are not yet checked against the class count,
    /// which is the format's (IDX files do not record one: 10 is assumed). Follow with
    /// [`Dataset::with_classes`], or use it as is where labels do not matter (OOD sets).
    pub fn load(spec: &str) -> Result<Dataset, DataError> {
        let (format, path) = parse_spec(spec)?;
        let path = Path::new(path);
        let meta = fs::metadata(path).map_err(|e| DataError::io(path, e))?;
        if !meta.is_dir() {
            check_regular(path)?;
        }
        let format = match format {
            Some(format) => format,
            None => Format::detect(path)?,
        };
        let d = match format {
            Format::Idx => idx::load(path),
            Format::Cifar10 => cifar::load(path, cifar::Variant::Cifar10),
            Format::Cifar100 => cifar::load(path, cifar::Variant::Cifar100),
            Format::Svhn => svhn::load(path),
            Format::Folder => folder::load(path),
        }?;
        d.check_shape()?;
        Ok(d)
    }

    /// Sets the class count to `classes` and checks that every label is below it.
    pub fn with_classes(mut self, classes: usize) -> Result<Dataset, DataError> {
        self.num_classes = classes;
        self.check_labels()?;
        Ok(self)
    }

    fn invalid(&self, message: impl Into<String>) -> DataError {
        DataError::Invalid {
            path: self.name.clone(),
            message: message.into(),
        }
    }

    /// Checks the shape fields (channels 1 or 3, height and width in `1..=MAX_SIDE`), that
    /// `images` holds exactly one image per label, and the labels against the class count.
    /// Everything that takes a [`Dataset`] relies on this holding.
    pub fn validate(&self) -> Result<(), DataError> {
        self.check_shape()?;
        self.check_labels()
    }

    /// [`Dataset::validate`] without the labels.
    pub fn check_shape(&self) -> Result<(), DataError> {
        check_image_shape(self.channels, self.height, self.width).map_err(|m| self.invalid(m))?;
        let expected = self.len().checked_mul(self.image_len());
        if expected != Some(self.images.len()) {
            return Err(self.invalid(format!(
                "{} bytes of pixels for {} images of {}x{}x{}",
                self.images.len(),
                self.len(),
                self.channels,
                self.height,
                self.width
            )));
        }
        Ok(())
    }

    /// Checks that every label is below the class count (a label at or above it is an error,
    /// never a reason to grow the model).
    pub fn check_labels(&self) -> Result<(), DataError> {
        if self.num_classes == 0 {
            return Err(self.invalid("the class count is 0"));
        }
        if let Some((i, &l)) = self
            .labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l as usize >= self.num_classes)
        {
            return Err(self.invalid(format!(
                "label {l} of sample {i} is not below the class count {} \
                 (set the class count with --num-classes)",
                self.num_classes
            )));
        }
        Ok(())
    }

    /// Keeps the first `n` samples (for subsets and quick runs).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.images.truncate(n * self.image_len());
    }

    /// Converts to `channels` (1 <-> 3: ITU-R 601 luminance / replicate) and to
    /// `height` x `width` (bilinear, via `image`). Used to feed e.g. MNIST to a CIFAR model
    /// for out-of-distribution tests.
    ///
    /// Errors if this dataset is malformed ([`Dataset::check_shape`]), the channel conversion
    /// is not one of identity, 1 -> 3 or 3 -> 1, or the target size is not in `1..=MAX_SIDE`.
    pub fn converted(
        &self,
        channels: usize,
        height: usize,
        width: usize,
    ) -> Result<Dataset, DataError> {
        self.check_shape()?;
        if !(channels == self.channels
            || (channels, self.channels) == (1, 3)
            || (channels, self.channels) == (3, 1))
        {
            return Err(self.invalid(format!(
                "cannot convert {} channels to {channels} (only 1 <-> 3)",
                self.channels
            )));
        }
        check_image_shape(channels, height, width)
            .map_err(|m| self.invalid(format!("cannot convert to this size: {m}")))?;
        let (h0, w0) = (self.height, self.width);
        let plane0 = h0 * w0;
        let plane = height * width;
        let total = self.len().checked_mul(channels * plane);
        let mut images = Vec::new();
        if total.is_none_or(|t| images.try_reserve_exact(t).is_err()) {
            return Err(self.invalid(format!(
                "cannot allocate {} images of {channels}x{height}x{width} for the conversion",
                self.len()
            )));
        }
        let mut src_planes: Vec<Vec<u8>> = Vec::with_capacity(channels);
        for i in 0..self.len() {
            let img = self.image(i);
            src_planes.clear();
            match (self.channels, channels) {
                (3, 1) => {
                    let (r, rest) = img.split_at(plane0);
                    let (g, b) = rest.split_at(plane0);
                    let luma = (0..plane0)
                        .map(|p| {
                            let y = 0.299 * f32::from(r[p])
                                + 0.587 * f32::from(g[p])
                                + 0.114 * f32::from(b[p]);
                            y.round().clamp(0.0, 255.0) as u8
                        })
                        .collect();
                    src_planes.push(luma);
                }
                (1, 3) => src_planes.extend(std::iter::repeat_n(img.to_vec(), 3)),
                _ => src_planes.extend(img.chunks(plane0).map(<[u8]>::to_vec)),
            }
            for p in &src_planes {
                if (height, width) == (h0, w0) {
                    images.extend_from_slice(p);
                } else {
                    let buf = image::GrayImage::from_raw(w0 as u32, h0 as u32, p.clone())
                        .expect("plane has height * width bytes");
                    let resized = image::imageops::resize(
                        &buf,
                        width as u32,
                        height as u32,
                        image::imageops::FilterType::Triangle,
                    );
                    images.extend_from_slice(resized.as_raw());
                }
            }
        }
        Ok(Dataset {
            name: self.name.clone(),
            images,
            labels: self.labels.clone(),
            channels,
            height,
            width,
            num_classes: self.num_classes,
        })
    }

    /// Deterministic split: shuffles the indices with `seed`; the first `n_holdout` go to the
    /// second dataset, the rest to the first. Both keep the original sample order.
    pub fn split_holdout(self, n_holdout: usize, seed: u64) -> (Dataset, Dataset) {
        let n_holdout = n_holdout.min(self.len());
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let (held, kept) = order.split_at_mut(n_holdout);
        held.sort_unstable();
        kept.sort_unstable();
        let holdout = self.select(held, format!("{}-holdout", self.name));
        let rest = self.select(kept, self.name.clone());
        (rest, holdout)
    }

    /// Keeps only samples whose label is in `classes`, relabelled `0..classes.len()` in the
    /// given order (for open-set / out-of-distribution splits).
    pub fn filter_classes(&self, classes: &[u32]) -> Dataset {
        let new_label = |l: u32| classes.iter().position(|&c| c == l);
        let indices: Vec<usize> = (0..self.len())
            .filter(|&i| new_label(self.labels[i]).is_some())
            .collect();
        let mut out = self.select(&indices, self.name.clone());
        for l in &mut out.labels {
            *l = new_label(*l).expect("filtered above") as u32;
        }
        out.num_classes = classes.len();
        out
    }

    /// A new dataset made of the samples at `indices`, in that order.
    pub fn select(&self, indices: &[usize], name: String) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            name,
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            num_classes: self.num_classes,
        }
    }
}

/// Helpers shared by the format tests: unique temp dirs that clean up after themselves.
#[cfg(test)]
pub(crate) mod testutil {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("isomax-data-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }

        pub fn join(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A small dataset with distinct pixel values, for split/filter/convert tests.
    pub fn toy(n: usize, channels: usize, h: usize, w: usize, classes: usize) -> super::Dataset {
        let len = channels * h * w;
        super::Dataset {
            name: "toy".into(),
            images: (0..n * len).map(|v| (v % 251) as u8).collect(),
            labels: (0..n).map(|i| (i % classes) as u32).collect(),
            channels,
            height: h,
            width: w,
            num_classes: classes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{TempDir, toy};
    use super::*;

    #[test]
    fn unknown_prefix_is_reported() {
        let err = Dataset::open("foo:/nonexistent/x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown dataset format 'foo' (expected idx, cifar10, cifar100, svhn, folder)"
        );
    }

    #[test]
    fn missing_path_is_reported() {
        let err = Dataset::open("idx:/nonexistent/train-images-idx3-ubyte.gz").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/train-images-idx3-ubyte.gz: no such file or directory"
        );
        let err = Dataset::open("/nonexistent/dir").unwrap_err();
        assert!(matches!(err, DataError::NotFound { .. }));
    }

    #[test]
    fn undetectable_file_lists_prefixes() {
        let dir = TempDir::new("undetected");
        let p = dir.join("notes.txt");
        std::fs::write(&p, b"hello").unwrap();
        let msg = Dataset::open(p.to_str().unwrap()).unwrap_err().to_string();
        assert!(
            msg.contains("notes.txt") && msg.contains("cifar100"),
            "{msg}"
        );
        let empty = TempDir::new("undetected-dir");
        let msg = Dataset::open(empty.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("cannot detect"), "{msg}");
    }

    #[test]
    fn truncate_keeps_prefix() {
        let mut d = toy(10, 3, 2, 2, 4);
        let first = d.image(0).to_vec();
        d.truncate(3);
        assert_eq!(d.len(), 3);
        assert_eq!(d.images.len(), 3 * 12);
        assert_eq!(d.image(0), &first[..]);
        d.truncate(100);
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn split_holdout_is_deterministic_and_disjoint() {
        let d = toy(50, 1, 2, 2, 5);
        let (a1, b1) = d.clone().split_holdout(10, 7);
        let (a2, b2) = d.clone().split_holdout(10, 7);
        assert_eq!((a1.len(), b1.len()), (40, 10));
        assert_eq!(a1, a2);
        assert_eq!(b1, b2);
        let (_, b3) = d.clone().split_holdout(10, 8);
        assert_ne!(b1.images, b3.images);
        // Every original image lands in exactly one side.
        let mut all: Vec<Vec<u8>> = (0..a1.len()).map(|i| a1.image(i).to_vec()).collect();
        all.extend((0..b1.len()).map(|i| b1.image(i).to_vec()));
        all.sort();
        let mut orig: Vec<Vec<u8>> = (0..d.len()).map(|i| d.image(i).to_vec()).collect();
        orig.sort();
        assert_eq!(all, orig);
    }

    #[test]
    fn filter_classes_relabels_in_given_order() {
        let d = toy(12, 1, 1, 2, 4); // labels 0,1,2,3,0,1,...
        let f = d.filter_classes(&[3, 1]);
        assert_eq!(f.num_classes, 2);
        assert_eq!(f.labels, vec![1, 0, 1, 0, 1, 0]);
        assert_eq!(f.image(0), d.image(1));
        assert_eq!(f.image(1), d.image(3));
    }

    #[test]
    fn converted_channels_and_size() {
        let d = Dataset {
            name: "g".into(),
            images: vec![10, 20, 30, 40],
            labels: vec![0],
            channels: 1,
            height: 2,
            width: 2,
            num_classes: 1,
        };
        let rgb = d.converted(3, 2, 2).unwrap();
        assert_eq!(rgb.images, [10, 20, 30, 40].repeat(3));
        let back = rgb.converted(1, 2, 2).unwrap();
        assert_eq!(back.images, d.images);
        let big = d.converted(3, 4, 6).unwrap();
        assert_eq!((big.channels, big.height, big.width), (3, 4, 6));
        assert_eq!(big.images.len(), 3 * 4 * 6);
        let flat = Dataset {
            images: vec![77; 4],
            ..d.clone()
        };
        assert!(
            flat.converted(1, 5, 5)
                .unwrap()
                .images
                .iter()
                .all(|&v| v == 77)
        );
    }

    #[test]
    fn converted_rejects_bad_targets_and_malformed_sets() {
        let d = toy(2, 1, 2, 2, 2);
        let msg = d.converted(2, 2, 2).unwrap_err().to_string();
        assert_eq!(msg, "toy: cannot convert 1 channels to 2 (only 1 <-> 3)");
        let msg = d.converted(1, 0, 2).unwrap_err().to_string();
        assert_eq!(
            msg,
            "toy: cannot convert to this size: image size 0x2 (height and width must be in 1..=8192)"
        );
        let msg = d.converted(3, 30000, 30000).unwrap_err().to_string();
        assert_eq!(
            msg,
            "toy: cannot convert to this size: image size 30000x30000 (height and width must be in 1..=8192)"
        );
        let mut broken = d.clone();
        broken.images.pop();
        let msg = broken.converted(1, 2, 2).unwrap_err().to_string();
        assert_eq!(msg, "toy: 7 bytes of pixels for 2 images of 1x2x2");
        let mut two = d.clone();
        two.channels = 2;
        two.images = vec![0; 16];
        assert_eq!(
            two.validate().unwrap_err().to_string(),
            "toy: 2 channels (images must have 1 (gray) or 3 (RGB))"
        );
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_fifos_are_refused_without_reading() {
        for spec in [
            "idx:/dev/zero",
            "/dev/zero",
            "cifar10:/dev/zero",
            "svhn:/dev/null",
        ] {
            let msg = Dataset::open(spec).unwrap_err().to_string();
            let path = spec.rsplit(':').next().unwrap();
            assert_eq!(
                msg,
                format!(
                    "{path}: not a regular file (devices, FIFOs and sockets cannot be read as data)"
                ),
                "{spec}"
            );
        }
        let dir = TempDir::new("fifo");
        let fifo = dir.join("train-images-idx3-ubyte");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            // Opening a FIFO for reading would block until a writer comes: never opened.
            for spec in [
                format!("idx:{}", fifo.display()),
                fifo.display().to_string(),
            ] {
                let msg = Dataset::open(&spec).unwrap_err().to_string();
                assert!(
                    msg.ends_with(
                        "not a regular file (devices, FIFOs and sockets cannot be read as data)"
                    ),
                    "{msg}"
                );
            }
        }
    }
}
