//! A directory of PNG/JPEG images, ImageFolder style.
//!
//! If the directory has subdirectories containing images, each such subdirectory (sorted by
//! name) is a class; otherwise every image directly in it has label 0 (one class), which is
//! how out-of-distribution sets are usually given. Images are decoded with `image`, converted
//! to RGB (or kept grayscale when every image is grayscale) and resized to the size of the
//! first image, so mixed-size folders still make one tensor shape.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use super::{DataError, Dataset};

/// Loads every image of `dir` (see the module doc for labelling).
pub fn load(dir: &Path) -> Result<Dataset, DataError> {
    let classes = class_dirs(dir)?;
    let files: Vec<(PathBuf, u32)> = if classes.is_empty() {
        image_files(dir)?.into_iter().map(|p| (p, 0)).collect()
    } else {
        let mut files = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            files.extend(image_files(class)?.into_iter().map(|p| (p, label as u32)));
        }
        files
    };
    if files.is_empty() {
        return Err(DataError::NoImages {
            path: dir.display().to_string(),
        });
    }
    from_files(&dir.display().to_string(), &files, classes.len().max(1))
}

/// Decode the given image files (with their labels) into one dataset named `name`; images
/// are resized to the first one's size.
pub fn from_files(
    name: &str,
    files: &[(PathBuf, u32)],
    num_classes: usize,
) -> Result<Dataset, DataError> {
    if files.is_empty() {
        return Err(DataError::NoImages {
            path: name.to_string(),
        });
    }
    let mut size = None;
    let mut all_gray = true;
    let mut rgb = Vec::new();
    let mut labels = Vec::with_capacity(files.len());
    for (path, label) in files {
        let img = decode(path)?;
        all_gray &= !img.color().has_color();
        let (w, h) = *size.get_or_insert((img.width(), img.height()));
        let img = if (img.width(), img.height()) == (w, h) {
            img
        } else {
            img.resize_exact(w, h, FilterType::Triangle)
        };
        // HWC interleaved -> CHW planar.
        let pixels = img.to_rgb8();
        for ch in 0..3 {
            rgb.extend(pixels.as_raw().iter().skip(ch).step_by(3));
        }
        labels.push(*label);
    }
    let (w, h) = size.expect("at least one image");
    let (w, h) = (w as usize, h as usize);
    let channels = if all_gray { 1 } else { 3 };
    let images = if all_gray {
        // Gray images were replicated into R, G and B: keep one plane.
        rgb.chunks_exact(3 * h * w)
            .flat_map(|img| &img[..h * w])
            .copied()
            .collect()
    } else {
        rgb
    };
    let d = Dataset {
        name: name.to_string(),
        images,
        labels,
        channels,
        height: h,
        width: w,
        num_classes,
    };
    d.validate()?;
    Ok(d)
}

/// True if `dir` holds images directly or in a subdirectory (used for format detection).
pub fn has_images(dir: &Path) -> bool {
    image_files(dir).is_ok_and(|f| !f.is_empty()) || class_dirs(dir).is_ok_and(|c| !c.is_empty())
}

/// The most memory one image may take while decoded, and the largest side accepted: a small
/// file whose header claims a huge image is refused before any allocation.
pub const MAX_DECODE_BYTES: u64 = 128 << 20;

fn limits() -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(super::MAX_SIDE as u32);
    l.max_image_height = Some(super::MAX_SIDE as u32);
    l.max_alloc = Some(MAX_DECODE_BYTES);
    l
}

fn decode(path: &Path) -> Result<image::DynamicImage, DataError> {
    decode_bytes(&super::read_file(path)?, path)
}

/// Decodes one PNG or JPEG image held in memory (format guessed from the content, not the
/// name), within [`MAX_DECODE_BYTES`] and `MAX_SIDE`; `path` only names it in messages.
pub fn decode_bytes(bytes: &[u8], path: &Path) -> Result<image::DynamicImage, DataError> {
    let image_err = |err| DataError::Image {
        path: path.display().to_string(),
        err,
    };
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    reader.limits(limits());
    reader.decode().map_err(image_err)
}

fn is_image_name(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["png", "jpg", "jpeg"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

/// Sorted entries of `dir` that satisfy `keep`; hidden entries (".git", ".ipynb_checkpoints")
/// are skipped.
fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if !hidden && keep(&path) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Image files directly inside `dir`, sorted by name.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    sorted_entries(dir, |p| p.is_file() && is_image_name(p))
}

/// Subdirectories of `dir` that contain images, sorted by name: the classes.
fn class_dirs(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    sorted_entries(dir, |p| {
        p.is_dir() && image_files(p).is_ok_and(|f| !f.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use image::{GrayImage, Luma, Rgb, RgbImage};

    use super::*;
    use crate::data::testutil::TempDir;

    fn rgb(w: u32, h: u32, seed: u8) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([seed, (10 * x) as u8, (10 * y) as u8]))
    }

    #[test]
    fn class_subdirectories() {
        let dir = TempDir::new("folder-classes");
        for class in ["cat", "dog"] {
            std::fs::create_dir(dir.join(class)).unwrap();
        }
        std::fs::create_dir(dir.join("empty")).unwrap();
        rgb(4, 3, 1).save(dir.join("dog/b.png")).unwrap();
        rgb(4, 3, 2).save(dir.join("dog/A.PNG")).unwrap();
        rgb(4, 3, 3).save(dir.join("cat/x.png")).unwrap();
        std::fs::write(dir.join("cat/notes.txt"), "ignored").unwrap();
        let d = Dataset::open(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(
            (d.len(), d.channels, d.height, d.width, d.num_classes),
            (3, 3, 3, 4, 2)
        );
        assert_eq!(d.labels, vec![0, 1, 1]);
        // cat/x.png first; CHW: R plane is the seed, G plane is 10*x, B plane is 10*y.
        let img = d.image(0);
        assert!(img[..12].iter().all(|&v| v == 3));
        assert_eq!(&img[12..16], &[0, 10, 20, 30]);
        assert_eq!(&img[24..28], &[0, 0, 0, 0]);
        assert_eq!(&img[28..32], &[10, 10, 10, 10]);
        // dog/A.PNG sorts before dog/b.png.
        assert_eq!(d.image(1)[0], 2);
    }

    #[test]
    fn flat_grayscale_folder_with_resize_and_jpeg() {
        let dir = TempDir::new("folder-flat");
        GrayImage::from_pixel(5, 4, Luma([200]))
            .save(dir.join("a.png"))
            .unwrap();
        GrayImage::from_pixel(10, 8, Luma([50]))
            .save(dir.join("b.jpg"))
            .unwrap();
        let d = Dataset::open(&format!("folder:{}", dir.path().display())).unwrap();
        assert_eq!(
            (d.len(), d.channels, d.height, d.width, d.num_classes),
            (2, 1, 4, 5, 1)
        );
        assert_eq!(d.labels, vec![0, 0]);
        assert!(d.image(0).iter().all(|&v| v == 200));
        assert!(
            d.image(1).iter().all(|&v| v.abs_diff(50) <= 3),
            "{:?}",
            d.image(1)
        );
        // One colour image makes the whole set RGB.
        rgb(2, 2, 9).save(dir.join("c.png")).unwrap();
        let d = load(dir.path()).unwrap();
        assert_eq!(d.channels, 3);
        assert!(d.image(0).iter().all(|&v| v == 200));
    }

    #[test]
    fn empty_folder() {
        let dir = TempDir::new("folder-empty");
        std::fs::write(dir.join("readme.txt"), "no images").unwrap();
        let msg = Dataset::open(&format!("folder:{}", dir.path().display()))
            .unwrap_err()
            .to_string();
        assert_eq!(msg, format!("{}: no images found", dir.path().display()));
    }

    #[test]
    fn unreadable_image() {
        let dir = TempDir::new("folder-bad");
        rgb(2, 2, 1).save(dir.join("a.png")).unwrap();
        std::fs::write(dir.join("b.jpg"), b"definitely not a jpeg").unwrap();
        let msg = load(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("b.jpg: cannot decode image: "), "{msg}");
    }
}
