//! What people look at after an evaluation: each preview clip's input above its reconstruction,
//! clips side by side, as an animated GIF (`samples/step-N.gif`) and as a PNG strip of every
//! frame (`samples/step-N.png`, one row pair per clip, time left to right).

use std::path::Path;

use anyhow::{Context, Result};
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, Rgb, RgbImage, RgbaImage};

/// Pixels between cells.
const GAP: u32 = 2;
/// Shown at 8 frames per second: slow enough to follow at the tiny sizes.
const FRAME_MS: u32 = 125;
/// Small clips are enlarged (nearest) to at least this many pixels per side.
const MIN_CELL: u32 = 96;

/// Clips as `[3, T, S, S]` values in [−1, 1].
pub struct Pair<'a> {
    pub input: &'a [f32],
    pub reconstruction: &'a [f32],
}

fn byte(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Frame `t` of a `[3, T, S, S]` clip, enlarged `scale` times.
fn frame(clip: &[f32], t: usize, frames: usize, size: usize, scale: u32) -> RgbImage {
    let plane = size * size;
    let px = |x: u32, y: u32| {
        let (x, y) = ((x / scale) as usize, (y / scale) as usize);
        let at = |c: usize| byte(clip[(c * frames + t) * plane + y * size + x]);
        Rgb([at(0), at(1), at(2)])
    };
    RgbImage::from_fn(size as u32 * scale, size as u32 * scale, px)
}

/// Frame `t` of a pair at `(x, y)`: the input, and the reconstruction one cell below it.
fn draw(
    canvas: &mut RgbImage,
    pair: &Pair<'_>,
    t: usize,
    (x, y): (u32, u32),
    frames: usize,
    size: usize,
    scale: u32,
) {
    let below = y + size as u32 * scale + GAP;
    for (clip, y) in [(pair.input, y), (pair.reconstruction, below)] {
        let img = frame(clip, t, frames, size, scale);
        image::imageops::overlay(canvas, &img, x.into(), y.into());
    }
}

fn scale_for(size: usize) -> u32 {
    MIN_CELL.div_ceil(size as u32).max(1)
}

/// Writes `<stem>.gif` and `<stem>.png` for `pairs` of `frames × size²` clips.
pub fn write(stem: &Path, pairs: &[Pair<'_>], frames: usize, size: usize) -> Result<()> {
    let scale = scale_for(size);
    let cell = size as u32 * scale;
    let white = Rgb([255, 255, 255]);

    // GIF: one image per time step, clips in columns, input over reconstruction.
    let width = pairs.len() as u32 * (cell + GAP) - GAP;
    let height = 2 * cell + GAP;
    let gif_path = stem.with_extension("gif");
    let mut bytes = Vec::new();
    let mut gif = GifEncoder::new_with_speed(&mut bytes, 10);
    gif.set_repeat(Repeat::Infinite)?;
    for t in 0..frames {
        let mut canvas = RgbImage::from_pixel(width, height, white);
        for (i, p) in pairs.iter().enumerate() {
            draw(
                &mut canvas,
                p,
                t,
                (i as u32 * (cell + GAP), 0),
                frames,
                size,
                scale,
            );
        }
        let rgba: RgbaImage = image::DynamicImage::ImageRgb8(canvas).to_rgba8();
        gif.encode_frame(Frame::from_parts(
            rgba,
            0,
            0,
            Delay::from_numer_denom_ms(FRAME_MS, 1),
        ))
        .with_context(|| format!("cannot write `{}`", gif_path.display()))?;
    }
    drop(gif);
    crate::durable::write(&gif_path, &bytes)?;

    // PNG strip: frames in columns; per clip a row of inputs and a row of reconstructions.
    let width = frames as u32 * (cell + GAP) - GAP;
    let height = pairs.len() as u32 * (2 * cell + 2 * GAP) - GAP;
    let mut strip = RgbImage::from_pixel(width, height, white);
    for (i, p) in pairs.iter().enumerate() {
        let y = i as u32 * (2 * cell + 2 * GAP);
        for t in 0..frames {
            draw(
                &mut strip,
                p,
                t,
                (t as u32 * (cell + GAP), y),
                frames,
                size,
                scale,
            );
        }
    }
    let png_path = stem.with_extension("png");
    crate::durable::write_with(&png_path, |tmp| {
        strip
            .save_with_format(tmp, image::ImageFormat::Png)
            .context("cannot encode the PNG")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::AnimationDecoder;

    #[test]
    fn gif_and_strip_show_input_over_reconstruction() {
        let (frames, size) = (3, 4);
        let n = 3 * frames * size * size;
        let input = vec![1.0f32; n];
        let recon = vec![-1.0f32; n];
        let pairs = [
            Pair {
                input: &input,
                reconstruction: &recon,
            },
            Pair {
                input: &recon,
                reconstruction: &input,
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("step-00000010");
        write(&stem, &pairs, frames, size).unwrap();

        let cell = 4 * scale_for(4);
        let strip = image::open(stem.with_extension("png")).unwrap().to_rgb8();
        assert_eq!(
            strip.dimensions(),
            (3 * cell + 2 * GAP, 2 * (2 * cell + 2 * GAP) - GAP)
        );
        assert_eq!(strip.get_pixel(1, 1), &Rgb([255, 255, 255]));
        assert_eq!(strip.get_pixel(1, cell + GAP + 1), &Rgb([0, 0, 0]));

        let file = std::fs::File::open(stem.with_extension("gif")).unwrap();
        let decoded = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(file))
            .unwrap()
            .into_frames()
            .collect_frames()
            .unwrap();
        assert_eq!(decoded.len(), frames);
        let first = decoded[0].buffer();
        assert_eq!(first.dimensions(), (2 * cell + GAP, 2 * cell + GAP));
        assert_eq!(first.get_pixel(1, cell + GAP + 1).0[..3], [0, 0, 0]);
        assert_eq!(
            first.get_pixel(cell + GAP + 1, cell + GAP + 1).0[..3],
            [255, 255, 255]
        );
    }
}
