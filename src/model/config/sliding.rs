//! Sliding-window attention in `config.json`: the window, and which layers use it
//! (`layer_types`, else the family's pattern from `model::family`).

use super::{field_err, Field};
use crate::model::family::Family;
use serde_json::Value;

/// The window and one flag per layer (all false without a window).
pub(super) fn parse(
    v: &Value,
    family: &Family,
    layers: usize,
) -> Field<(Option<usize>, Vec<bool>)> {
    let opt_usize = |k: &str| v.get(k).and_then(Value::as_u64).map(|n| n as usize);
    let use_window = v
        .get("use_sliding_window")
        .and_then(Value::as_bool)
        .unwrap_or(!family.window_opt_in);
    let window = opt_usize("sliding_window").filter(|_| use_window);
    let sliding = match (window, v.get("layer_types")) {
        (None, _) => vec![false; layers],
        (Some(_), Some(types)) => {
            let types = types
                .as_array()
                .filter(|t| t.len() == layers)
                .ok_or_else(|| {
                    field_err(
                        "layer_types",
                        format!("expected a list of {layers} layer types"),
                    )
                })?;
            types
                .iter()
                .enumerate()
                .map(|(i, t)| match t.as_str() {
                    Some("sliding_attention") => Ok(true),
                    Some("full_attention") => Ok(false),
                    _ => Err(field_err(
                        format!("layer_types[{i}]"),
                        "expected \"sliding_attention\" or \"full_attention\"",
                    )),
                })
                .collect::<Field<_>>()?
        }
        (Some(_), None) => family.sliding.layers(layers, opt_usize),
    };
    if window == Some(0) {
        return Err(field_err("sliding_window", "must be at least 1"));
    }
    Ok((window, sliding))
}
