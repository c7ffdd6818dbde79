//! Training-time augmentation (random crop with zero padding, random horizontal flip) and
//! per-channel normalization, fused into one pass from u8 CHW to f32 CHW.
//!
//! The random choices are drawn first into a [`Transform`], so the pixel code is a pure
//! function that tests can pin down exactly.

use rand::{Rng, RngExt};

use super::{DataError, Dataset};

/// Augmentation settings. `Augment::default()` does nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Augment {
    /// Pad each side by this many zero pixels, then take a random window of the original size.
    pub crop_padding: usize,
    /// Flip horizontally with probability 0.5.
    pub hflip: bool,
}

/// The random choices for one image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transform {
    /// Top edge of the crop window in the padded image, in `0..=2 * padding`.
    pub crop_y: usize,
    /// Left edge of the crop window, in `0..=2 * padding`.
    pub crop_x: usize,
    /// The padding the offsets refer to.
    pub padding: usize,
    /// Mirror the image horizontally.
    pub flip: bool,
}

impl Augment {
    /// Standard CIFAR/SVHN training augmentation: 4-pixel padded crop and horizontal flip.
    pub fn cifar() -> Augment {
        Augment {
            crop_padding: 4,
            hflip: true,
        }
    }

    /// Draws the random choices for one image.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> Transform {
        let p = self.crop_padding;
        Transform {
            crop_y: if p > 0 {
                rng.random_range(0..=2 * p)
            } else {
                0
            },
            crop_x: if p > 0 {
                rng.random_range(0..=2 * p)
            } else {
                0
            },
            padding: p,
            flip: self.hflip && rng.random_bool(0.5),
        }
    }

    /// Augments and normalizes one u8 CHW image (`channels` x `height` x `width`) into `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn apply<R: Rng + ?Sized>(
        &self,
        image: &[u8],
        channels: usize,
        height: usize,
        width: usize,
        norm: &Normalization,
        rng: &mut R,
        out: &mut [f32],
    ) -> Result<(), DataError> {
        let t = self.draw(rng);
        transform_into(image, channels, height, width, t, norm, out)
    }
}

/// Applies `t` and `norm` to one u8 CHW image, writing f32 CHW of the same shape into `out`.
/// Pixels that come from the padding are 0 before normalization (as in torchvision).
/// Errors if `image` or `out` does not hold `channels * height * width` values or `norm` does
/// not fit `channels` ([`Normalization::check`]).
pub fn transform_into(
    image: &[u8],
    channels: usize,
    height: usize,
    width: usize,
    t: Transform,
    norm: &Normalization,
    out: &mut [f32],
) -> Result<(), DataError> {
    let len = channels
        .checked_mul(height)
        .and_then(|v| v.checked_mul(width));
    if len != Some(image.len()) || len != Some(out.len()) {
        return Err(DataError::Mismatch(format!(
            "an image of {channels}x{height}x{width} needs {} values; got {} pixels and room \
             for {} outputs",
            len.map_or("too many".to_string(), |l| l.to_string()),
            image.len(),
            out.len()
        )));
    }
    norm.check(channels)?;
    let hw = height * width;
    for ch in 0..channels {
        let src = &image[ch * hw..][..hw];
        let dst = &mut out[ch * hw..][..hw];
        let scale = 1.0 / (255.0 * norm.std[ch]);
        let shift = -norm.mean[ch] / norm.std[ch];
        for y in 0..height {
            // Source row in the unpadded image, if the window row is not in the padding.
            let sy = (y + t.crop_y)
                .checked_sub(t.padding)
                .filter(|&sy| sy < height);
            for x in 0..width {
                let wx = if t.flip { width - 1 - x } else { x };
                let sx = (wx + t.crop_x)
                    .checked_sub(t.padding)
                    .filter(|&sx| sx < width);
                let v = match (sy, sx) {
                    (Some(sy), Some(sx)) => f32::from(src[sy * width + sx]),
                    _ => 0.0,
                };
                dst[y * width + x] = v * scale + shift;
            }
        }
    }
    Ok(())
}

/// Normalizes one u8 CHW image without augmentation (evaluation).
pub fn normalize_into(
    image: &[u8],
    channels: usize,
    height: usize,
    width: usize,
    norm: &Normalization,
    out: &mut [f32],
) -> Result<(), DataError> {
    transform_into(
        image,
        channels,
        height,
        width,
        Transform::default(),
        norm,
        out,
    )
}

/// Per-channel normalization: `(x / 255 - mean[c]) / std[c]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    /// Per-channel mean, on the 0..1 scale.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation, on the 0..1 scale; each > 0.
    pub std: Vec<f32>,
}

impl Normalization {
    /// The paper's CIFAR-10 statistics.
    pub fn cifar10() -> Normalization {
        Normalization {
            mean: vec![0.491, 0.482, 0.446],
            std: vec![0.247, 0.243, 0.261],
        }
    }

    /// The paper's CIFAR-100 statistics.
    pub fn cifar100() -> Normalization {
        Normalization {
            mean: vec![0.507, 0.486, 0.440],
            std: vec![0.267, 0.256, 0.276],
        }
    }

    /// The paper's SVHN statistics.
    pub fn svhn() -> Normalization {
        Normalization {
            mean: vec![0.437, 0.443, 0.472],
            std: vec![0.198, 0.201, 0.197],
        }
    }

    /// Checks that there is one mean and one std per channel, every mean finite and every
    /// std finite and > 0 (a std of 0 would turn every input into NaN or infinity).
    pub fn check(&self, channels: usize) -> Result<(), DataError> {
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(DataError::Mismatch(format!(
                "normalization has {} means and {} stds for {channels} channels",
                self.mean.len(),
                self.std.len()
            )));
        }
        if let Some((c, m)) = self.mean.iter().enumerate().find(|(_, m)| !m.is_finite()) {
            return Err(DataError::Mismatch(format!(
                "normalization mean of channel {c} is {m}"
            )));
        }
        if let Some((c, s)) = self
            .std
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_finite() && **s > 0.0))
        {
            return Err(DataError::Mismatch(format!(
                "normalization std of channel {c} is {s} (must be finite and > 0)"
            )));
        }
        Ok(())
    }

    /// Maps pixels to `x / 255` only.
    pub fn identity(channels: usize) -> Normalization {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Mean and (population) standard deviation of each channel over the whole dataset, for
    /// sets without published statistics (MNIST-like). A constant channel gets std 1.
    pub fn from_dataset(data: &Dataset) -> Result<Normalization, DataError> {
        data.check_shape()?;
        let hw = data.height * data.width;
        let mut sum = vec![0u64; data.channels];
        let mut sum_sq = vec![0u64; data.channels];
        for image in data.images.chunks_exact(data.image_len().max(1)) {
            for (ch, plane) in image.chunks_exact(hw).enumerate() {
                for &v in plane {
                    sum[ch] += u64::from(v);
                    sum_sq[ch] += u64::from(v) * u64::from(v);
                }
            }
        }
        let n = (data.len() * hw).max(1) as f64;
        let (mut mean, mut std) = (Vec::new(), Vec::new());
        for ch in 0..data.channels {
            let m = sum[ch] as f64 / n / 255.0;
            let var = (sum_sq[ch] as f64 / n / (255.0 * 255.0) - m * m).max(0.0);
            let s = var.sqrt();
            mean.push(m as f32);
            std.push(if s > 1e-6 { s as f32 } else { 1.0 });
        }
        Ok(Normalization { mean, std })
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::data::testutil::toy;

    /// A 1 x 3 x 4 image with pixel value 1 + index (so 0 means padding).
    fn img() -> Vec<u8> {
        (1..=12).collect()
    }

    fn run(t: Transform) -> Vec<f32> {
        let mut out = vec![f32::NAN; 12];
        transform_into(&img(), 1, 3, 4, t, &Normalization::identity(1), &mut out).unwrap();
        out.iter().map(|v| (v * 255.0).round()).collect()
    }

    #[test]
    fn identity_transform_scales() {
        assert_eq!(
            run(Transform::default()),
            (1..=12).map(|v| v as f32).collect::<Vec<_>>()
        );
    }

    #[test]
    fn flip_reverses_rows() {
        let t = Transform {
            flip: true,
            ..Default::default()
        };
        assert_eq!(
            run(t),
            vec![4., 3., 2., 1., 8., 7., 6., 5., 12., 11., 10., 9.]
        );
    }

    #[test]
    fn crop_pads_with_zeros() {
        // Window at (0, 0) of the image padded by 2: shifted down-right by 2.
        let t = Transform {
            crop_y: 0,
            crop_x: 0,
            padding: 2,
            flip: false,
        };
        assert_eq!(run(t), vec![0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 2.]);
        // Window at (3, 4) of the image padded by 2: shifted up-left by (1, 2).
        let t = Transform {
            crop_y: 3,
            crop_x: 4,
            padding: 2,
            flip: false,
        };
        assert_eq!(
            run(t),
            vec![7., 8., 0., 0., 11., 12., 0., 0., 0., 0., 0., 0.]
        );
        // Centred window is the identity.
        let t = Transform {
            crop_y: 2,
            crop_x: 2,
            padding: 2,
            flip: false,
        };
        assert_eq!(run(t), run(Transform::default()));
        // Crop then flip.
        let t = Transform {
            crop_y: 2,
            crop_x: 3,
            padding: 2,
            flip: true,
        };
        assert_eq!(
            run(t),
            vec![0., 4., 3., 2., 0., 8., 7., 6., 0., 12., 11., 10.]
        );
    }

    #[test]
    fn draw_covers_the_range_and_flips_half_the_time() {
        let aug = Augment::cifar();
        let mut rng = StdRng::seed_from_u64(1);
        let draws: Vec<Transform> = (0..2000).map(|_| aug.draw(&mut rng)).collect();
        assert!(
            draws
                .iter()
                .all(|t| t.crop_y <= 8 && t.crop_x <= 8 && t.padding == 4)
        );
        assert!(draws.iter().any(|t| t.crop_y == 0) && draws.iter().any(|t| t.crop_x == 8));
        let flips = draws.iter().filter(|t| t.flip).count();
        assert!((800..1200).contains(&flips), "{flips}");
        let none = Augment::default().draw(&mut rng);
        assert_eq!(none, Transform::default());
    }

    #[test]
    fn apply_keeps_shape_and_padding_normalizes_to_minus_mean_over_std() {
        let norm = Normalization::cifar10();
        let image = vec![255u8; 3 * 8 * 8];
        let mut out = vec![0.0; image.len()];
        let aug = Augment {
            crop_padding: 8,
            hflip: true,
        };
        let mut rng = StdRng::seed_from_u64(3);
        // With padding = size, some draw lands the window fully in the padding corner region.
        let mut saw_padding = false;
        for _ in 0..50 {
            aug.apply(&image, 3, 8, 8, &norm, &mut rng, &mut out)
                .unwrap();
            for ch in 0..3 {
                let pad = -norm.mean[ch] / norm.std[ch];
                let full = (1.0 - norm.mean[ch]) / norm.std[ch];
                for &v in &out[ch * 64..(ch + 1) * 64] {
                    assert!((v - pad).abs() < 1e-5 || (v - full).abs() < 1e-5, "{v}");
                    saw_padding |= (v - pad).abs() < 1e-5;
                }
            }
        }
        assert!(saw_padding);
    }

    #[test]
    fn from_dataset_statistics() {
        let mut d = toy(2, 3, 1, 2, 1);
        d.images = vec![0, 255, 51, 51, 9, 9, 255, 0, 51, 51, 9, 9];
        let n = Normalization::from_dataset(&d).unwrap();
        assert!((n.mean[0] - 0.5).abs() < 1e-6 && (n.std[0] - 0.5).abs() < 1e-6);
        assert!((n.mean[1] - 0.2).abs() < 1e-6);
        assert_eq!(n.std[1], 1.0);
    }

    #[test]
    fn mismatched_arguments_are_errors() {
        let norm = Normalization::identity(1);
        let mut out = vec![0.0; 12];
        let t = Transform::default();
        let msg = transform_into(&img()[..11], 1, 3, 4, t, &norm, &mut out)
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "an image of 1x3x4 needs 12 values; got 11 pixels and room for 12 outputs"
        );
        let msg = transform_into(&img(), 1, 3, 4, t, &Normalization::identity(3), &mut out)
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "normalization has 3 means and 3 stds for 1 channels");
        let empty = Normalization {
            mean: vec![],
            std: vec![],
        };
        assert_eq!(
            empty.check(1).unwrap_err().to_string(),
            "normalization has 0 means and 0 stds for 1 channels"
        );
        let zero = Normalization {
            mean: vec![0.5],
            std: vec![0.0],
        };
        assert_eq!(
            zero.check(1).unwrap_err().to_string(),
            "normalization std of channel 0 is 0 (must be finite and > 0)"
        );
        let nan = Normalization {
            mean: vec![f32::NAN],
            std: vec![1.0],
        };
        assert_eq!(
            nan.check(1).unwrap_err().to_string(),
            "normalization mean of channel 0 is NaN"
        );
        let mut d = toy(1, 1, 2, 2, 1);
        d.height = 0;
        assert!(Normalization::from_dataset(&d).is_err());
    }
}
