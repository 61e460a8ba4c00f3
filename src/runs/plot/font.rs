//! The one font figures use, embedded so that drawing text needs no system font: Noto Sans
//! Regular, subset to Latin, Greek and a few signs (assets/fonts, SIL OFL 1.1). Layout
//! measures text with it for SVG and PNG alike; PNG draws its glyphs.

use ab_glyph::{Font, FontRef, OutlinedGlyph, PxScale, ScaleFont};
use std::sync::OnceLock;

static FONT_FILE: &[u8] = include_bytes!("../../../assets/fonts/NotoSans-Regular-subset.ttf");

/// The SVG `font-family`: the embedded font's family first, then look-alikes.
pub const FAMILY: &str = "'Noto Sans', 'DejaVu Sans', Arial, Helvetica, sans-serif";

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_FILE).expect("the embedded font parses"))
}

/// ab_glyph's scale for a CSS font size (pixels per em).
fn scale(size: f32) -> PxScale {
    let f = font();
    let em = f.units_per_em().unwrap_or(1000.0);
    PxScale::from(size * f.height_unscaled() / em)
}

/// The advance width of `text` at `size` pixels per em.
pub fn width(text: &str, size: f32) -> f32 {
    let f = font().as_scaled(scale(size));
    let mut w = 0.0;
    let mut prev = None;
    for c in text.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            w += f.kern(p, id);
        }
        w += f.h_advance(id);
        prev = Some(id);
    }
    w
}

/// The outlines of `text` at `size` with its baseline starting at `origin`.
pub fn outlines(text: &str, size: f32, origin: (f32, f32)) -> Vec<OutlinedGlyph> {
    let f = font().as_scaled(scale(size));
    let mut x = origin.0;
    let mut prev = None;
    let mut out = Vec::new();
    for c in text.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            x += f.kern(p, id);
        }
        let glyph = id.with_scale_and_position(scale(size), ab_glyph::point(x, origin.1));
        if let Some(o) = font().outline_glyph(glyph) {
            out.push(o);
        }
        x += f.h_advance(id);
        prev = Some(id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_font_measures_and_draws() {
        let w = width("loss", 13.0);
        assert!(w > 15.0 && w < 40.0, "{w}");
        assert!((width("loss loss", 13.0) - 2.0 * w - width(" ", 13.0)).abs() < 0.5);
        // Every printable ASCII character has a glyph (not .notdef).
        for c in (' '..='~').chain(['β', '·', '…', '–', '×']) {
            assert_ne!(font().glyph_id(c).0, 0, "{c:?}");
        }
        let g = outlines("Ag", 20.0, (0.0, 20.0));
        assert_eq!(g.len(), 2);
        assert!(g[0].px_bounds().max.y <= 21.0 && g[0].px_bounds().min.y >= 4.0);
    }
}
