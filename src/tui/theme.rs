//! Themes from `themes/*.yaml` (embedded): colours named by meaning, mapped down to 256 or
//! 16 colours when the terminal lacks truecolor (ssh does not forward COLORTERM), and the
//! monochrome theme under NO_COLOR.

use ratatui::style::{Color, Modifier, Style};
use std::collections::BTreeMap;

pub const THEMES: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.yaml")),
    ("light", include_str!("../../themes/light.yaml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.yaml"),
    ),
    ("mono", include_str!("../../themes/mono.yaml")),
];

/// How many colours the terminal shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    TrueColor,
    Ansi256,
    Ansi16,
}

impl Depth {
    /// From COLORTERM and TERM, as terminals advertise it.
    pub fn detect() -> Depth {
        let ct = std::env::var("COLORTERM").unwrap_or_default();
        if ct.contains("truecolor") || ct.contains("24bit") {
            return Depth::TrueColor;
        }
        let term = std::env::var("TERM").unwrap_or_default();
        if term.contains("256color") {
            Depth::Ansi256
        } else {
            Depth::Ansi16
        }
    }
}

/// Declares the meanings a theme colours, once: the file's colour table (every meaning
/// required, no unknown ones) and the resolved [`Theme`] with one style field per meaning,
/// so a misspelt meaning fails to compile instead of drawing unstyled.
macro_rules! meanings {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Colors {
            $($name: String,)*
        }

        /// A resolved theme: a style per meaning.
        #[derive(Debug, Clone, Default)]
        pub struct Theme {
            pub name: String,
            $($(#[$doc])* pub $name: Style,)*
        }

        impl Theme {
            /// The meanings, as theme files name them.
            pub const MEANINGS: &'static [&'static str] = &[$(stringify!($name)),*];

            fn from_colors(name: String, c: &Colors, depth: Depth) -> Theme {
                Theme {
                    name,
                    $($name: Style::default().fg(parse_color(&c.$name, depth)),)*
                }
            }

            fn style_mut(&mut self, meaning: &str) -> Option<&mut Style> {
                match meaning {
                    $(stringify!($name) => Some(&mut self.$name),)*
                    _ => None,
                }
            }
        }
    };
}

meanings! {
    /// The screen's background (a background colour, not a foreground).
    background,
    foreground,
    muted,
    border,
    border_focused,
    title,
    /// The selected row (a background colour).
    selection,
    accent,
    user,
    assistant,
    system,
    tool,
    trained_token,
    masked_token,
    chosen,
    rejected,
    loss_train,
    loss_smoothed,
    loss_eval,
    gauge_ok,
    gauge_warn,
    gauge_high,
    info,
    warning,
    error,
    success,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: String,
    colors: Colors,
    #[serde(default)]
    modifiers: BTreeMap<String, Vec<String>>,
}

fn parse_color(c: &str, depth: Depth) -> Color {
    let named = match c {
        "reset" => Some(Color::Reset),
        "black" => Some(Color::Black),
        "red" => Some(Color::Red),
        "green" => Some(Color::Green),
        "yellow" => Some(Color::Yellow),
        "blue" => Some(Color::Blue),
        "magenta" => Some(Color::Magenta),
        "cyan" => Some(Color::Cyan),
        "gray" => Some(Color::Gray),
        "white" => Some(Color::White),
        _ => None,
    };
    if let Some(n) = named {
        return n;
    }
    let hex = c.trim_start_matches('#');
    let v = u32::from_str_radix(hex, 16).unwrap_or(0xffffff);
    let (r, g, b) = ((v >> 16) as u8, (v >> 8) as u8, v as u8);
    match depth {
        Depth::TrueColor => Color::Rgb(r, g, b),
        Depth::Ansi256 => Color::Indexed(to_256(r, g, b)),
        Depth::Ansi16 => to_16(r, g, b),
    }
}

/// The nearest xterm-256 colour (6×6×6 cube or grey ramp).
pub fn to_256(r: u8, g: u8, b: u8) -> u8 {
    let q = |v: u8| -> u8 {
        if v < 48 {
            0
        } else if v < 115 {
            1
        } else {
            (v - 35) / 40
        }
    };
    let (qr, qg, qb) = (q(r), q(g), q(b));
    let level = |q: u8| if q == 0 { 0 } else { 55 + 40 * q as i32 };
    let cube = 16 + 36 * qr + 6 * qg + qb;
    let cube_err = (level(qr) - r as i32).pow(2)
        + (level(qg) - g as i32).pow(2)
        + (level(qb) - b as i32).pow(2);
    let avg = (r as i32 + g as i32 + b as i32) / 3;
    let grey_idx = ((avg - 8).max(0) / 10).min(23);
    let grey = 8 + 10 * grey_idx;
    let grey_err = (grey - r as i32).pow(2) + (grey - g as i32).pow(2) + (grey - b as i32).pow(2);
    if grey_err < cube_err {
        232 + grey_idx as u8
    } else {
        cube
    }
}

/// The nearest of the 16 base colours.
pub fn to_16(r: u8, g: u8, b: u8) -> Color {
    const BASE: [(Color, (i32, i32, i32)); 16] = [
        (Color::Black, (0, 0, 0)),
        (Color::Red, (205, 0, 0)),
        (Color::Green, (0, 205, 0)),
        (Color::Yellow, (205, 205, 0)),
        (Color::Blue, (0, 0, 238)),
        (Color::Magenta, (205, 0, 205)),
        (Color::Cyan, (0, 205, 205)),
        (Color::Gray, (229, 229, 229)),
        (Color::DarkGray, (127, 127, 127)),
        (Color::LightRed, (255, 0, 0)),
        (Color::LightGreen, (0, 255, 0)),
        (Color::LightYellow, (255, 255, 0)),
        (Color::LightBlue, (92, 92, 255)),
        (Color::LightMagenta, (255, 0, 255)),
        (Color::LightCyan, (0, 255, 255)),
        (Color::White, (255, 255, 255)),
    ];
    let (r, g, b) = (r as i32, g as i32, b as i32);
    BASE.iter()
        .min_by_key(|(_, (x, y, z))| (x - r).pow(2) + (y - g).pow(2) + (z - b).pow(2))
        .map_or(Color::Reset, |(c, _)| *c)
}

impl Theme {
    /// A built-in theme by name.
    pub fn builtin(name: &str, depth: Depth) -> Option<Theme> {
        THEMES
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, text)| Theme::parse(text, depth).ok())
    }

    pub fn parse(text: &str, depth: Depth) -> Result<Theme, String> {
        let f: ThemeFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let mut t = Theme::from_colors(f.name, &f.colors, depth);
        // Two meanings colour the background rather than the text.
        t.background = Style::default().bg(parse_color(&f.colors.background, depth));
        t.selection = Style::default().bg(parse_color(&f.colors.selection, depth));
        for (meaning, mods) in &f.modifiers {
            let style = t
                .style_mut(meaning)
                .ok_or_else(|| format!("modifiers: unknown meaning {meaning:?}"))?;
            for m in mods {
                *style = style.add_modifier(match m.as_str() {
                    "bold" => Modifier::BOLD,
                    "italic" => Modifier::ITALIC,
                    "underlined" => Modifier::UNDERLINED,
                    "reversed" => Modifier::REVERSED,
                    "dim" => Modifier::DIM,
                    "crossed_out" => Modifier::CROSSED_OUT,
                    other => {
                        return Err(format!("modifiers.{meaning}: unknown modifier {other:?}"))
                    }
                });
            }
        }
        Ok(t)
    }

    /// The theme to use: `requested`, else `mono` under NO_COLOR, else `dark`.
    pub fn choose(requested: Option<&str>) -> Theme {
        let depth = Depth::detect();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let name = requested.unwrap_or(if no_color { "mono" } else { "dark" });
        Theme::builtin(name, depth)
            .or_else(|| Theme::builtin("dark", depth))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_colours_fall_back_by_depth() {
        assert_eq!(
            parse_color("#ff5555", Depth::TrueColor),
            Color::Rgb(255, 85, 85)
        );
        assert_eq!(parse_color("#000000", Depth::Ansi256), Color::Indexed(16));
        assert_eq!(parse_color("#ffffff", Depth::Ansi256), Color::Indexed(231));
        assert_eq!(parse_color("#ff0000", Depth::Ansi16), Color::LightRed);
        for (name, _) in THEMES {
            for d in [Depth::TrueColor, Depth::Ansi256, Depth::Ansi16] {
                assert!(Theme::builtin(name, d).is_some(), "{name}");
            }
        }
    }
}
