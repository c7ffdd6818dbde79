//! The paper's Fig. 3: histograms of the maximum probability and of the entropic score for
//! in-distribution vs out-of-distribution images, drawn with plotters into a PNG.

use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// One panel: a score's values for in- and out-of-distribution images.
pub struct Panel<'a> {
    /// Panel caption (e.g. the score's name).
    pub title: String,
    /// Scores of the in-distribution images.
    pub inside: &'a [f32],
    /// Scores of the out-of-distribution images.
    pub outside: &'a [f32],
}

fn histogram(v: &[f32], lo: f32, hi: f32, bins: usize) -> Vec<f64> {
    let mut h = vec![0.0; bins];
    let w = (hi - lo).max(1e-12) / bins as f32;
    for x in v {
        let b = (((x - lo) / w) as usize).min(bins - 1);
        h[b] += 1.0;
    }
    let n = v.len().max(1) as f64;
    h.iter().map(|c| c / n).collect()
}

/// Draw the panels side by side (blue: in-distribution, red: out-of-distribution; each
/// histogram normalised to fractions of its set) and write a PNG.
pub fn histograms(path: &Path, panels: &[Panel]) -> Result<(), String> {
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
    let (w, h) = (520 * panels.len().max(1) as u32, 420u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (area, p) in areas.iter().zip(panels) {
            let all = p
                .inside
                .iter()
                .chain(p.outside)
                .copied()
                .filter(|x| x.is_finite());
            let (lo, hi) = all.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), x| {
                (a.min(x), b.max(x))
            });
            let (lo, hi) = if lo < hi {
                (lo, hi)
            } else {
                (lo - 0.5, lo + 0.5)
            };
            let bins = 40;
            let hin = histogram(p.inside, lo, hi, bins);
            let hout = histogram(p.outside, lo, hi, bins);
            let top = hin.iter().chain(&hout).fold(0.0f64, |a, b| a.max(*b)) * 1.1 + 1e-9;
            let mut chart = ChartBuilder::on(area)
                .caption(&p.title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d(lo as f64..hi as f64, 0.0..top)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .y_desc("fraction of images")
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(|e| e.to_string())?;
            let bw = (hi - lo) as f64 / bins as f64;
            for (hist, color, name) in [
                (&hin, BLUE, "in-distribution"),
                (&hout, RED, "out-of-distribution"),
            ] {
                chart
                    .draw_series(hist.iter().enumerate().map(|(i, v)| {
                        let x0 = lo as f64 + i as f64 * bw;
                        Rectangle::new([(x0, 0.0), (x0 + bw, *v)], color.mix(0.45).filled())
                    }))
                    .map_err(|e| e.to_string())?
                    .label(name)
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.mix(0.45).filled())
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    save_png(path, w, h, buf)
}

/// One line chart: for each x, each named series' mean and standard deviation (drawn as a
/// vertical bar of ± std).
pub struct LinePanel<'a> {
    /// Chart caption.
    pub title: String,
    /// X-axis label.
    pub x_desc: String,
    /// Y-axis label.
    pub y_desc: String,
    /// The x values, all positive (drawn on a log axis).
    pub x: &'a [f64],
    /// Named series, each one `(mean, std)` per entry of `x`.
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Draw line charts side by side into a PNG (e.g. a metric against the entropic scale).
pub fn lines(path: &Path, panels: &[LinePanel]) -> Result<(), String> {
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    let (w, h) = (560 * panels.len().max(1) as u32, 420u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (area, p) in areas.iter().zip(panels) {
            if p.x.is_empty() || p.x.iter().any(|x| x.is_nan() || *x <= 0.0) {
                return Err(format!("{}: x values must be positive", p.title));
            }
            let lx: Vec<f64> = p.x.iter().map(|x| x.log10()).collect();
            let (x0, x1) = lx
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                    (a.min(*x), b.max(*x))
                });
            let pad = ((x1 - x0) * 0.1).max(0.1);
            let ys = p
                .series
                .iter()
                .flat_map(|(_, v)| v.iter().flat_map(|(m, s)| [m - s, m + s]))
                .filter(|y| y.is_finite());
            let (y0, y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
                (a.min(y), b.max(y))
            });
            let (y0, y1) = if y0 < y1 {
                (y0, y1)
            } else {
                (y0 - 1.0, y0 + 1.0)
            };
            let ypad = (y1 - y0) * 0.08;
            let mut chart = ChartBuilder::on(area)
                .caption(&p.title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(x0 - pad..x1 + pad, y0 - ypad..y1 + ypad)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc(p.x_desc.as_str())
                .y_desc(p.y_desc.as_str())
                .x_labels(8)
                .x_label_formatter(&|v| format!("{:.3}", 10f64.powf(*v)))
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(|e| e.to_string())?;
            for (k, (name, values)) in p.series.iter().enumerate() {
                let color = colors[k % colors.len()];
                let pts: Vec<(f64, f64)> =
                    lx.iter().zip(values).map(|(x, (m, _))| (*x, *m)).collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label(name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color));
                chart
                    .draw_series(
                        pts.iter()
                            .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
                    )
                    .map_err(|e| e.to_string())?;
                chart
                    .draw_series(lx.iter().zip(values).map(|(x, (m, s))| {
                        PathElement::new(vec![(*x, m - s), (*x, m + s)], color.stroke_width(1))
                    }))
                    .map_err(|e| e.to_string())?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    save_png(path, w, h, buf)
}

/// Encode a drawn RGB buffer as PNG at `path`.
fn save_png(path: &Path, w: u32, h: u32, buf: Vec<u8>) -> Result<(), String> {
    let img = image::RgbImage::from_raw(w, h, buf).ok_or("plot buffer has the wrong size")?;
    img.save(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}
