//! MAE's pretraining transform (torchvision's `RandomResizedCrop(size, scale=(0.2, 1.0),
//! interpolation=BICUBIC)`, `RandomHorizontalFlip()`, `ToTensor()`, `Normalize(ImageNet)`), and
//! the deterministic resize + centre crop used for held-out images.

use image::RgbImage;
use image::imageops::{self, FilterType};
use rand::Rng;

/// ImageNet channel statistics, as in the reference (`IMAGENET_DEFAULT_MEAN/STD`).
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Scale range of the crop's area (MAE's choice; torchvision's default starts at 0.08).
const SCALE: (f64, f64) = (0.2, 1.0);
/// Aspect-ratio range of the crop, drawn log-uniformly (torchvision's default).
const RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

/// A crop window: left, top, width, height.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries at a random area and aspect ratio,
/// then the largest centred crop within the ratio range.
pub fn random_window(width: u32, height: u32, rng: &mut impl Rng) -> Window {
    let area = f64::from(width) * f64::from(height);
    let (log_lo, log_hi) = (RATIO.0.ln(), RATIO.1.ln());
    for _ in 0..10 {
        let target = area * rng.random_range(SCALE.0..SCALE.1);
        let aspect = rng.random_range(log_lo..log_hi).exp();
        let w = (target * aspect).sqrt().round() as u32;
        let h = (target / aspect).sqrt().round() as u32;
        if 0 < w && w <= width && 0 < h && h <= height {
            let x = rng.random_range(0..=width - w);
            let y = rng.random_range(0..=height - h);
            return Window { x, y, w, h };
        }
    }
    let in_ratio = f64::from(width) / f64::from(height);
    let (w, h) = if in_ratio < RATIO.0 {
        (width, (f64::from(width) / RATIO.0).round() as u32)
    } else if in_ratio > RATIO.1 {
        ((f64::from(height) * RATIO.1).round() as u32, height)
    } else {
        (width, height)
    };
    Window {
        x: (width - w) / 2,
        y: (height - h) / 2,
        w,
        h,
    }
}

/// A random resized crop to `size × size` (bicubic), flipped left-right half the time.
pub fn train_view(img: &RgbImage, size: u32, rng: &mut impl Rng) -> RgbImage {
    let win = random_window(img.width(), img.height(), rng);
    let crop = imageops::crop_imm(img, win.x, win.y, win.w, win.h).to_image();
    // CatmullRom is the cubic with a = -0.5, PIL's and torchvision's BICUBIC.
    let mut out = resize(&crop, size, size);
    if rng.random_bool(0.5) {
        imageops::flip_horizontal_in_place(&mut out);
    }
    out
}

/// Held-out view: the short side resized to `size` (bicubic), then the centre `size × size`.
pub fn eval_view(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let scale = f64::from(size) / f64::from(w.min(h));
    let (nw, nh) = (
        ((f64::from(w) * scale).round() as u32).max(size),
        ((f64::from(h) * scale).round() as u32).max(size),
    );
    let resized = resize(img, nw, nh);
    imageops::crop_imm(&resized, (nw - size) / 2, (nh - size) / 2, size, size).to_image()
}

fn resize(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    if img.dimensions() == (w, h) {
        return img.clone();
    }
    imageops::resize(img, w, h, FilterType::CatmullRom)
}

/// Appends `img` as normalised CHW floats (`ToTensor` then `Normalize`).
pub fn push_normalized(img: &RgbImage, out: &mut Vec<f32>) {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let start = out.len();
    out.resize(start + 3 * plane, 0.0);
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            out[start + c * plane + i] = normalize(px.0[c], c);
        }
    }
}

/// One byte of `channel` as `ToTensor` then `Normalize` make it.
pub fn normalize(byte: u8, channel: usize) -> f32 {
    (f32::from(byte) / 255.0 - MEAN[channel]) / STD[channel]
}

/// Inverse of [`normalize`], clamped to a byte.
pub fn to_byte(value: f32, channel: usize) -> u8 {
    ((value * STD[channel] + MEAN[channel]) * 255.0)
        .round()
        .clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn windows_stay_inside_and_follow_the_scale_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (w, h) in [(28, 28), (500, 375), (40, 300), (1, 1)] {
            for _ in 0..200 {
                let win = random_window(w, h, &mut rng);
                assert!(win.w >= 1 && win.h >= 1 && win.x + win.w <= w && win.y + win.h <= h);
                let frac = f64::from(win.w * win.h) / f64::from(w * h);
                // Rounding of small crops and the fallback can leave the range a little.
                assert!(
                    frac <= 1.0 && (w < 30 || frac >= 0.15),
                    "{win:?} of {w}×{h}"
                );
            }
        }
    }

    #[test]
    fn views_are_deterministic_and_sized() {
        let img = RgbImage::from_fn(50, 30, |x, y| image::Rgb([x as u8 * 5, y as u8 * 8, 7]));
        let a = train_view(&img, 16, &mut ChaCha8Rng::seed_from_u64(3));
        let b = train_view(&img, 16, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(a.dimensions(), (16, 16));
        assert_eq!(a, b);
        let e = eval_view(&img, 16);
        assert_eq!(e.dimensions(), (16, 16));
    }

    #[test]
    fn normalisation_round_trips_through_bytes() {
        let img = RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 100, y as u8 * 200, 255]));
        let mut v = Vec::new();
        push_normalized(&img, &mut v);
        assert_eq!(v.len(), 18);
        for (i, px) in img.pixels().enumerate() {
            for c in 0..3 {
                assert_eq!(to_byte(v[c * 6 + i], c), px.0[c]);
            }
        }
    }
}
