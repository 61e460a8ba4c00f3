//! A scene as pixels, then PNG. Straight edges are filled with exact fractional coverage;
//! strokes, markers and glyphs go through a coverage rasterizer (ab_glyph's), each shape
//! drawn as one union so a faint line stays evenly faint where its segments overlap. The
//! PNG is 8-bit RGB, rows filtered and deflated with flate2.

use super::font;
use super::scene::{Anchor, Color, Group, Node, Scene};
use ab_glyph_rasterizer::{point, Rasterizer};
use std::io::Write;

/// An RGB image.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    /// Row-major RGB bytes.
    pub rgb: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize, bg: Color) -> Self {
        let mut rgb = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            rgb.extend_from_slice(&[bg.0, bg.1, bg.2]);
        }
        Canvas { width, height, rgb }
    }

    fn blend(&mut self, x: i64, y: i64, c: Color, alpha: f32) {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 || alpha <= 0.0 {
            return;
        }
        let a = alpha.min(1.0);
        let i = (y as usize * self.width + x as usize) * 3;
        for (k, v) in [c.0, c.1, c.2].into_iter().enumerate() {
            let d = self.rgb[i + k] as f32;
            self.rgb[i + k] = (d + (v as f32 - d) * a).round() as u8;
        }
    }

    /// Fills `[x0, x1] × [y0, y1]`, edge pixels by the share of them covered.
    fn fill_rect(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, c: Color, alpha: f32) {
        let (x0, x1) = (x0.max(0.0), x1.min(self.width as f32));
        let (y0, y1) = (y0.max(0.0), y1.min(self.height as f32));
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        let cover = |p: f32, a: f32, b: f32| (b.min(p + 1.0) - a.max(p)).max(0.0);
        for py in y0.floor() as i64..y1.ceil() as i64 {
            let cy = cover(py as f32, y0, y1);
            for px in x0.floor() as i64..x1.ceil() as i64 {
                let cx = cover(px as f32, x0, x1);
                self.blend(px, py, c, alpha * cx * cy);
            }
        }
    }

    /// Fills the union of `polygons` (each closed, any orientation).
    fn fill_polygons(&mut self, polygons: &[Vec<(f32, f32)>], c: Color, alpha: f32) {
        let (w, h) = (self.width as f32, self.height as f32);
        let clamp = |(x, y): (f32, f32)| (x.clamp(-4.0, w + 4.0), y.clamp(-4.0, h + 4.0));
        let mut lo = (f32::INFINITY, f32::INFINITY);
        let mut hi = (f32::NEG_INFINITY, f32::NEG_INFINITY);
        for p in polygons.iter().flatten() {
            let (x, y) = clamp(*p);
            lo = (lo.0.min(x), lo.1.min(y));
            hi = (hi.0.max(x), hi.1.max(y));
        }
        if !lo.0.is_finite() || !hi.0.is_finite() {
            return;
        }
        let (ox, oy) = (lo.0.floor() - 1.0, lo.1.floor() - 1.0);
        let bw = (hi.0 - ox).ceil() as usize + 2;
        let bh = (hi.1 - oy).ceil() as usize + 2;
        let mut r = Rasterizer::new(bw, bh);
        for poly in polygons {
            if poly.len() < 3 {
                continue;
            }
            // One orientation for all, so overlaps add up instead of cancelling.
            let area: f32 = (0..poly.len())
                .map(|i| {
                    let (a, b) = (poly[i], poly[(i + 1) % poly.len()]);
                    a.0 * b.1 - b.0 * a.1
                })
                .sum();
            let mut pts: Vec<(f32, f32)> = poly.iter().map(|p| clamp(*p)).collect();
            if area < 0.0 {
                pts.reverse();
            }
            for i in 0..pts.len() {
                let (a, b) = (pts[i], pts[(i + 1) % pts.len()]);
                r.draw_line(point(a.0 - ox, a.1 - oy), point(b.0 - ox, b.1 - oy));
            }
        }
        r.for_each_pixel_2d(|x, y, a| {
            if a > 1e-3 {
                self.blend(
                    x as i64 + ox as i64,
                    y as i64 + oy as i64,
                    c,
                    alpha * a.min(1.0),
                );
            }
        });
    }

    fn text(&mut self, at: (f32, f32), text: &str, size: f32, c: Color, anchor: Anchor) {
        let w = font::width(text, size);
        let x = match anchor {
            Anchor::Start => at.0,
            Anchor::Middle => at.0 - w / 2.0,
            Anchor::End => at.0 - w,
        };
        for g in font::outlines(text, size, (x, at.1)) {
            let b = g.px_bounds();
            let (bx, by) = (b.min.x as i64, b.min.y as i64);
            g.draw(|gx, gy, cov| self.blend(bx + gx as i64, by + gy as i64, c, cov));
        }
    }
}

/// A circle as a polygon fine enough for its size.
fn circle(center: (f32, f32), r: f32) -> Vec<(f32, f32)> {
    let n = ((r * 6.0) as usize).clamp(12, 64);
    (0..n)
        .map(|i| {
            let t = i as f32 / n as f32 * std::f32::consts::TAU;
            (center.0 + r * t.cos(), center.1 + r * t.sin())
        })
        .collect()
}

/// A polyline's stroke: a rectangle per segment and a disc per vertex (round joins, caps).
fn stroke(points: &[(f32, f32)], width: f32) -> Vec<Vec<(f32, f32)>> {
    let hw = width / 2.0;
    let mut out = Vec::with_capacity(points.len() * 2);
    for s in points.windows(2) {
        let (a, b) = (s[0], s[1]);
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len = (dx * dx + dy * dy).sqrt();
        if len < 1e-4 {
            continue;
        }
        let (nx, ny) = (-dy / len * hw, dx / len * hw);
        out.push(vec![
            (a.0 + nx, a.1 + ny),
            (b.0 + nx, b.1 + ny),
            (b.0 - nx, b.1 - ny),
            (a.0 - nx, a.1 - ny),
        ]);
    }
    for p in points {
        out.push(circle(*p, hw));
    }
    out
}

fn draw(c: &mut Canvas, g: &Group) {
    for n in &g.children {
        match n {
            Node::Group(child) => draw(c, child),
            Node::Rect {
                x,
                y,
                w,
                h,
                fill,
                stroke,
            } => {
                if let Some(f) = fill {
                    c.fill_rect(*x, *y, x + w, y + h, *f, 1.0);
                }
                if let Some((col, sw)) = stroke {
                    let s = sw / 2.0;
                    let (x0, y0, x1, y1) = (*x, *y, x + w, y + h);
                    c.fill_rect(x0 - s, y0 - s, x1 + s, y0 + s, *col, 1.0);
                    c.fill_rect(x0 - s, y1 - s, x1 + s, y1 + s, *col, 1.0);
                    c.fill_rect(x0 - s, y0 + s, x0 + s, y1 - s, *col, 1.0);
                    c.fill_rect(x1 - s, y0 + s, x1 + s, y1 - s, *col, 1.0);
                }
            }
            Node::Line {
                from,
                to,
                color,
                width,
            } => {
                let s = width / 2.0;
                if from.1 == to.1 {
                    let (x0, x1) = (from.0.min(to.0), from.0.max(to.0));
                    c.fill_rect(x0, from.1 - s, x1, from.1 + s, *color, 1.0);
                } else if from.0 == to.0 {
                    let (y0, y1) = (from.1.min(to.1), from.1.max(to.1));
                    c.fill_rect(from.0 - s, y0, from.0 + s, y1, *color, 1.0);
                } else {
                    c.fill_polygons(&stroke(&[*from, *to], *width), *color, 1.0);
                }
            }
            Node::Polyline {
                points,
                color,
                width,
                opacity,
            } => c.fill_polygons(&stroke(points, *width), *color, *opacity),
            Node::Circle {
                center,
                r,
                fill,
                stroke,
            } => {
                let inner = match stroke {
                    Some((col, sw)) => {
                        c.fill_polygons(&[circle(*center, r + sw / 2.0)], *col, 1.0);
                        r - sw / 2.0
                    }
                    None => *r,
                };
                c.fill_polygons(&[circle(*center, inner)], *fill, 1.0);
            }
            Node::Text {
                at,
                text,
                size,
                color,
                anchor,
            } => c.text(*at, text, *size, *color, *anchor),
        }
    }
}

/// The scene's pixels.
pub fn rasterize(scene: &Scene) -> Canvas {
    let mut c = Canvas::new(
        scene.width as usize,
        scene.height as usize,
        scene.background,
    );
    draw(&mut c, &scene.root);
    c
}

/// The canvas as a PNG file (8-bit RGB; each row takes the filter, of none, sub and up,
/// that leaves the smallest sum, as libpng's heuristic).
pub fn encode_png(c: &Canvas) -> Vec<u8> {
    let stride = c.width * 3;
    let mut filtered = Vec::with_capacity((stride + 1) * c.height);
    let zero = vec![0u8; stride];
    let mut candidates = [vec![0u8; stride], vec![0u8; stride], vec![0u8; stride]];
    for y in 0..c.height {
        let row = &c.rgb[y * stride..(y + 1) * stride];
        let prev = if y == 0 {
            &zero[..]
        } else {
            &c.rgb[(y - 1) * stride..y * stride]
        };
        for i in 0..stride {
            let left = if i >= 3 { row[i - 3] } else { 0 };
            candidates[0][i] = row[i];
            candidates[1][i] = row[i].wrapping_sub(left);
            candidates[2][i] = row[i].wrapping_sub(prev[i]);
        }
        let cost = |v: &[u8]| {
            v.iter()
                .map(|b| (*b as i8).unsigned_abs() as u64)
                .sum::<u64>()
        };
        let best = (0..3).min_by_key(|k| cost(&candidates[*k])).unwrap_or(0);
        filtered.push(best as u8); // 0 none, 1 sub, 2 up
        filtered.extend_from_slice(&candidates[best]);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&filtered).expect("writing to memory");
    let idat = z.finish().expect("writing to memory");

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(c.width as u32).to_be_bytes());
    ihdr.extend_from_slice(&(c.height as u32).to_be_bytes());
    // 8 bits per channel, truecolour, deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(children: Vec<Node>) -> Scene {
        Scene {
            width: 40,
            height: 20,
            background: Color::WHITE,
            root: Group {
                children,
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_faint_stroke_is_evenly_faint_where_segments_meet() {
        let s = scene(vec![Node::Polyline {
            points: vec![(2.0, 10.5), (20.0, 10.5), (38.0, 10.5)],
            color: Color(0, 0, 0),
            width: 1.0,
            opacity: 0.5,
        }]);
        let c = rasterize(&s);
        let at = |x: usize, y: usize| c.rgb[(y * c.width + x) * 3];
        // The joint at x=20 is no darker than the rest of the line.
        assert_eq!(at(20, 10), at(10, 10));
        assert!((at(10, 10) as i32 - 128).abs() <= 2, "{}", at(10, 10));
        assert_eq!(at(10, 2), 255);
    }

    #[test]
    fn crisp_lines_and_rects_cover_whole_pixels() {
        let s = scene(vec![
            Node::Line {
                from: (0.0, 5.5),
                to: (40.0, 5.5),
                color: Color(0, 0, 0),
                width: 1.0,
            },
            Node::Rect {
                x: 10.0,
                y: 10.0,
                w: 5.0,
                h: 5.0,
                fill: Some(Color(255, 0, 0)),
                stroke: None,
            },
        ]);
        let c = rasterize(&s);
        let px = |x: usize, y: usize| &c.rgb[(y * c.width + x) * 3..(y * c.width + x) * 3 + 3];
        assert_eq!(px(3, 5), [0, 0, 0]);
        assert_eq!(px(3, 4), [255, 255, 255]);
        assert_eq!(px(12, 12), [255, 0, 0]);
        assert_eq!(px(15, 12), [255, 255, 255]);
    }

    #[test]
    fn png_chunks_carry_their_crc() {
        let png = encode_png(&rasterize(&scene(vec![])));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        // IHDR's CRC as libpng computes it for a 40×20 RGB image.
        let mut crc = flate2::Crc::new();
        crc.update(&png[12..29]);
        assert_eq!(png[29..33], crc.sum().to_be_bytes());
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
    }
}
