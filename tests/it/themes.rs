//! Every theme in themes/ parses, names the same meanings as the default, and uses valid colours.

use std::collections::BTreeMap;

#[derive(serde::Deserialize)]
struct Theme {
    name: String,
    colors: BTreeMap<String, String>,
    #[serde(default)]
    modifiers: BTreeMap<String, Vec<String>>,
}

fn valid_color(c: &str) -> bool {
    let named = [
        "reset", "black", "red", "green", "yellow", "blue", "magenta", "cyan", "gray", "white",
    ];
    named.contains(&c)
        || (c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|h| h.is_ascii_hexdigit()))
}

#[test]
fn themes_are_complete_and_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("themes");
    let load = |f: &str| -> Theme {
        serde_yaml::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap()
    };
    let base = load("dark.yaml");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let t = load(&file);
        assert_eq!(format!("{}.yaml", t.name), file);
        let names: Vec<&String> = t.colors.keys().collect();
        assert_eq!(
            names,
            base.colors.keys().collect::<Vec<_>>(),
            "{file}: same meanings as dark.yaml"
        );
        for (k, c) in &t.colors {
            assert!(valid_color(c), "{file}: {k}: {c:?} is not a colour");
        }
        for (k, mods) in &t.modifiers {
            assert!(
                t.colors.contains_key(k),
                "{file}: modifier for unknown meaning {k}"
            );
            for m in mods {
                assert!(
                    [
                        "bold",
                        "dim",
                        "italic",
                        "underlined",
                        "reversed",
                        "crossed_out"
                    ]
                    .contains(&m.as_str()),
                    "{file}: {m}"
                );
            }
        }
        seen += 1;
    }
    assert_eq!(seen, 4);
}
