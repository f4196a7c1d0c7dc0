//! The reconstruction grid people look at: one row per held-out image, four columns (original |
//! masked | reconstruction | reconstruction with the visible patches pasted back), written as PNG.

use std::path::Path;

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};

use super::augment::to_byte;

/// Gap between cells, in pixels of the (upscaled) image.
const GAP: u32 = 2;
/// Small images are upscaled (nearest) until a cell is at least this wide.
const MIN_CELL: u32 = 112;

/// `columns[c]` holds `rows` normalised images `[rows, 3, size, size]`, flat.
pub fn write(path: &Path, columns: &[Vec<f32>], rows: usize, size: usize) -> Result<()> {
    let zoom = MIN_CELL.div_ceil(size as u32).max(1);
    let cell = size as u32 * zoom;
    let cols = columns.len() as u32;
    let width = cols * cell + (cols + 1) * GAP;
    let height = rows as u32 * cell + (rows as u32 + 1) * GAP;
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let plane = size * size;
    for (c, column) in columns.iter().enumerate() {
        for r in 0..rows {
            let img = &column[r * 3 * plane..(r + 1) * 3 * plane];
            let (x0, y0) = (GAP + c as u32 * (cell + GAP), GAP + r as u32 * (cell + GAP));
            for y in 0..cell {
                for x in 0..cell {
                    let i = (y / zoom) as usize * size + (x / zoom) as usize;
                    let px = Rgb([
                        to_byte(img[i], 0),
                        to_byte(img[plane + i], 1),
                        to_byte(img[2 * plane + i], 2),
                    ]);
                    canvas.put_pixel(x0 + x, y0 + y, px);
                }
            }
        }
    }
    crate::durable::write_with(path, |tmp| {
        canvas
            .save_with_format(tmp, image::ImageFormat::Png)
            .context("cannot encode the PNG")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_colours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.png");
        // Two rows of 2×2 images; column 0 is the normalised value of pure red.
        let red: Vec<f32> = (0..3)
            .flat_map(|c| {
                let byte = if c == 0 { 255 } else { 0 };
                std::iter::repeat_n(super::super::augment::normalize(byte, c), 4)
            })
            .collect();
        let red2 = [red.clone(), red.clone()].concat();
        write(&path, &[red2.clone(), red2], 2, 2).unwrap();
        let img = image::open(&path).unwrap().into_rgb8();
        // Cells are 2 px upscaled 56× to 112.
        assert_eq!(img.dimensions(), (2 * 112 + 3 * GAP, 2 * 112 + 3 * GAP));
        assert_eq!(img.get_pixel(GAP + 5, GAP + 5).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
    }
}
