//! A scene as SVG text: groups keep their ids, classes and run names, so a figure stays
//! easy to restyle or pick apart; coordinates carry one decimal.

use super::scene::{Group, Node, Scene};
use std::fmt::Write;

/// The SVG document of `scene`; text is set in `family`.
pub fn render(scene: &Scene, family: &str) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = writeln!(
        out,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{f}">
<rect id="background" width="{w}" height="{h}" fill="{bg}"/>"#,
        w = scene.width,
        h = scene.height,
        f = escape(family),
        bg = scene.background.css(),
    );
    for n in &scene.root.children {
        node(&mut out, n);
    }
    out.push_str("</svg>\n");
    out
}

fn group(out: &mut String, g: &Group) {
    out.push_str("<g");
    if let Some(id) = &g.id {
        let _ = write!(out, r#" id="{}""#, escape(id));
    }
    if let Some(c) = g.class {
        let _ = write!(out, r#" class="{c}""#);
    }
    if let Some(r) = &g.run {
        let _ = write!(out, r#" data-run="{}""#, escape(r));
    }
    out.push_str(">\n");
    for n in &g.children {
        node(out, n);
    }
    out.push_str("</g>\n");
}

fn node(out: &mut String, n: &Node) {
    let _ = match n {
        Node::Group(g) => {
            group(out, g);
            Ok(())
        }
        Node::Rect {
            x,
            y,
            w,
            h,
            fill,
            stroke,
        } => {
            let _ = write!(
                out,
                r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}""#,
                num(*x),
                num(*y),
                num(*w),
                num(*h),
                fill.map_or("none".into(), |c| c.css())
            );
            if let Some((c, width)) = stroke {
                let _ = write!(
                    out,
                    r#" stroke="{}" stroke-width="{}""#,
                    c.css(),
                    num(*width)
                );
            }
            writeln!(out, "/>")
        }
        Node::Line {
            from,
            to,
            color,
            width,
        } => writeln!(
            out,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="{}"/>"#,
            num(from.0),
            num(from.1),
            num(to.0),
            num(to.1),
            color.css(),
            num(*width)
        ),
        Node::Polyline {
            points,
            color,
            width,
            opacity,
        } => {
            out.push_str(r#"<polyline points=""#);
            for (i, (x, y)) in points.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{},{}", num(*x), num(*y));
            }
            let _ = write!(
                out,
                r#"" fill="none" stroke="{}" stroke-width="{}" stroke-linejoin="round" stroke-linecap="round""#,
                color.css(),
                num(*width)
            );
            if *opacity < 1.0 {
                let _ = write!(out, r#" stroke-opacity="{}""#, num(*opacity));
            }
            writeln!(out, "/>")
        }
        Node::Circle {
            center,
            r,
            fill,
            stroke,
        } => {
            let _ = write!(
                out,
                r#"<circle cx="{}" cy="{}" r="{}" fill="{}""#,
                num(center.0),
                num(center.1),
                num(*r),
                fill.css()
            );
            if let Some((c, width)) = stroke {
                let _ = write!(
                    out,
                    r#" stroke="{}" stroke-width="{}""#,
                    c.css(),
                    num(*width)
                );
            }
            writeln!(out, "/>")
        }
        Node::Text {
            at,
            text,
            size,
            color,
            anchor,
        } => writeln!(
            out,
            r#"<text x="{}" y="{}" font-size="{}" fill="{}" text-anchor="{}">{}</text>"#,
            num(at.0),
            num(at.1),
            num(*size),
            color.css(),
            anchor.svg(),
            escape(text)
        ),
    };
}

/// A coordinate with at most one decimal, without a trailing `.0`.
fn num(v: f32) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// Text safe inside an element or a double-quoted attribute.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_text_are_written_safely() {
        assert_eq!(num(12.0), "12");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(-0.04), "0");
        assert_eq!(
            escape("a<b & \"c\"\u{1}"),
            "a&lt;b &amp; &quot;c&quot;\u{fffd}"
        );
    }
}
