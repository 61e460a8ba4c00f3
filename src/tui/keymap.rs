//! Key bindings as data: defaults embedded from keys.yaml, overridden by
//! `<config>/keys.yaml`. The help overlay and palette are generated from this table.

use super::action::Action;
use super::tab::Tab;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::BTreeMap;

pub const DEFAULT_KEYS: &str = include_str!("keys.yaml");

/// Scope → key → action.
#[derive(Debug, Clone, Default)]
pub struct Keymap {
    pub scopes: BTreeMap<String, BTreeMap<String, Action>>,
}

type KeysFile = BTreeMap<String, BTreeMap<String, String>>;

impl Keymap {
    /// The defaults plus `overrides` (YAML of the same shape); unknown actions are errors.
    pub fn load(overrides: Option<&str>) -> Result<Keymap, String> {
        let mut km = Keymap::default();
        km.merge(DEFAULT_KEYS, "keys.yaml (built in)")?;
        if let Some(o) = overrides {
            km.merge(o, "keys.yaml")?;
        }
        Ok(km)
    }

    fn merge(&mut self, text: &str, file: &str) -> Result<(), String> {
        let f: KeysFile = serde_yaml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
        for (scope, keys) in f {
            let s = self.scopes.entry(scope.clone()).or_default();
            for (key, action) in keys {
                if parse_key(&key).is_none() {
                    return Err(format!("{file}: {scope}.{key}: not a key name"));
                }
                if action == "none" {
                    s.remove(&key);
                    continue;
                }
                let a = Action::from_name(&action)
                    .ok_or_else(|| format!("{file}: {scope}.{key}: unknown action {action:?}"))?;
                s.insert(key, a);
            }
        }
        Ok(())
    }

    /// The action for `key` on `tab`: the tab's bindings first, then the global ones.
    pub fn action(&self, tab: Tab, key: &KeyEvent) -> Option<Action> {
        let name = key_name(key)?;
        self.scopes
            .get(tab.scope())
            .and_then(|s| s.get(&name))
            .or_else(|| self.scopes.get("global").and_then(|s| s.get(&name)))
            .copied()
    }

    /// (scope, keys, action) for the help overlay and the guide's table, grouped by action.
    pub fn rows(&self) -> Vec<(String, String, Action)> {
        let mut out = Vec::new();
        for (scope, keys) in &self.scopes {
            let mut by_action: BTreeMap<Action, Vec<String>> = BTreeMap::new();
            for (k, a) in keys {
                by_action.entry(*a).or_default().push(k.clone());
            }
            for (a, ks) in by_action {
                out.push((scope.clone(), ks.join(" "), a));
            }
        }
        out
    }

    /// The keys bound to `action` in `tab` or globally, for hints.
    pub fn keys_for(&self, tab: Tab, action: Action) -> Option<String> {
        for scope in [tab.scope(), "global"] {
            if let Some(s) = self.scopes.get(scope) {
                // The shortest key wins: `j` rather than `down`.
                if let Some((k, _)) = s
                    .iter()
                    .filter(|(_, a)| **a == action)
                    .min_by_key(|(k, _)| k.chars().count())
                {
                    return Some(k.clone());
                }
            }
        }
        None
    }

    /// The key table as Markdown (the guide's, docs/src/workbench.md, is generated with this).
    pub fn markdown(&self) -> String {
        let mut s = String::from("| where | keys | action |\n|---|---|---|\n");
        for (scope, keys, a) in self.rows() {
            let keys = keys
                .split(' ')
                .map(|k| format!("`{}`", k.replace('|', "\\|")))
                .collect::<Vec<_>>()
                .join(" ");
            s.push_str(&format!("| {scope} | {keys} | {} |\n", a.describe()));
        }
        s
    }
}

/// Parses a key name (`j`, `ctrl-d`, `pageup`, `?`).
pub fn parse_key(name: &str) -> Option<(KeyCode, KeyModifiers)> {
    let (mods, rest) = match name.strip_prefix("ctrl-") {
        Some(r) => (KeyModifiers::CONTROL, r),
        None => (KeyModifiers::NONE, name),
    };
    let code = match rest {
        "up" => KeyCode::Up,
        "down" => KeyCode::Down,
        "left" => KeyCode::Left,
        "right" => KeyCode::Right,
        "pageup" => KeyCode::PageUp,
        "pagedown" => KeyCode::PageDown,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "enter" => KeyCode::Enter,
        "esc" => KeyCode::Esc,
        "tab" => KeyCode::Tab,
        "backtab" => KeyCode::BackTab,
        "space" => KeyCode::Char(' '),
        "backspace" => KeyCode::Backspace,
        s if s.chars().count() == 1 => KeyCode::Char(s.chars().next()?),
        _ => return None,
    };
    Some((code, mods))
}

/// The name of a key event, as keys.yaml spells it.
pub fn key_name(key: &KeyEvent) -> Option<String> {
    let base = match key.code {
        KeyCode::Up => "up".to_string(),
        KeyCode::Down => "down".into(),
        KeyCode::Left => "left".into(),
        KeyCode::Right => "right".into(),
        KeyCode::PageUp => "pageup".into(),
        KeyCode::PageDown => "pagedown".into(),
        KeyCode::Home => "home".into(),
        KeyCode::End => "end".into(),
        KeyCode::Enter => "enter".into(),
        KeyCode::Esc => "esc".into(),
        KeyCode::Tab => "tab".into(),
        KeyCode::BackTab => "backtab".into(),
        KeyCode::Backspace => "backspace".into(),
        KeyCode::Char(' ') => "space".into(),
        KeyCode::Char(c) => c.to_string(),
        _ => return None,
    };
    Some(if key.modifiers.contains(KeyModifiers::CONTROL) {
        format!("ctrl-{base}")
    } else {
        base
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_overrides_apply() {
        let km = Keymap::load(Some("global:\n  x: quit\n  q: none\n")).unwrap();
        let key = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
        assert_eq!(km.action(Tab::Data, &key('x')), Some(Action::Quit));
        assert_eq!(km.action(Tab::Data, &key('q')), None);
        assert_eq!(km.action(Tab::Data, &key('t')), Some(Action::TokenView));
        assert_eq!(km.action(Tab::Chat, &key('t')), Some(Action::ToggleAdapter));
        let err = Keymap::load(Some("global:\n  x: fly\n")).unwrap_err();
        assert!(err.contains("unknown action \"fly\""), "{err}");
        for a in Action::all() {
            assert_eq!(Action::from_name(a.name()), Some(a));
        }
    }
}
