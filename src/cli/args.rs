//! Range checks for numeric arguments, so a value out of range gets an error that says
//! what range is allowed (negative numbers parse as numbers, not as flags).

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))
}

pub fn non_negative(s: &str) -> Result<f64, String> {
    match number::<f64>(s)? {
        x if x >= 0.0 && x.is_finite() => Ok(x),
        x => Err(format!("must be at least 0 (got {x})")),
    }
}

pub fn positive(s: &str) -> Result<f64, String> {
    match number::<f64>(s)? {
        x if x > 0.0 && x.is_finite() => Ok(x),
        x => Err(format!("must be above 0 (got {x})")),
    }
}

pub fn probability(s: &str) -> Result<f64, String> {
    match number::<f64>(s)? {
        x if x > 0.0 && x <= 1.0 => Ok(x),
        x => Err(format!("must be above 0 and at most 1 (got {x})")),
    }
}

pub fn at_least_one(s: &str) -> Result<usize, String> {
    match number::<i64>(s)? {
        n if n >= 1 => Ok(n as usize),
        n => Err(format!("must be at least 1 (got {n})")),
    }
}
