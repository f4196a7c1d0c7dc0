//! Reading a training window out of a clip: `num_frames` frames every `sample_rate` frames,
//! each resized on its short side and centre-cropped to `resolution` (as Open-Sora-Plan's
//! `ShortSideScale` + `CenterCrop`), as `size² × 3` RGB bytes per frame.
//!
//! Containers go through FFmpeg ([`super::ffmpeg`]) and GIFs through the `image` crate, both
//! whole, and the decoded clip is kept in a bounded in-memory cache so that later draws from the
//! same clip skip decoding; frame folders decode only the frames a window picks.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use image::imageops::{self, FilterType};
use image::{AnimationDecoder, DynamicImage, RgbImage};
use rand::Rng;

use super::clips::Clip;
use super::ffmpeg::{self, Ffmpeg};

/// Frames a window covers: `num_frames` frames `sample_rate` apart.
pub fn span(num_frames: usize, sample_rate: usize) -> usize {
    (num_frames - 1) * sample_rate + 1
}

/// Where a window of `span` frames starts in a clip of `total` frames: uniform over every
/// start that fits (`None` when the clip is too short).
pub fn random_start(total: usize, span: usize, rng: &mut impl Rng) -> Option<usize> {
    (total >= span).then(|| rng.random_range(0..=total - span))
}

/// The centred window, for held-out clips (the same frames at every evaluation).
pub fn centre_start(total: usize, span: usize) -> Option<usize> {
    (total >= span).then(|| (total - span) / 2)
}

/// What reading a window gave.
#[derive(Debug)]
pub enum Window {
    /// `num_frames × size² × 3` RGB bytes.
    Frames(Vec<u8>),
    /// The clip has fewer frames than the window spans.
    TooShort { frames: usize },
}

/// Reads windows out of clips at one resolution.
pub struct VideoReader {
    ffmpeg: Option<Ffmpeg>,
    size: u32,
    num_frames: usize,
    sample_rate: usize,
    cache: DecodedCache,
}

impl VideoReader {
    /// `ffmpeg` must be present when any clip is a container ([`require_ffmpeg`]).
    pub fn new(
        ffmpeg: Option<Ffmpeg>,
        size: u32,
        num_frames: usize,
        sample_rate: usize,
        cache_bytes: usize,
    ) -> VideoReader {
        VideoReader {
            ffmpeg,
            size,
            num_frames,
            sample_rate,
            cache: DecodedCache::new(cache_bytes),
        }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn frame_bytes(&self) -> usize {
        (self.size as usize).pow(2) * 3
    }

    /// The window of clip `key` (an index unique to the clip, for the cache) that `start`
    /// places, given the clip's frame count.
    pub fn window(
        &self,
        key: usize,
        clip: &Clip,
        start: impl FnOnce(usize, usize) -> Option<usize>,
    ) -> Result<Window> {
        let span = span(self.num_frames, self.sample_rate);
        let fb = self.frame_bytes();
        let pick = |first: usize| (0..self.num_frames).map(move |k| first + k * self.sample_rate);
        match clip {
            Clip::Frames { frames, .. } => {
                let Some(first) = start(frames.len(), span) else {
                    return Ok(Window::TooShort {
                        frames: frames.len(),
                    });
                };
                let mut out = Vec::with_capacity(self.num_frames * fb);
                for i in pick(first) {
                    let img = image::open(&frames[i]).with_context(|| {
                        format!("cannot decode frame `{}`", frames[i].display())
                    })?;
                    out.extend_from_slice(fit(&img.to_rgb8(), self.size).as_raw());
                }
                Ok(Window::Frames(out))
            }
            Clip::Container(_) | Clip::Gif(_) => {
                let all = self.decoded(key, clip)?;
                let total = all.len() / fb;
                let Some(first) = start(total, span) else {
                    return Ok(Window::TooShort { frames: total });
                };
                let mut out = Vec::with_capacity(self.num_frames * fb);
                for i in pick(first) {
                    out.extend_from_slice(&all[i * fb..(i + 1) * fb]);
                }
                Ok(Window::Frames(out))
            }
        }
    }

    /// Every frame of a container or GIF, from the cache or decoded now.
    fn decoded(&self, key: usize, clip: &Clip) -> Result<Arc<Vec<u8>>> {
        if let Some(hit) = self.cache.get(key) {
            return Ok(hit);
        }
        let frames = match clip {
            Clip::Container(path) => match &self.ffmpeg {
                Some(f) => f.decode(path, self.size)?,
                None => bail!(
                    "`{}` needs FFmpeg, which was not found on PATH: {}",
                    path.display(),
                    ffmpeg::INSTALL_HINT
                ),
            },
            Clip::Gif(path) => decode_gif(path, self.size)?,
            Clip::Frames { .. } => unreachable!("frame folders are read frame by frame"),
        };
        let frames = Arc::new(frames);
        self.cache.insert(key, frames.clone());
        Ok(frames)
    }
}

/// What FFmpeg is needed for among `clips` ("to decode 3 of the 4 clips (e.g. `a.mp4`)"), or
/// `None` when none is a container.
pub fn ffmpeg_needed_for(clips: &[&Clip]) -> Option<String> {
    let containers: Vec<&&Clip> = clips.iter().filter(|c| c.needs_ffmpeg()).collect();
    let first = containers.first()?;
    Some(format!(
        "to decode {} of the {} clips (e.g. `{}`)",
        containers.len(),
        clips.len(),
        first.path().display()
    ))
}

/// Finds FFmpeg when any of `clips` needs it; the error says which clips and how to install it.
pub fn require_ffmpeg(clips: &[&Clip]) -> Result<Option<Ffmpeg>> {
    let Some(why) = ffmpeg_needed_for(clips) else {
        return Ok(None);
    };
    match Ffmpeg::find()? {
        Some(f) => Ok(Some(f)),
        None => bail!(
            "FFmpeg is needed {why}, but no `ffmpeg` program is on PATH: {}",
            ffmpeg::INSTALL_HINT
        ),
    }
}

/// Resized so that the short side is `size` (bicubic), then centre-cropped to `size × size`.
pub fn fit(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (nw, nh) = if w < h {
        (
            size,
            ((u64::from(h) * u64::from(size)) as f64 / f64::from(w)).round() as u32,
        )
    } else {
        (
            ((u64::from(w) * u64::from(size)) as f64 / f64::from(h)).round() as u32,
            size,
        )
    };
    let resized = if (nw, nh) == (w, h) {
        img.clone()
    } else {
        imageops::resize(img, nw.max(size), nh.max(size), FilterType::CatmullRom)
    };
    let (rw, rh) = resized.dimensions();
    imageops::crop_imm(&resized, (rw - size) / 2, (rh - size) / 2, size, size).to_image()
}

/// Every frame of an animated GIF (composited as the GIF specifies, alpha dropped), fitted to
/// `size`.
pub fn decode_gif(path: &Path, size: u32) -> Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let decoder = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(file))
        .with_context(|| format!("`{}` is not a readable GIF", path.display()))?;
    let frames = decoder
        .into_frames()
        .collect_frames()
        .with_context(|| format!("cannot decode the frames of `{}`", path.display()))?;
    if frames.is_empty() {
        bail!("`{}` has no frames", path.display());
    }
    let mut out = Vec::with_capacity(frames.len() * (size as usize).pow(2) * 3);
    for frame in frames {
        let rgb = DynamicImage::ImageRgba8(frame.into_buffer()).to_rgb8();
        out.extend_from_slice(fit(&rgb, size).as_raw());
    }
    Ok(out)
}

/// Decoded clips kept in memory up to a byte budget, the oldest dropped first.
struct DecodedCache {
    budget: usize,
    inner: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    used: usize,
    order: VecDeque<usize>,
    clips: HashMap<usize, Arc<Vec<u8>>>,
}

impl DecodedCache {
    fn new(budget: usize) -> DecodedCache {
        DecodedCache {
            budget,
            inner: Mutex::new(CacheState::default()),
        }
    }

    fn get(&self, key: usize) -> Option<Arc<Vec<u8>>> {
        let state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        state.clips.get(&key).cloned()
    }

    fn insert(&self, key: usize, clip: Arc<Vec<u8>>) {
        if clip.len() > self.budget {
            return;
        }
        let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if state.clips.contains_key(&key) {
            return;
        }
        while state.used + clip.len() > self.budget {
            let Some(old) = state.order.pop_front() else {
                break;
            };
            if let Some(gone) = state.clips.remove(&old) {
                state.used -= gone.len();
            }
        }
        state.used += clip.len();
        state.order.push_back(key);
        state.clips.insert(key, clip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Delay, Frame, Rgba, RgbaImage};
    use rand::SeedableRng;

    #[test]
    fn windows_fit_inside_the_clip() {
        assert_eq!(span(17, 1), 17);
        assert_eq!(span(9, 3), 25);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            let s = random_start(30, 25, &mut rng).unwrap();
            assert!(s + 25 <= 30);
        }
        assert_eq!(random_start(24, 25, &mut rng), None);
        assert_eq!(random_start(25, 25, &mut rng), Some(0));
        assert_eq!(centre_start(35, 25), Some(5));
        assert_eq!(centre_start(3, 25), None);
    }

    #[test]
    fn fit_scales_the_short_side_and_crops_the_centre() {
        // 40×20, left half black, right half white: after fitting to 10, the centre crop
        // of the 20×10 resize shows both halves.
        let img = RgbImage::from_fn(40, 20, |x, _| {
            if x < 20 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255, 255, 255])
            }
        });
        let out = fit(&img, 10);
        assert_eq!(out.dimensions(), (10, 10));
        assert!(out.get_pixel(0, 5)[0] < 10 && out.get_pixel(9, 5)[0] > 245);
        let tall = RgbImage::new(8, 30);
        assert_eq!(fit(&tall, 8).dimensions(), (8, 8));
    }

    fn write_gif(path: &Path, frames: usize) {
        let file = std::fs::File::create(path).unwrap();
        let mut enc = image::codecs::gif::GifEncoder::new(file);
        let frames = (0..frames).map(|i| {
            let v = (i * 40) as u8;
            Frame::from_parts(
                RgbaImage::from_pixel(24, 16, Rgba([v, 255 - v, 0, 255])),
                0,
                0,
                Delay::from_numer_denom_ms(40, 1),
            )
        });
        enc.encode_frames(frames).unwrap();
    }

    #[test]
    fn gifs_and_frame_folders_give_the_picked_frames() {
        let dir = tempfile::tempdir().unwrap();
        let gif = dir.path().join("a.gif");
        write_gif(&gif, 6);
        let frames_dir = dir.path().join("b");
        std::fs::create_dir(&frames_dir).unwrap();
        let mut frames = Vec::new();
        for i in 0..6u8 {
            let p = frames_dir.join(format!("{:06}.png", i + 1));
            RgbImage::from_pixel(24, 16, image::Rgb([i * 40, 255 - i * 40, 0]))
                .save(&p)
                .unwrap();
            frames.push(p);
        }
        let reader = VideoReader::new(None, 8, 3, 2, 1 << 20);
        let clips = [
            Clip::Gif(gif),
            Clip::Frames {
                dir: frames_dir,
                frames,
            },
        ];
        for (key, clip) in clips.iter().enumerate() {
            let Window::Frames(px) = reader.window(key, clip, |_, _| Some(1)).unwrap() else {
                panic!("too short")
            };
            assert_eq!(px.len(), 3 * 8 * 8 * 3, "{clip:?}");
            // Frames 1, 3, 5: red 40, 120, 200 (GIF palettes may shift a value slightly).
            for (k, want) in [40i32, 120, 200].into_iter().enumerate() {
                let red = i32::from(px[k * 192]);
                assert!(
                    (red - want).abs() <= 4,
                    "{clip:?} frame {k}: {red} vs {want}"
                );
            }
            // 4 frames 2 apart span 7 frames, more than the clip has.
            let short = VideoReader::new(None, 8, 4, 2, 0);
            assert!(matches!(
                short
                    .window(key, clip, |total, span| (total >= span).then_some(0))
                    .unwrap(),
                Window::TooShort { frames: 6 }
            ));
        }
    }

    #[test]
    fn a_container_without_ffmpeg_names_the_fix() {
        let reader = VideoReader::new(None, 8, 1, 1, 0);
        let clip = Clip::Container("clip.mp4".into());
        let e = format!("{:#}", reader.window(0, &clip, |_, _| Some(0)).unwrap_err());
        assert!(
            e.contains("clip.mp4") && e.contains("apt-get install ffmpeg"),
            "{e}"
        );
    }

    #[test]
    fn the_cache_keeps_to_its_budget() {
        let cache = DecodedCache::new(10);
        cache.insert(1, Arc::new(vec![0; 6]));
        cache.insert(2, Arc::new(vec![0; 4]));
        assert!(cache.get(1).is_some() && cache.get(2).is_some());
        cache.insert(3, Arc::new(vec![0; 5]));
        assert!(cache.get(1).is_none() && cache.get(2).is_some() && cache.get(3).is_some());
        cache.insert(4, Arc::new(vec![0; 11]));
        assert!(cache.get(4).is_none());
    }
}
