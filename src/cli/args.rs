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

/// `KEY=VALUE` for the chat template (`enable_thinking=false`): VALUE is JSON when it
/// parses, else a string; names `apply_chat_template` fills itself are refused.
pub fn template_kwarg(s: &str) -> Result<(String, serde_json::Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, found {s:?}"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("expected KEY=VALUE, found {s:?}"));
    }
    if tunelab::template::chat_template::RESERVED_KWARGS.contains(&k) {
        return Err(format!("{k} is set by tunelab itself"));
    }
    let v = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
    Ok((k.to_string(), v))
}
