//! The figure's layout: a legend of run names (and what each line style means) on top, the
//! loss panel across the full width under it, and a row beneath with the learning rate and
//! a panel for each preference metric some run logged. Every panel shares the x axis
//! (steps) so runs compare at a glance.

use super::font;
use super::scene::{Anchor, Color, Group, Node, Scene};
use super::series::{Curve, Point, RunSeries, PREFERENCE};

/// Run colours in legend order (matplotlib's tab10), repeated past ten runs.
pub const PALETTE: [Color; 10] = [
    Color::hex(0x1f77b4),
    Color::hex(0xff7f0e),
    Color::hex(0x2ca02c),
    Color::hex(0xd62728),
    Color::hex(0x9467bd),
    Color::hex(0x8c564b),
    Color::hex(0xe377c2),
    Color::hex(0x7f7f7f),
    Color::hex(0xbcbd22),
    Color::hex(0x17becf),
];

const INK: Color = Color::hex(0x222222);
const MUTED: Color = Color::hex(0x555555);
const GRID: Color = Color::hex(0xe8e8e8);
const FRAME: Color = Color::hex(0xb4b4b4);
const KEY: Color = Color::hex(0x666666);

const PAD: f32 = 16.0;
const GAP: f32 = 18.0;
const LEGEND_ROW: f32 = 22.0;
const TITLE_SIZE: f32 = 13.0;
const LABEL_SIZE: f32 = 11.0;
/// Above a panel's plot area: its title.
const TITLE_H: f32 = 22.0;
/// Below it: tick labels and the axis name.
const XAXIS_H: f32 = 34.0;
/// Raw train values: thin and faint under the smoothed line.
const RAW_OPACITY: f32 = 0.3;
const RAW_WIDTH: f32 = 1.0;
const SMOOTH_WIDTH: f32 = 2.0;
const LR_WIDTH: f32 = 1.75;
const MARKER_R: f32 = 3.5;

/// The smallest and largest figure, in pixels.
pub const MIN_SIZE: (u32, u32) = (320, 240);
pub const MAX_SIZE: u32 = 8192;

/// What one panel draws.
#[derive(Debug, Clone, Copy)]
enum Content {
    /// Train (raw and smoothed) and eval values of the loss, or of a preference metric.
    Curve(Option<&'static str>),
    LearningRate,
}

#[derive(Debug, Clone, Copy)]
struct Panel {
    id: &'static str,
    title: &'static str,
    content: Content,
}

/// A rectangle in pixels.
#[derive(Debug, Clone, Copy)]
struct Cell {
    x: f32,
    y: f32,
    w: f32,
    h: f32,
}

/// The panels `runs` call for: loss, learning rate, then each preference metric that some
/// run logged.
fn panels(runs: &[RunSeries]) -> Vec<Panel> {
    let mut out = vec![
        Panel {
            id: "loss",
            title: "loss",
            content: Content::Curve(None),
        },
        Panel {
            id: "lr",
            title: "learning rate",
            content: Content::LearningRate,
        },
    ];
    for (key, title, id) in PREFERENCE {
        if runs.iter().any(|r| r.metrics.contains_key(*key)) {
            out.push(Panel {
                id,
                title,
                content: Content::Curve(Some(key)),
            });
        }
    }
    out
}

/// The figure of `runs` (train values smoothed with EMA weight `smoothing`, for the key).
pub fn figure(runs: &[RunSeries], width: u32, height: u32, smoothing: f64) -> Scene {
    let (w, h) = (width as f32, height as f32);
    let mut root = Group::new(None, None);
    let (legend, legend_h) = legend(runs, w, smoothing);
    root.push(Node::Group(legend));

    let top = PAD + legend_h + 8.0;
    let avail = (h - PAD - top).max(2.0 * (TITLE_H + XAXIS_H + 20.0) + GAP);
    let top_h = (avail * 0.55).round();
    let bottom_h = avail - top_h - GAP;
    let x_max = runs
        .iter()
        .map(RunSeries::last_step)
        .fold(0.0f64, f64::max)
        .max(1.0);
    let all = panels(runs);
    let (first, rest) = all.split_first().expect("a loss panel");
    let n = rest.len() as f32;
    let cell_w = (w - 2.0 * PAD - (n - 1.0) * GAP) / n;
    let cells: Vec<Cell> = (0..rest.len())
        .map(|i| Cell {
            x: PAD + i as f32 * (cell_w + GAP),
            y: top + top_h + GAP,
            w: cell_w,
            h: bottom_h,
        })
        .collect();
    let loss_cell = Cell {
        x: PAD,
        y: top,
        w: w - 2.0 * PAD,
        h: top_h,
    };
    // The loss panel and the one under its left edge share their value labels' width.
    let shared_w = y_axis(first, loss_cell, runs)
        .label_w
        .max(y_axis(&rest[0], cells[0], runs).label_w);
    root.push(Node::Group(panel(first, loss_cell, runs, x_max, shared_w)));
    for (i, (p, cell)) in rest.iter().zip(&cells).enumerate() {
        let label_w = if i == 0 { shared_w } else { 0.0 };
        root.push(Node::Group(panel(p, *cell, runs, x_max, label_w)));
    }
    Scene {
        width,
        height,
        background: Color::WHITE,
        root,
    }
}

/// The run names with their colours, then the line styles' key, flowed into rows across
/// the top. Returns the group and its height.
fn legend(runs: &[RunSeries], w: f32, smoothing: f64) -> (Group, f32) {
    const SWATCH: f32 = 24.0;
    let mut g = Group::new(Some("legend".into()), Some("legend"));
    let (mut x, mut row) = (PAD, 0usize);
    let max_text = (w - 2.0 * PAD - SWATCH - 8.0).max(20.0);
    let mut place = |entry_w: f32| {
        if x + entry_w > w - PAD && x > PAD {
            x = PAD;
            row += 1;
        }
        let at = (x, PAD + row as f32 * LEGEND_ROW);
        x += entry_w + 18.0;
        at
    };
    for (i, r) in runs.iter().enumerate() {
        let name = fit(&r.name, TITLE_SIZE, max_text);
        let (x0, y0) = place(SWATCH + 6.0 + font::width(&name, TITLE_SIZE));
        let mut e = Group::new(Some(format!("legend-{i}")), Some("legend-run"));
        e.run = Some(r.name.clone());
        e.push(Node::Line {
            from: (x0, y0 + 10.5),
            to: (x0 + SWATCH, y0 + 10.5),
            color: color(i),
            width: 3.0,
        });
        e.push(text(
            (x0 + SWATCH + 6.0, y0 + 15.0),
            name,
            TITLE_SIZE,
            INK,
            Anchor::Start,
        ));
        g.push(Node::Group(e));
    }
    let mut key = Group::new(Some("legend-key".into()), Some("legend-key"));
    let smooth = format!("smoothed (EMA {})", trim_float(smoothing));
    for (label, style) in [("train", 0), (smooth.as_str(), 1), ("eval", 2)] {
        let (x0, y0) = place(SWATCH + 6.0 + font::width(label, LABEL_SIZE));
        let y = y0 + 10.5;
        key.push(match style {
            2 => Node::Circle {
                center: (x0 + SWATCH / 2.0, y),
                r: MARKER_R,
                fill: KEY,
                stroke: Some((Color::WHITE, 1.0)),
            },
            s => Node::Polyline {
                points: vec![(x0, y), (x0 + SWATCH, y)],
                color: KEY,
                width: if s == 0 { RAW_WIDTH } else { SMOOTH_WIDTH },
                opacity: if s == 0 { RAW_OPACITY.max(0.5) } else { 1.0 },
            },
        });
        key.push(text(
            (x0 + SWATCH + 6.0, y0 + 14.5),
            label.to_string(),
            LABEL_SIZE,
            MUTED,
            Anchor::Start,
        ));
    }
    g.push(Node::Group(key));
    (g, (row + 1) as f32 * LEGEND_ROW)
}

fn color(run: usize) -> Color {
    PALETTE[run % PALETTE.len()]
}

fn text(at: (f32, f32), text: String, size: f32, color: Color, anchor: Anchor) -> Node {
    Node::Text {
        at,
        text,
        size,
        color,
        anchor,
    }
}

/// `s`, cut with `…` to fit `max` pixels at `size`.
fn fit(s: &str, size: f32, max: f32) -> String {
    if font::width(s, size) <= max {
        return s.to_string();
    }
    let chars: Vec<char> = s.chars().collect();
    for n in (0..chars.len()).rev() {
        let cut: String = chars[..n].iter().chain(['…'].iter()).collect();
        if font::width(&cut, size) <= max {
            return cut;
        }
    }
    "…".into()
}

/// The layers one run draws in a panel, bottom first.
fn layers<'a>(p: &Panel, r: &'a RunSeries) -> Vec<(&'static str, &'a [Point])> {
    match p.content {
        Content::LearningRate => vec![("lr", &r.lr)],
        Content::Curve(key) => {
            let c: Option<&Curve> = match key {
                None => Some(&r.loss),
                Some(k) => r.metrics.get(k),
            };
            c.map_or_else(Vec::new, |c| {
                vec![
                    ("train", &c.train[..]),
                    ("smoothed", &c.smoothed[..]),
                    ("eval", &c.eval[..]),
                ]
            })
        }
    }
}

/// A panel's value axis: the range drawn and its ticks.
struct YAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    labels: Vec<String>,
    /// The widest label, in pixels.
    label_w: f32,
}

/// The plot area's top and bottom in `cell` (on pixel centres, for crisp lines).
fn plot_rows(cell: Cell) -> (f32, f32) {
    (
        (cell.y + TITLE_H).round() + 0.5,
        (cell.y + cell.h - XAXIS_H).round() + 0.5,
    )
}

/// The value range of every point `p` draws, padded (the learning rate from zero), with
/// ticks for a plot area of `cell`.
fn y_axis(p: &Panel, cell: Cell, runs: &[RunSeries]) -> YAxis {
    let (top, bottom) = plot_rows(cell);
    let (mut lo, mut hi) = runs
        .iter()
        .flat_map(|r| layers(p, r))
        .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let floor_zero = matches!(p.content, Content::LearningRate) && lo >= 0.0;
    if floor_zero {
        lo = 0.0;
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * 0.05
    } else if hi != 0.0 {
        hi.abs() * 0.1
    } else {
        1.0
    };
    (lo, hi) = (if floor_zero { lo } else { lo - pad }, hi + pad);
    let target = (((bottom - top) / 45.0) as usize).clamp(2, 8);
    let (ticks, step) = ticks(lo, hi, target, false);
    let sci = !(1e-2..1e5).contains(&lo.abs().max(hi.abs()));
    let labels: Vec<String> = ticks.iter().map(|v| fmt_tick(*v, step, sci)).collect();
    let label_w = labels
        .iter()
        .map(|l| font::width(l, LABEL_SIZE))
        .fold(0.0, f32::max);
    YAxis {
        lo,
        hi,
        ticks,
        labels,
        label_w,
    }
}

/// One panel in `cell`, its value labels given at least `label_w` pixels (so panels above
/// one another line up).
fn panel(p: &Panel, cell: Cell, runs: &[RunSeries], x_max: f64, label_w: f32) -> Group {
    let mut g = Group::new(Some(format!("panel-{}", p.id)), Some("panel"));
    let (top, bottom) = plot_rows(cell);
    let all: Vec<(usize, &str, &[Point])> = runs
        .iter()
        .enumerate()
        .flat_map(|(i, r)| layers(p, r).into_iter().map(move |(k, pts)| (i, k, pts)))
        .collect();
    let YAxis {
        lo,
        hi,
        ticks: y_ticks,
        labels: y_labels,
        label_w: own_w,
    } = y_axis(p, cell, runs);
    let label_w = own_w.max(label_w);
    let left = (cell.x + label_w + 10.0).round() + 0.5;
    let right = (cell.x + cell.w - 10.0).round() + 0.5;
    let x_target = (((right - left) / 60.0) as usize).clamp(2, 12);
    let (x_ticks, x_step) = ticks(0.0, x_max, x_target, true);

    let px = |x: f64| left + ((x / x_max) as f32) * (right - left);
    let py = |y: f64| bottom - (((y - lo) / (hi - lo)) as f32) * (bottom - top);

    g.push(text(
        (left, cell.y + 15.0),
        p.title.to_string(),
        TITLE_SIZE,
        INK,
        Anchor::Start,
    ));
    let mut grid = Group::new(None, Some("grid"));
    for v in &y_ticks {
        let y = py(*v).round() + 0.5;
        grid.push(Node::Line {
            from: (left, y),
            to: (right, y),
            color: GRID,
            width: 1.0,
        });
    }
    for v in &x_ticks {
        let x = px(*v).round() + 0.5;
        grid.push(Node::Line {
            from: (x, top),
            to: (x, bottom),
            color: GRID,
            width: 1.0,
        });
    }
    grid.push(Node::Rect {
        x: left,
        y: top,
        w: right - left,
        h: bottom - top,
        fill: None,
        stroke: Some((FRAME, 1.0)),
    });
    g.push(Node::Group(grid));

    let mut axis = Group::new(None, Some("axis"));
    for (v, l) in y_ticks.iter().zip(y_labels) {
        axis.push(text(
            (left - 6.0, py(*v) + 4.0),
            l,
            LABEL_SIZE,
            MUTED,
            Anchor::End,
        ));
    }
    for v in &x_ticks {
        axis.push(text(
            (px(*v), bottom + 15.0),
            fmt_tick(*v, x_step, false),
            LABEL_SIZE,
            MUTED,
            Anchor::Middle,
        ));
    }
    axis.push(text(
        ((left + right) / 2.0, bottom + 29.0),
        "step".into(),
        LABEL_SIZE,
        MUTED,
        Anchor::Middle,
    ));
    g.push(Node::Group(axis));

    // Faint raw lines under every bold one, markers on top.
    let budget = 4 * (right - left).max(1.0) as usize;
    for kind in ["train", "lr", "smoothed", "eval"] {
        for (i, _, pts) in all
            .iter()
            .filter(|(_, k, pts)| *k == kind && !pts.is_empty())
        {
            let id = if kind == "lr" {
                format!("lr-{i}")
            } else {
                format!("{}-{kind}-{i}", p.id)
            };
            let class = match kind {
                "train" => "series train",
                "smoothed" => "series smoothed",
                "eval" => "series eval",
                _ => "series lr",
            };
            let mut s = Group::new(Some(id), Some(class));
            s.run = Some(runs[*i].name.clone());
            let mapped = pts.iter().map(|(x, y)| (px(*x), py(*y)));
            if kind == "eval" {
                for center in mapped {
                    s.push(Node::Circle {
                        center,
                        r: MARKER_R,
                        fill: color(*i),
                        stroke: Some((Color::WHITE, 1.0)),
                    });
                }
            } else {
                let mut points = decimate(mapped.collect(), budget);
                if points.len() == 1 {
                    // One step still shows, as a dot.
                    points.push(points[0]);
                }
                let (width, opacity) = match kind {
                    "train" => (RAW_WIDTH, RAW_OPACITY),
                    "smoothed" => (SMOOTH_WIDTH, 1.0),
                    _ => (LR_WIDTH, 1.0),
                };
                s.push(Node::Polyline {
                    points,
                    color: color(*i),
                    width,
                    opacity,
                });
            }
            g.push(Node::Group(s));
        }
    }
    g
}

/// At most about `budget` points: past it, the first, lowest, highest and last point of
/// each pixel column, in order (what a line through all of them would show).
fn decimate(points: Vec<(f32, f32)>, budget: usize) -> Vec<(f32, f32)> {
    if points.len() <= budget {
        return points;
    }
    let mut out = Vec::with_capacity(budget);
    let mut i = 0;
    while i < points.len() {
        let col = points[i].0.floor();
        let mut j = i;
        let (mut lo, mut hi) = (i, i);
        while j < points.len() && points[j].0.floor() == col {
            if points[j].1 < points[lo].1 {
                lo = j;
            }
            if points[j].1 > points[hi].1 {
                hi = j;
            }
            j += 1;
        }
        let mut keep = [i, lo, hi, j - 1];
        keep.sort_unstable();
        let mut last = usize::MAX;
        for k in keep {
            if k != last {
                out.push(points[k]);
                last = k;
            }
        }
        i = j;
    }
    out
}

/// Round tick values inside `[lo, hi]`, about `target` of them, and their spacing.
fn ticks(lo: f64, hi: f64, target: usize, integer: bool) -> (Vec<f64>, f64) {
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let m = raw / mag;
    let nice = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    let mut step = nice * mag;
    if integer {
        step = step.max(1.0);
    }
    let mut out = Vec::new();
    let mut k = (lo / step).ceil();
    while k * step <= hi + step * 1e-9 && out.len() < 100 {
        out.push(k * step);
        k += 1.0;
    }
    (out, step)
}

/// A tick label: as many decimals as the spacing needs, or `1.5e-4` for very small or
/// large ranges.
fn fmt_tick(v: f64, step: f64, sci: bool) -> String {
    if v.abs() < step * 1e-6 {
        return "0".into();
    }
    if sci {
        let exp = |x: f64| x.abs().log10().floor() as i32;
        let p = (exp(v) - exp(step)).max(0) as usize;
        let s = format!("{v:.p$e}");
        return match s.split_once('e') {
            Some((m, e)) if m.contains('.') => {
                format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
            }
            _ => s,
        };
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

/// `0.9`, `0.95`, `0`: a float as short as it reads.
fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_labels_short() {
        let (t, s) = ticks(0.0, 600.0, 6, true);
        assert_eq!(s, 100.0);
        assert_eq!(t, vec![0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0]);
        let (t, s) = ticks(1.93, 7.61, 6, false);
        assert_eq!(s, 1.0);
        let labels: Vec<String> = t.iter().map(|v| fmt_tick(*v, s, false)).collect();
        assert_eq!(labels, ["2", "3", "4", "5", "6", "7"]);
        let (t, s) = ticks(0.0, 2.1e-4, 5, false);
        let labels: Vec<String> = t.iter().map(|v| fmt_tick(*v, s, true)).collect();
        assert_eq!(labels, ["0", "5e-5", "1e-4", "1.5e-4", "2e-4"]);
        let (t, s) = ticks(0.45, 0.72, 6, false);
        let labels: Vec<String> = t.iter().map(|v| fmt_tick(*v, s, false)).collect();
        assert_eq!(labels, ["0.45", "0.50", "0.55", "0.60", "0.65", "0.70"]);
        let (t, s) = ticks(-0.5, 1.0, 3, false);
        let labels: Vec<String> = t.iter().map(|v| fmt_tick(*v, s, false)).collect();
        assert_eq!(labels, ["-0.5", "0", "0.5", "1.0"]);
        assert_eq!(trim_float(0.9), "0.9");
        assert_eq!(trim_float(0.0), "0");
    }

    #[test]
    fn decimation_keeps_each_columns_extremes() {
        let points: Vec<(f32, f32)> = (0..1000)
            .map(|i| (i as f32 / 100.0, if i == 555 { 99.0 } else { 1.0 }))
            .collect();
        let d = decimate(points.clone(), 100);
        assert!(d.len() <= 40, "{}", d.len());
        assert!(d.contains(&(5.55, 99.0)));
        assert_eq!(d.first(), points.first());
        assert_eq!(d.last(), points.last());
        assert_eq!(decimate(points.clone(), 1000), points);
    }

    #[test]
    fn long_names_are_cut_to_fit() {
        let long = "x".repeat(400);
        let cut = fit(&long, 13.0, 200.0);
        assert!(cut.ends_with('…') && font::width(&cut, 13.0) <= 200.0);
        assert_eq!(fit("short", 13.0, 200.0), "short");
    }
}
