//! The points a sweep tries: a grid (every combination of the values given per field, the
//! first field varying slowest) or a random search (N points drawn from ranges, uniform or
//! log-uniform, reproducible from a seed). A point is a list of `PATH=VALUE` overrides, the
//! values YAML text as `--set` reads them.

use super::error::SweepError;

/// One field of a grid and the values it takes (YAML text each).
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub path: String,
    pub values: Vec<String>,
}

/// A range a random search draws one field from.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub path: String,
    pub lo: f64,
    pub hi: f64,
    /// Log-uniform (learning rates), else uniform.
    pub log: bool,
    /// Both ends were written as whole numbers: draws are rounded (`lora.r=4:64`).
    pub integer: bool,
}

/// What a sweep explores.
#[derive(Debug, Clone, PartialEq)]
pub enum Space {
    Grid(Vec<Axis>),
    Random {
        n: usize,
        ranges: Vec<Range>,
        seed: u64,
    },
}

/// One point: `(path, YAML value)` overrides in the order the fields were given.
pub type Point = Vec<(String, String)>;

/// Splits `a,b,[c, d]` at the commas outside brackets and braces, so a list value stays one.
fn split_values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut cur) = (0i32, String::new());
    for c in text.chars() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur).trim().to_string());
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur.trim().to_string());
    out
}

/// `PATH=REST` with a non-empty path.
fn path_and_rest(spec: &str) -> Option<(String, &str)> {
    let (path, rest) = spec.split_once('=')?;
    let path = path.trim();
    (!path.is_empty() && !path.contains(char::is_whitespace)).then(|| (path.to_string(), rest))
}

impl Axis {
    /// `lora.r=8,16,32`.
    pub fn parse(spec: &str) -> Result<Axis, SweepError> {
        let bad = |why: &str| SweepError::Grid {
            spec: spec.to_string(),
            why: why.to_string(),
        };
        let (path, rest) = path_and_rest(spec).ok_or_else(|| bad("no PATH="))?;
        let values = split_values(rest);
        if values.iter().any(String::is_empty) {
            return Err(bad("an empty value"));
        }
        if values.len() < 2 {
            return Err(bad("give at least two values (one value is a --set)"));
        }
        Ok(Axis { path, values })
    }
}

impl Range {
    /// `train.lr=1e-5:1e-3:log`, `lora.r=4:64`.
    pub fn parse(spec: &str) -> Result<Range, SweepError> {
        let bad = |why: String| SweepError::Range {
            spec: spec.to_string(),
            why,
        };
        let (path, rest) = path_and_rest(spec).ok_or_else(|| bad("no PATH=".into()))?;
        let parts: Vec<&str> = rest.split(':').map(str::trim).collect();
        let log = match parts.as_slice() {
            [_, _] => false,
            [_, _, "log"] => true,
            [_, _, other] => return Err(bad(format!("{other:?} is not `log`"))),
            _ => return Err(bad("expected LO:HI".into())),
        };
        let num = |s: &str| -> Result<f64, SweepError> {
            s.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(format!("{s:?} is not a number")))
        };
        let (lo, hi) = (num(parts[0])?, num(parts[1])?);
        if lo >= hi {
            return Err(bad(format!("LO ({lo}) must be below HI ({hi})")));
        }
        if log && lo <= 0.0 {
            return Err(bad("a log range must be above 0".into()));
        }
        let integer = parts[..2].iter().all(|s| s.parse::<i64>().is_ok());
        Ok(Range {
            path,
            lo,
            hi,
            log,
            integer,
        })
    }

    /// The value at `u` in [0, 1), as YAML text.
    fn value(&self, u: f64) -> String {
        let x = if self.log {
            (self.lo.ln() + u * (self.hi.ln() - self.lo.ln())).exp()
        } else {
            self.lo + u * (self.hi - self.lo)
        };
        if self.integer {
            return format!("{}", x.round().clamp(self.lo, self.hi) as i64);
        }
        // Four significant digits: a value a person can read and type back (Rust writes
        // floats without an exponent, which YAML reads as a number).
        let short: f64 = format!("{x:.3e}").parse().unwrap_or(x);
        format!("{short}")
    }
}

/// SplitMix64: a tiny generator whose sequence is fixed forever, so a seed names the same
/// points in every tunelab version (the `rand` crate's generators may change).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Space {
    /// Every field the space sets, in order; a field given twice is refused.
    pub fn paths(&self) -> Result<Vec<String>, SweepError> {
        let paths: Vec<String> = match self {
            Space::Grid(axes) => axes.iter().map(|a| a.path.clone()).collect(),
            Space::Random { ranges, .. } => ranges.iter().map(|r| r.path.clone()).collect(),
        };
        if paths.is_empty() {
            return Err(SweepError::Empty);
        }
        for (i, p) in paths.iter().enumerate() {
            if paths[..i].contains(p) {
                return Err(SweepError::Repeated { path: p.clone() });
            }
        }
        Ok(paths)
    }

    /// The points, in the order they are queued.
    pub fn points(&self) -> Vec<Point> {
        match self {
            Space::Grid(axes) => {
                let mut points: Vec<Point> = vec![Vec::new()];
                for axis in axes {
                    points = points
                        .into_iter()
                        .flat_map(|p| {
                            axis.values.iter().map(move |v| {
                                let mut q = p.clone();
                                q.push((axis.path.clone(), v.clone()));
                                q
                            })
                        })
                        .collect();
                }
                points
            }
            Space::Random { n, ranges, seed } => {
                let mut rng = SplitMix(*seed);
                (0..*n)
                    .map(|_| {
                        ranges
                            .iter()
                            .map(|r| (r.path.clone(), r.value(rng.unit())))
                            .collect()
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_is_every_combination_first_field_slowest() {
        let g = Space::Grid(vec![
            Axis::parse("lora.r=8,16").unwrap(),
            Axis::parse("train.lr=0.01, 0.001").unwrap(),
        ]);
        let text: Vec<String> = g
            .points()
            .iter()
            .map(|p| {
                p.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(
            text,
            [
                "lora.r=8 train.lr=0.01",
                "lora.r=8 train.lr=0.001",
                "lora.r=16 train.lr=0.01",
                "lora.r=16 train.lr=0.001"
            ]
        );
    }

    #[test]
    fn list_values_keep_their_commas() {
        let a = Axis::parse("lora.target_modules=[q_proj, v_proj],[all-linear]").unwrap();
        assert_eq!(a.values, ["[q_proj, v_proj]", "[all-linear]"]);
    }

    #[test]
    fn bad_specs_say_what_was_expected() {
        for (spec, part) in [
            ("lora.r", "no PATH="),
            ("lora.r=8", "at least two"),
            ("lora.r=8,,16", "empty value"),
        ] {
            let e = Axis::parse(spec).unwrap_err().to_string();
            assert!(e.contains(part) && e.contains("PATH=V1,V2"), "{e}");
        }
        for (spec, part) in [
            ("train.lr=1:0", "must be below"),
            ("train.lr=0:1:log", "above 0"),
            ("train.lr=a:1", "not a number"),
            ("train.lr=1:2:ln", "not `log`"),
        ] {
            let e = Range::parse(spec).unwrap_err().to_string();
            assert!(e.contains(part), "{e}");
        }
    }

    #[test]
    fn random_points_are_reproducible_and_in_range() {
        let space = |seed| Space::Random {
            n: 50,
            ranges: vec![
                Range::parse("train.lr=1e-5:1e-2:log").unwrap(),
                Range::parse("lora.r=4:64").unwrap(),
            ],
            seed,
        };
        let (a, b, c) = (space(7).points(), space(7).points(), space(8).points());
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut below_1e3 = 0;
        for p in &a {
            let lr: f64 = serde_yaml::from_str(&p[0].1).unwrap();
            assert!((1e-5..=1e-2).contains(&lr), "{lr}");
            below_1e3 += usize::from(lr < 1e-3);
            let r: i64 = p[1].1.parse().unwrap();
            assert!((4..=64).contains(&r), "{r}");
        }
        // Log-uniform: two of the three decades lie below 1e-3.
        assert!((20..=45).contains(&below_1e3), "{below_1e3}");
    }

    #[test]
    fn a_field_given_twice_is_refused() {
        let g = Space::Grid(vec![
            Axis::parse("lora.r=8,16").unwrap(),
            Axis::parse("lora.r=4,2").unwrap(),
        ]);
        assert!(matches!(g.paths(), Err(SweepError::Repeated { .. })));
    }
}
