//! Line charts as PNG files: `runner plot`'s curves of several runs in one picture.
//!
//! Drawn with plotters' bitmap backend into memory and written durably as a PNG (the `image`
//! crate's encoder). Text uses DejaVu Sans, bundled in the binary (`assets/fonts/`, from
//! Debian's fonts-dejavu-core; its licence beside it), so a clean machine needs no
//! fontconfig or freetype and every machine draws the same picture.

use std::path::Path;
use std::sync::Once;

use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// One line: its legend and its points (x ascending).
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// What the picture says around its lines.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// A logarithmic y axis (losses spanning decades, learning rates).
    pub log_y: bool,
}

pub const SIZE: (u32, u32) = (1100, 650);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are ours and valid; a failure here would be a broken build.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// Draws `curves` into the PNG file `path`.
pub fn draw(path: &Path, chart: &Chart, curves: &[Curve]) -> Result<()> {
    register_font();
    let (w, h) = SIZE;
    let mut pixels = vec![0u8; (w * h * 3) as usize];
    render(&mut pixels, chart, curves)
        .map_err(|e| anyhow::anyhow!("cannot draw the chart: {e}"))?;
    let image = image::RgbImage::from_raw(w, h, pixels).context("the chart's pixel buffer")?;
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("cannot encode the chart as PNG")?;
    crate::durable::write(path, &png)
}

fn render(
    pixels: &mut [u8],
    chart: &Chart,
    curves: &[Curve],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(pixels, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let points = curves.iter().flat_map(|c| c.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points.filter(|(_, y)| y.is_finite() && (!chart.log_y || *y > 0.0)) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        let pad = if y0 == 0.0 { 1.0 } else { y0.abs() * 0.05 };
        (y0, y1) = (y0 - pad, y1 + pad);
    }
    let font = |size: u32| (FAMILY, size).into_font();
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(chart.title, font(24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72);
    let style = |i: usize| Palette99::pick(i).stroke_width(2);
    macro_rules! lines {
        ($ctx:expr) => {{
            let mut ctx = $ctx;
            ctx.configure_mesh()
                .x_label_formatter(&|x| format!("{x}"))
                .x_desc(chart.x_label)
                .y_desc(chart.y_label)
                .label_style(font(15))
                .axis_desc_style(font(17))
                .draw()?;
            for (i, c) in curves.iter().enumerate() {
                let kept: Vec<(f64, f64)> = c
                    .points
                    .iter()
                    .copied()
                    .filter(|(_, y)| y.is_finite() && (!chart.log_y || *y > 0.0))
                    .collect();
                ctx.draw_series(LineSeries::new(kept, style(i)))?
                    .label(c.label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style(i)));
            }
            ctx.configure_series_labels()
                .label_font(font(15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .position(SeriesLabelPosition::UpperRight)
                .draw()?;
        }};
    }
    if chart.log_y {
        lines!(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?);
    } else {
        lines!(builder.build_cartesian_2d(x0..x1, y0..y1)?);
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_with_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        let curves = [
            Curve {
                label: "a".into(),
                points: vec![(0.0, 1.0), (1.0, 0.5), (2.0, 0.25)],
            },
            Curve {
                label: "b".into(),
                points: vec![(0.0, 2.0), (2.0, 1.0)],
            },
        ];
        let chart = Chart {
            title: "loss",
            x_label: "step",
            y_label: "loss",
            log_y: false,
        };
        draw(&path, &chart, &curves).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), SIZE);
        // Two line colours besides white, black and grey (and the text's antialiasing).
        let coloured = img
            .pixels()
            .filter(|p| {
                let [r, g, b] = p.0;
                r.max(g).max(b) - r.min(g).min(b) > 60
            })
            .count();
        assert!(coloured > 500, "{coloured} coloured pixels");
        // One point alone, and nothing at all, still make a picture.
        draw(
            &path,
            &chart,
            &[Curve {
                label: "one".into(),
                points: vec![(3.0, 3.0)],
            }],
        )
        .unwrap();
        draw(&path, &chart, &[]).unwrap();
    }
}
