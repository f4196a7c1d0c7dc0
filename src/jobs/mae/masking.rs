//! Per-sample random masking, as MAE's `random_masking`: every patch draws uniform noise, the
//! patches are shuffled by sorting the noise, the first `keep` of the shuffle stay visible, and
//! `restore` (the inverse permutation) puts the decoder's tokens back in image order.
//!
//! Drawn on the host from the sample's own seed, so a mask depends only on (seed, epoch,
//! example) and tests can check it without a model.

use rand::Rng;

/// Visible patches out of `patches` at `mask_ratio`: `int(L * (1 - mask_ratio))`, as the
/// reference truncates.
pub fn visible_count(patches: usize, mask_ratio: f64) -> usize {
    (patches as f64 * (1.0 - mask_ratio)) as usize
}

/// One sample's mask.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    /// Patch indices in shuffled order; the first `keep` are visible.
    pub shuffle: Vec<usize>,
    /// Inverse of `shuffle`: `restore[shuffle[j]] == j`.
    pub restore: Vec<usize>,
    pub keep: usize,
}

impl Mask {
    pub fn draw(patches: usize, keep: usize, rng: &mut impl Rng) -> Mask {
        let noise: Vec<f32> = (0..patches).map(|_| rng.random::<f32>()).collect();
        Mask::from_noise(&noise, keep)
    }

    /// Ascending argsort of the noise (ties by index, so the result is fixed).
    pub fn from_noise(noise: &[f32], keep: usize) -> Mask {
        let mut shuffle: Vec<usize> = (0..noise.len()).collect();
        shuffle.sort_by(|&a, &b| noise[a].total_cmp(&noise[b]).then(a.cmp(&b)));
        let mut restore = vec![0; noise.len()];
        for (j, &p) in shuffle.iter().enumerate() {
            restore[p] = j;
        }
        Mask {
            shuffle,
            restore,
            keep,
        }
    }

    /// 1 where the patch is hidden (the loss is taken there), 0 where visible, in image order.
    pub fn hidden(&self) -> impl Iterator<Item = f32> + '_ {
        self.restore
            .iter()
            .map(move |&j| if j < self.keep { 0.0 } else { 1.0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn keeps_exactly_the_right_number_of_patches() {
        assert_eq!(visible_count(196, 0.75), 49);
        assert_eq!(visible_count(49, 0.75), 12);
        assert_eq!(visible_count(256, 0.75), 64);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for (patches, ratio) in [(196, 0.75), (49, 0.75), (49, 0.5), (16, 0.9)] {
            let keep = visible_count(patches, ratio);
            let m = Mask::draw(patches, keep, &mut rng);
            let hidden: Vec<f32> = m.hidden().collect();
            assert_eq!(hidden.iter().filter(|&&h| h == 0.0).count(), keep);
            assert_eq!(hidden.iter().filter(|&&h| h == 1.0).count(), patches - keep);
            // The visible ones are exactly the first `keep` of the shuffle.
            for &p in &m.shuffle[..keep] {
                assert_eq!(hidden[p], 0.0);
            }
        }
    }

    #[test]
    fn restore_inverts_the_shuffle() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let m = Mask::draw(49, 12, &mut rng);
        let mut sorted = m.shuffle.clone();
        sorted.sort();
        assert_eq!(sorted, (0..49).collect::<Vec<_>>(), "a permutation");
        // Gathering the shuffled sequence by `restore` gives the image order back.
        let shuffled: Vec<usize> = m.shuffle.clone();
        let back: Vec<usize> = m.restore.iter().map(|&j| shuffled[j]).collect();
        assert_eq!(back, (0..49).collect::<Vec<_>>());
        assert_ne!(m.shuffle, (0..49).collect::<Vec<_>>(), "actually shuffled");
    }

    #[test]
    fn argsort_of_noise() {
        let m = Mask::from_noise(&[0.9, 0.1, 0.5, 0.1], 2);
        assert_eq!(m.shuffle, [1, 3, 2, 0]);
        assert_eq!(m.restore, [3, 0, 2, 1]);
        assert_eq!(m.hidden().collect::<Vec<_>>(), [1.0, 0.0, 1.0, 0.0]);
    }
}
