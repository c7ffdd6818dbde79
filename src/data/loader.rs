//! Mini-batch iteration over a [`Dataset`], producing normalized f32 NCHW batches.
//!
//! Everything random is derived from `(seed, epoch)` (sample order) and
//! `(seed, epoch, batch index)` (augmentation), never from iteration state, so a run resumed
//! at epoch `e` sees exactly the batches the original run would have seen, and any batch can
//! be rebuilt on its own.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::augment::{Augment, Normalization, normalize_into};
use super::{DataError, Dataset};

/// One mini-batch: `images` is `len * C * H * W` f32 in NCHW order, `labels` has `len` entries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// Normalised pixels, `len * C * H * W` f32, NCHW.
    pub images: Vec<f32>,
    /// Class index of each image.
    pub labels: Vec<u32>,
    /// Images in the batch (the last batch of an epoch may be short unless the
    /// loader drops it).
    pub len: usize,
}

/// Mini-batch iterator settings over a borrowed dataset.
#[derive(Clone, Debug)]
pub struct Loader<'a> {
    data: &'a Dataset,
    batch_size: usize,
    shuffle: bool,
    seed: u64,
    augment: Option<Augment>,
    norm: Normalization,
    drop_last: bool,
}

/// SplitMix64 finalizer: turns structured inputs (seed, epoch, batch) into independent seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl<'a> Loader<'a> {
    /// Errors if `batch_size` is 0, the dataset is malformed ([`Dataset::check_shape`]) or
    /// `norm` does not fit its channels ([`Normalization::check`]).
    pub fn new(
        data: &'a Dataset,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
        augment: Option<Augment>,
        norm: Normalization,
        drop_last: bool,
    ) -> Result<Loader<'a>, DataError> {
        if batch_size == 0 {
            return Err(DataError::Mismatch("batch size must be positive".into()));
        }
        data.check_shape()?;
        norm.check(data.channels).map_err(|e| DataError::Invalid {
            path: data.name.clone(),
            message: e.to_string(),
        })?;
        Ok(Loader {
            data,
            batch_size,
            shuffle,
            seed,
            augment,
            norm,
            drop_last,
        })
    }

    /// The dataset batches are drawn from.
    pub fn dataset(&self) -> &'a Dataset {
        self.data
    }

    /// Images per full batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        if self.drop_last {
            self.data.len() / self.batch_size
        } else {
            self.data.len().div_ceil(self.batch_size)
        }
    }

    /// Sample order of `epoch`: a permutation depending only on (seed, epoch) when shuffling,
    /// `0..len` otherwise.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.data.len()).collect();
        if self.shuffle {
            let mut rng = StdRng::seed_from_u64(mix(self.seed ^ mix(epoch as u64)));
            order.shuffle(&mut rng);
        }
        order
    }

    /// The dataset indices of every batch of `epoch`.
    pub fn batch_indices(&self, epoch: usize) -> Vec<Vec<usize>> {
        let order = self.order(epoch);
        order
            .chunks(self.batch_size)
            .take(self.num_batches())
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// Fills `batch` with the samples at `indices`, reusing its buffers. `(epoch, batch_index)`
    /// seeds the augmentation, so the same arguments always give the same batch.
    /// Errors if an index is out of range.
    pub fn fill(
        &self,
        epoch: usize,
        batch_index: usize,
        indices: &[usize],
        batch: &mut Batch,
    ) -> Result<(), DataError> {
        if let Some(&i) = indices.iter().find(|&&i| i >= self.data.len()) {
            return Err(DataError::Mismatch(format!(
                "sample index {i} is out of range for {} ({} samples)",
                self.data.name,
                self.data.len()
            )));
        }
        self.fill_checked(epoch, batch_index, indices, batch);
        Ok(())
    }

    /// [`Loader::fill`] for indices known to be in range; the dataset and normalization were
    /// checked by [`Loader::new`], so nothing here can fail.
    fn fill_checked(&self, epoch: usize, batch_index: usize, indices: &[usize], batch: &mut Batch) {
        let d = self.data;
        let n = d.image_len();
        batch.len = indices.len();
        batch.images.resize(indices.len() * n, 0.0);
        batch.labels.clear();
        batch.labels.extend(indices.iter().map(|&i| d.labels[i]));
        let mut rng = StdRng::seed_from_u64(mix(self.seed
            ^ mix(epoch as u64)
            ^ mix(!(batch_index as u64))));
        for (&i, out) in indices.iter().zip(batch.images.chunks_exact_mut(n.max(1))) {
            let done = match &self.augment {
                Some(aug) => aug.apply(
                    d.image(i),
                    d.channels,
                    d.height,
                    d.width,
                    &self.norm,
                    &mut rng,
                    out,
                ),
                None => normalize_into(d.image(i), d.channels, d.height, d.width, &self.norm, out),
            };
            debug_assert!(done.is_ok(), "checked by Loader::new");
        }
    }

    /// Iterates over the batches of `epoch`.
    pub fn epoch(&self, epoch: usize) -> Epoch<'_, 'a> {
        Epoch {
            loader: self,
            epoch,
            batches: self.batch_indices(epoch),
            next: 0,
        }
    }
}

/// The batches of one epoch. Use [`Epoch::next_into`] to reuse one [`Batch`]'s buffers.
pub struct Epoch<'l, 'a> {
    loader: &'l Loader<'a>,
    epoch: usize,
    batches: Vec<Vec<usize>>,
    next: usize,
}

impl Epoch<'_, '_> {
    /// Fills `batch` with the next batch; false when the epoch is over.
    pub fn next_into(&mut self, batch: &mut Batch) -> bool {
        let Some(indices) = self.batches.get(self.next) else {
            return false;
        };
        self.loader
            .fill_checked(self.epoch, self.next, indices, batch);
        self.next += 1;
        true
    }
}

impl Iterator for Epoch<'_, '_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let mut batch = Batch::default();
        self.next_into(&mut batch).then_some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batches.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Epoch<'_, '_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::toy;

    fn loader(d: &Dataset, shuffle: bool, augment: Option<Augment>, drop_last: bool) -> Loader<'_> {
        Loader::new(
            d,
            4,
            shuffle,
            42,
            augment,
            Normalization::identity(d.channels),
            drop_last,
        )
        .unwrap()
    }

    #[test]
    fn sequential_batches_cover_the_dataset() {
        let d = toy(10, 1, 2, 2, 3);
        let l = loader(&d, false, None, false);
        let batches: Vec<Batch> = l.epoch(0).collect();
        assert_eq!(
            batches.iter().map(|b| b.len).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        assert_eq!(batches[2].labels, vec![d.labels[8], d.labels[9]]);
        assert_eq!(batches[2].images.len(), 2 * 4);
        let expected: Vec<f32> = d.image(9).iter().map(|&v| f32::from(v) / 255.0).collect();
        assert_eq!(&batches[2].images[4..], &expected[..]);
        assert_eq!(loader(&d, false, None, true).epoch(0).count(), 2);
        assert_eq!(loader(&d, false, None, true).num_batches(), 2);
    }

    #[test]
    fn shuffle_is_a_deterministic_permutation_per_epoch() {
        let d = toy(37, 1, 1, 1, 5);
        let l = loader(&d, true, Some(Augment::cifar()), false);
        let o0 = l.order(0);
        let mut sorted = o0.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..37).collect::<Vec<_>>());
        assert_ne!(o0, l.order(1));
        // A fresh loader (a resumed run) sees identical batches, augmentation included.
        let again = loader(&d, true, Some(Augment::cifar()), false);
        let a: Vec<Batch> = l.epoch(3).collect();
        let b: Vec<Batch> = again.epoch(3).collect();
        assert_eq!(a, b);
        // Another seed gives another order.
        let other = Loader::new(&d, 4, true, 43, None, Normalization::identity(1), false).unwrap();
        assert_ne!(other.order(0), o0);
    }

    #[test]
    fn next_into_reuses_buffers_and_matches_iterator() {
        let d = toy(9, 3, 4, 4, 2);
        let l = loader(
            &d,
            true,
            Some(Augment {
                crop_padding: 1,
                hflip: true,
            }),
            false,
        );
        let expected: Vec<Batch> = l.epoch(1).collect();
        let mut epoch = l.epoch(1);
        let mut batch = Batch::default();
        let mut got = Vec::new();
        while epoch.next_into(&mut batch) {
            assert_eq!(batch.images.len(), batch.len * 3 * 16);
            got.push(batch.clone());
        }
        assert_eq!(got, expected);
        assert_eq!(got.last().unwrap().len, 1);
    }

    #[test]
    fn augmented_batches_differ_between_epochs() {
        let d = toy(8, 3, 8, 8, 2);
        let l = loader(&d, false, Some(Augment::cifar()), false);
        let e0: Vec<Batch> = l.epoch(0).collect();
        let e1: Vec<Batch> = l.epoch(1).collect();
        assert_eq!(e0[0].labels, e1[0].labels);
        assert_ne!(e0[0].images, e1[0].images);
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        let d = toy(4, 3, 2, 2, 2);
        let new = |batch, norm| Loader::new(&d, batch, false, 0, None, norm, false);
        let msg = new(0, Normalization::identity(3)).unwrap_err().to_string();
        assert_eq!(msg, "batch size must be positive");
        let msg = new(2, Normalization::identity(1)).unwrap_err().to_string();
        assert_eq!(
            msg,
            "toy: normalization has 1 means and 1 stds for 3 channels"
        );
        let mut broken = d.clone();
        broken.height = 0;
        let msg = Loader::new(
            &broken,
            2,
            false,
            0,
            None,
            Normalization::identity(3),
            false,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            msg,
            "toy: image size 0x2 (height and width must be in 1..=8192)"
        );
        let l = new(2, Normalization::identity(3)).unwrap();
        let msg = l
            .fill(0, 0, &[1, 4], &mut Batch::default())
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "sample index 4 is out of range for toy (4 samples)");
    }
}
