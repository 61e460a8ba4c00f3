//! What a figure is made of, before it becomes SVG or pixels: a tree of groups (with the
//! ids and classes the SVG keeps) holding rectangles, lines, polylines, markers and text in
//! pixel coordinates, y down.

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Color(pub u8, pub u8, pub u8);

impl Color {
    pub const WHITE: Color = Color(255, 255, 255);

    pub const fn hex(rgb: u32) -> Color {
        Color((rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8)
    }

    /// `#rrggbb`.
    pub fn css(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// Where a text's x lies: its start, middle or end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    pub fn svg(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Group(Group),
    /// A filled rectangle, optionally outlined.
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Option<Color>,
        stroke: Option<(Color, f32)>,
    },
    /// A straight line, horizontal or vertical (grid, axes, ticks, legend swatches).
    Line {
        from: (f32, f32),
        to: (f32, f32),
        color: Color,
        width: f32,
    },
    /// A stroked polyline with round joins and caps.
    Polyline {
        points: Vec<(f32, f32)>,
        color: Color,
        width: f32,
        opacity: f32,
    },
    /// A filled circle with an optional outline.
    Circle {
        center: (f32, f32),
        r: f32,
        fill: Color,
        stroke: Option<(Color, f32)>,
    },
    /// One line of text; `at` is the start, middle or end of its baseline.
    Text {
        at: (f32, f32),
        text: String,
        size: f32,
        color: Color,
        anchor: Anchor,
    },
}

/// A group of nodes: an SVG `<g>` with its id, class and the run it draws.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    pub id: Option<String>,
    pub class: Option<&'static str>,
    /// The run's name (`data-run`), on groups that draw one run.
    pub run: Option<String>,
    pub children: Vec<Node>,
}

impl Group {
    pub fn new(id: Option<String>, class: Option<&'static str>) -> Self {
        Group {
            id,
            class,
            run: None,
            children: Vec::new(),
        }
    }

    pub fn push(&mut self, n: Node) {
        self.children.push(n);
    }
}

/// A whole figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub width: u32,
    pub height: u32,
    pub background: Color,
    pub root: Group,
}
