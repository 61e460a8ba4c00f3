//! YAML as the Python tools read it (PyYAML's `safe_load`, YAML 1.1): block style, strings
//! quoted whenever 1.1 would read them as something else (`no`, `on`, `1e-5`, `~`), floats
//! in plain decimal (PyYAML reads `1e-5` as a string). serde_yaml writes YAML 1.2, where
//! `no` is a string; accelerate would read `mixed_precision: no` as `false`.

use serde_json::Value;

/// `v` (an object) as a YAML document.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    block(v, 0, &mut out);
    out
}

fn block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.push_str(&format!("{pad}{}:", scalar_str(k)));
                nested(x, indent, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                match x {
                    Value::Object(m) if !m.is_empty() => {
                        // `- first: …` then the other keys under it.
                        let mut inner = String::new();
                        block(x, indent + 2, &mut inner);
                        out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
                    }
                    _ => {
                        out.push_str(&format!("{pad}-"));
                        nested(x, indent, out);
                    }
                }
            }
        }
        x => out.push_str(&format!("{pad}{}\n", scalar(x))),
    }
}

/// After `key:` or `-`: a scalar on the same line, a collection on the next ones.
fn nested(x: &Value, indent: usize, out: &mut String) {
    match x {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            block(x, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            block(x, indent, out);
        }
        _ => out.push_str(&format!(" {}\n", scalar(x))),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.is_finite() => {
                let s = format!("{f}");
                if s.contains('.') {
                    s
                } else {
                    format!("{s}.0")
                }
            }
            _ => ".nan".into(),
        },
        Value::String(s) => scalar_str(s),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => unreachable!("non-empty lists are written as blocks"),
    }
}

/// A string plain when YAML 1.1 reads it back as the same string, else double-quoted
/// (a JSON string is a valid YAML double-quoted scalar).
fn scalar_str(s: &str) -> String {
    const SPECIAL: &[&str] = &[
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
    ];
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-+@%,() ".contains(c))
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || "_./".contains(c))
        && !s.ends_with(' ')
        && !SPECIAL.contains(&s.to_ascii_lowercase().as_str())
        && s.parse::<f64>().is_err();
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_reads_back_what_was_meant() {
        let v = json!({
            "mixed_precision": "no",
            "lr": 0.00002,
            "steps": 600,
            "ratio": 0.03,
            "whole": 2.0,
            "name": "Qwen/Qwen3-0.6B",
            "path": "./output",
            "flag": true,
            "empty": [],
            "list": ["q_proj", "v_proj"],
            "datasets": [{"path": "data/train.jsonl", "roles": ["assistant"], "map": {"role": "role"}}],
            "nested": {"a": 1, "b": "on"},
            "text": "a: b",
        });
        assert_eq!(
            to_string(&v),
            "mixed_precision: \"no\"\nlr: 0.00002\nsteps: 600\nratio: 0.03\nwhole: 2.0\nname: Qwen/Qwen3-0.6B\npath: ./output\nflag: true\nempty: []\nlist:\n- q_proj\n- v_proj\ndatasets:\n- path: data/train.jsonl\n  roles:\n  - assistant\n  map:\n    role: role\nnested:\n  a: 1\n  b: \"on\"\ntext: \"a: b\"\n"
        );
        // serde_yaml (YAML 1.2) reads it back to the same values.
        let back: Value = serde_yaml::from_str(&to_string(&v)).unwrap();
        assert_eq!(back, v);
    }
}
