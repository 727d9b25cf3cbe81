//! The report's charts, drawn with plotters' SVG backend into strings that are inlined in the
//! page (plotters escapes the text it writes). Colours follow the variant's index in the
//! leaderboard, the same as the page's legend chips.

use std::collections::HashMap;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Tableau 10: distinct for the first ten variants, then repeats.
pub const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

pub fn color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

pub fn css_color(i: usize) -> String {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    format!("#{r:02x}{g:02x}{b:02x}")
}

const FONT: &str = "sans-serif";

/// A line series: name, colour index, points, and an optional marked point.
pub struct Line {
    pub name: String,
    pub color: usize,
    pub points: Vec<(f64, f64)>,
    pub mark: Option<(f64, f64)>,
}

/// Lines on a [0, 1] × [0, 1] plane (F1 against threshold, precision against recall).
pub fn lines(title: &str, x_desc: &str, y_desc: &str, series: &[Line]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (520, 360)).into_drawing_area();
        let _ = draw_lines(&root, title, x_desc, y_desc, series);
        let _ = root.present();
    }
    clean(svg)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw_lines(
    root: &Area<'_>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Line],
) -> DrawResult {
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(11)
        .y_labels(6)
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .label_style((FONT, 11))
        .draw()?;
    for s in series {
        let c = color(s.color);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        if let Some(m) = s.mark {
            chart.draw_series(std::iter::once(Circle::new(m, 4, c.filled())))?;
        }
        // a series that never moves (a rating model's precision and recall are the same at
        // every threshold) is one point, which a line does not show: ring it
        if let Some(&first) = s.points.first() {
            if s.points.iter().all(|&q| q == first) {
                chart.draw_series(std::iter::once(Circle::new(first, 6, c.stroke_width(2))))?;
            }
        }
    }
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font((FONT, 11))
            .position(SeriesLabelPosition::LowerLeft)
            .draw()?;
    }
    Ok(())
}

/// Horizontal grouped bars: one row per label, one bar per series.
pub struct Bars<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub labels: &'a [String],
    /// Name and colour index of each series.
    pub series: &'a [(String, usize)],
    /// Per series, one value per label.
    pub values: &'a [Vec<f64>],
    /// The x axis' end (default: the largest value + 5%).
    pub x_max: Option<f64>,
}

pub fn bars(b: &Bars<'_>) -> String {
    let row_h = 8 + 9 * b.series.len().max(1) as u32;
    let height = 70 + row_h * b.labels.len().max(1) as u32 + 18 * b.series.len().min(12) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, height)).into_drawing_area();
        let _ = draw_bars(&root, b);
        let _ = root.present();
    }
    clean(svg)
}

fn draw_bars(root: &Area<'_>, b: &Bars<'_>) -> DrawResult {
    let Bars {
        title,
        x_desc,
        labels,
        series,
        values,
        x_max,
    } = *b;
    root.fill(&WHITE)?;
    let max = x_max.unwrap_or_else(|| {
        values
            .iter()
            .flatten()
            .copied()
            .fold(0.0, f64::max)
            .max(1.0)
            * 1.05
    });
    let n = labels.len().max(1) as f64;
    let legend_h = 18 * series.len().min(12) as u32;
    let (top, bottom) = root.split_vertically(root.dim_in_pixel().1 - legend_h);
    let mut chart = ChartBuilder::on(&top)
        .caption(title, (FONT, 16))
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(170)
        .build_cartesian_2d(0f64..max, 0f64..n)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .disable_y_mesh()
        .y_labels(0)
        .x_labels(6)
        .x_label_formatter(&|x| {
            if max > 5.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.2}")
            }
        })
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(220, 220, 220))
        .label_style((FONT, 11))
        .draw()?;
    let k = series.len().max(1) as f64;
    for (s, (_, ci)) in series.iter().enumerate() {
        let c = color(*ci);
        chart.draw_series(labels.iter().enumerate().map(|(row, _)| {
            let v = values[s].get(row).copied().unwrap_or(0.0);
            // row 0 at the top
            let y1 = n - row as f64 - 0.1 - s as f64 * 0.8 / k;
            let y0 = y1 - 0.8 / k;
            Rectangle::new([(0.0, y0), (v, y1)], c.filled())
        }))?;
    }
    let style = TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    for (row, label) in labels.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(0.0, n - row as f64 - 0.5));
        top.draw(&Text::new(short(label, 28), (px - 6, py), style.clone()))?;
    }
    for (s, (name, ci)) in series.iter().enumerate().take(12) {
        let y = 4 + 18 * s as i32;
        bottom.draw(&Rectangle::new(
            [(190, y), (202, y + 12)],
            color(*ci).filled(),
        ))?;
        bottom.draw(&Text::new(short(name, 60), (208, y + 1), (FONT, 12)))?;
    }
    Ok(())
}

/// Co-occurrence of the most frequent ground-truth tags.
pub struct Heatmap {
    pub tags: Vec<String>,
    /// `counts[i][j]`: images with both tags (the diagonal: images with the tag).
    pub counts: Vec<Vec<u64>>,
    pub images: u64,
}

/// Counts co-occurrence among the `top` most frequent tags of `truth` (path → tags).
pub fn heatmap_of(truth: &HashMap<String, Vec<String>>, top: usize) -> Heatmap {
    let mut freq: HashMap<&str, u64> = HashMap::new();
    for ts in truth.values() {
        for t in ts {
            *freq.entry(t).or_default() += 1;
        }
    }
    let mut order: Vec<(&str, u64)> = freq.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    order.truncate(top);
    let index: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, (t, _))| (*t, i))
        .collect();
    let n = order.len();
    let mut counts = vec![vec![0u64; n]; n];
    for ts in truth.values() {
        let ids: Vec<usize> = ts
            .iter()
            .filter_map(|t| index.get(t.as_str()).copied())
            .collect();
        for &a in &ids {
            for &b in &ids {
                counts[a][b] += 1;
            }
        }
    }
    Heatmap {
        tags: order.iter().map(|(t, _)| t.to_string()).collect(),
        counts,
        images: truth.len() as u64,
    }
}

/// The heat map: cell colour is the normalised PMI of the pair (blue below independence,
/// red above; white at independence or no co-occurrence), the diagonal grey.
pub fn heatmap(h: &Heatmap) -> String {
    let n = h.tags.len();
    let cell = 22u32;
    let left = 170u32;
    let top_pad = 40u32;
    let bottom_pad = 150u32;
    let w = left + cell * n as u32 + 90;
    let ht = top_pad + cell * n as u32 + bottom_pad;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, ht)).into_drawing_area();
        let _ = draw_heatmap(&root, h, cell, left, top_pad);
        let _ = root.present();
    }
    clean(svg)
}

/// Normalised PMI in [-1, 1]: log(p(ab) / (p(a) p(b))) / -log p(ab).
pub fn npmi(ab: u64, a: u64, b: u64, n: u64) -> Option<f64> {
    if ab == 0 || n == 0 {
        return None;
    }
    let n = n as f64;
    let (pab, pa, pb) = (ab as f64 / n, a as f64 / n, b as f64 / n);
    if pab >= 1.0 {
        return Some(0.0);
    }
    Some((pab / (pa * pb)).ln() / -pab.ln())
}

fn draw_heatmap(root: &Area<'_>, h: &Heatmap, cell: u32, left: u32, top: u32) -> DrawResult {
    root.fill(&WHITE)?;
    root.draw(&Text::new(
        format!(
            "Ground-truth co-occurrence (NPMI), top {} tags",
            h.tags.len()
        ),
        (12, 12),
        (FONT, 16),
    ))?;
    let n = h.tags.len();
    for i in 0..n {
        for j in 0..n {
            let x = (left + cell * j as u32) as i32;
            let y = (top + cell * i as u32) as i32;
            let c = if i == j {
                RGBColor(200, 200, 200)
            } else {
                match npmi(h.counts[i][j], h.counts[i][i], h.counts[j][j], h.images) {
                    None => RGBColor(255, 255, 255),
                    Some(v) => diverging(v),
                }
            };
            root.draw(&Rectangle::new(
                [(x, y), (x + cell as i32 - 1, y + cell as i32 - 1)],
                c.filled(),
            ))?;
        }
    }
    let right = TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    for (i, t) in h.tags.iter().enumerate() {
        let y = (top + cell * i as u32 + cell / 2) as i32;
        root.draw(&Text::new(
            short(t, 26),
            (left as i32 - 6, y),
            right.clone(),
        ))?;
        let x = (left + cell * i as u32 + cell / 2) as i32;
        let rotated = TextStyle::from((FONT, 11).into_font().transform(FontTransform::Rotate90))
            .pos(Pos::new(HPos::Left, VPos::Center));
        root.draw(&Text::new(
            short(t, 22),
            (x, (top + cell * n as u32 + 6) as i32),
            rotated,
        ))?;
    }
    // colour scale
    let sx = (left + cell * n as u32 + 24) as i32;
    for k in 0..=20 {
        let v = 1.0 - k as f64 / 10.0;
        let y = top as i32 + k * 8;
        root.draw(&Rectangle::new(
            [(sx, y), (sx + 14, y + 8)],
            diverging(v).filled(),
        ))?;
    }
    for (v, k) in [("+1", 0), ("0", 10), ("−1", 20)] {
        root.draw(&Text::new(v, (sx + 18, top as i32 + k * 8), (FONT, 10)))?;
    }
    Ok(())
}

fn diverging(v: f64) -> RGBColor {
    let v = v.clamp(-1.0, 1.0);
    let mix = |a: u8, b: u8, t: f64| (a as f64 + (b as f64 - a as f64) * t).round() as u8;
    if v >= 0.0 {
        RGBColor(mix(255, 178, v), mix(255, 24, v), mix(255, 43, v))
    } else {
        RGBColor(mix(255, 33, -v), mix(255, 102, -v), mix(255, 172, -v))
    }
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let t: String = s.chars().take(max - 1).collect();
        format!("{t}…")
    }
}

/// Makes the SVG fit its container (plotters writes fixed width and height).
fn clean(svg: String) -> String {
    match svg.find("<svg") {
        Some(i) => {
            let head_end = svg[i..].find('>').map(|k| i + k).unwrap_or(i);
            let head = &svg[i..head_end];
            let w = attr(head, "width");
            let h = attr(head, "height");
            match (w, h) {
                (Some(w), Some(h)) => format!(
                    "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\"{}",
                    &svg[head_end..]
                ),
                _ => svg,
            }
        }
        None => svg,
    }
}

fn attr(head: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let i = head.find(&key)? + key.len();
    let j = head[i..].find('"')? + i;
    Some(head[i..j].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_svg_scales() {
        let s = lines(
            "t",
            "x",
            "y",
            &[Line {
                name: "<script>alert(1)</script>".into(),
                color: 0,
                points: vec![(0.0, 0.0), (1.0, 1.0)],
                mark: Some((0.5, 0.5)),
            }],
        );
        assert!(!s.contains("<script>"), "{s}");
        assert!(s.contains("&lt;script&gt;"));
        assert!(s.starts_with("<svg class=\"chart\" viewBox=\"0 0 520 360\""));
    }

    #[test]
    fn a_series_that_never_moves_is_ringed() {
        let line = |points: Vec<(f64, f64)>| Line {
            name: "v".into(),
            color: 0,
            points,
            mark: None,
        };
        let still = lines("t", "x", "y", &[line(vec![(0.25, 1.0); 3])]);
        let moving = lines("t", "x", "y", &[line(vec![(0.1, 1.0), (0.25, 0.9)])]);
        assert_eq!(still.matches("<circle").count(), 1, "{still}");
        assert_eq!(moving.matches("<circle").count(), 0, "{moving}");
    }

    #[test]
    fn npmi_bounds() {
        // always together: +1; independent: 0; never: None
        assert!((npmi(10, 10, 10, 100).unwrap() - 1.0).abs() < 1e-12);
        assert!(npmi(25, 50, 50, 100).unwrap().abs() < 1e-12);
        assert_eq!(npmi(0, 50, 50, 100), None);
    }

    #[test]
    fn heatmap_counts_pairs() {
        let mut t = HashMap::new();
        t.insert("a".to_string(), vec!["x".to_string(), "y".to_string()]);
        t.insert("b".to_string(), vec!["x".to_string()]);
        let h = heatmap_of(&t, 5);
        assert_eq!(h.tags, vec!["x", "y"]);
        assert_eq!(h.counts, vec![vec![2, 1], vec![1, 1]]);
        let svg = heatmap(&h);
        assert!(svg.contains("<svg class=\"chart\""));
    }
}
