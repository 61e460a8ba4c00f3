//! A fuzzy finder over a list (models, dataset files): type to filter, ↑/↓ to move, Enter
//! picks the highlighted item, or the typed text itself where that is allowed (a hub id, a
//! path), Esc closes.

use super::text_input::{InputEvent, TextInput};
use crate::tui::theme::Theme;
use fuzzy_matcher::skim::SkimMatcherV2;
use fuzzy_matcher::FuzzyMatcher;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

#[derive(Debug, Clone, PartialEq)]
pub struct PickItem {
    pub label: String,
    /// A second column: size, architecture, why it cannot be used.
    pub detail: String,
    /// What picking it yields.
    pub value: String,
    /// False draws it as unusable (it can still be picked; the owner warns).
    pub ok: bool,
}

/// What a key did.
#[derive(Debug, Clone, PartialEq)]
pub enum Picked {
    /// The highlighted item's value.
    Item(String),
    /// Nothing matched the typed text, which is taken as it is.
    Typed(String),
    Cancel,
    /// Still choosing.
    Pending,
}

pub struct Picker {
    pub title: String,
    /// Shown under the list (what typed text means).
    pub hint: String,
    items: Option<Vec<PickItem>>,
    query: TextInput,
    selected: usize,
    allow_typed: bool,
}

impl Picker {
    /// A picker whose items are still being found (`set_items` fills it).
    pub fn loading(title: impl Into<String>, hint: impl Into<String>, allow_typed: bool) -> Self {
        Picker {
            title: title.into(),
            hint: hint.into(),
            items: None,
            query: TextInput::default(),
            selected: 0,
            allow_typed,
        }
    }

    pub fn set_items(&mut self, items: Vec<PickItem>) {
        self.items = Some(items);
        self.selected = 0;
    }

    pub fn items(&self) -> &[PickItem] {
        self.items.as_deref().unwrap_or_default()
    }

    pub fn query(&self) -> &str {
        self.query.value()
    }

    /// Items matching the query, best first (all of them, in order, for an empty query).
    pub fn matches(&self) -> Vec<&PickItem> {
        let q = self.query.value().trim();
        let items = self.items();
        if q.is_empty() {
            return items.iter().collect();
        }
        let m = SkimMatcherV2::default();
        let mut scored: Vec<(i64, usize)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| {
                m.fuzzy_match(&format!("{} {}", it.label, it.value), q)
                    .map(|s| (s, i))
            })
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|(_, i)| &items[i]).collect()
    }

    pub fn key(&mut self, key: &KeyEvent) -> Picked {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Up => self.selected = self.selected.saturating_sub(1),
            KeyCode::Char('p') if ctrl => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down => self.selected += 1,
            KeyCode::Char('n') if ctrl => self.selected += 1,
            _ => match self.query.handle(key) {
                InputEvent::Cancel => return Picked::Cancel,
                InputEvent::Submit => {
                    let matches = self.matches();
                    if let Some(it) =
                        matches.get(self.selected.min(matches.len().saturating_sub(1)))
                    {
                        return Picked::Item(it.value.clone());
                    }
                    let typed = self.query.value().trim().to_string();
                    if self.allow_typed && !typed.is_empty() {
                        return Picked::Typed(typed);
                    }
                }
                InputEvent::Changed => self.selected = 0,
                _ => {}
            },
        }
        Picked::Pending
    }

    pub fn draw(&self, f: &mut Frame, area: Rect, theme: &Theme) {
        let w = area.width.saturating_sub(4).min(100);
        let h = area.height.saturating_sub(2).min(20);
        let r = Rect {
            x: area.x + (area.width - w) / 2,
            y: area.y + (area.height - h) / 2,
            width: w,
            height: h,
        };
        f.render_widget(Clear, r);
        let mut lines = vec![Line::from(vec![
            Span::styled("› ", theme.accent),
            Span::raw(self.query.display()),
        ])];
        let rows = (h as usize).saturating_sub(4);
        match &self.items {
            None => lines.push(Line::styled("looking…", theme.muted)),
            Some(_) => {
                let matches = self.matches();
                if matches.is_empty() {
                    lines.push(Line::styled(
                        if self.allow_typed && !self.query.value().is_empty() {
                            "no match: Enter takes what you typed"
                        } else {
                            "no match"
                        },
                        theme.muted,
                    ));
                }
                let sel = self.selected.min(matches.len().saturating_sub(1));
                let start = sel.saturating_sub(rows.saturating_sub(1));
                let longest = matches
                    .iter()
                    .map(|m| crate::tui::text::width(&m.label))
                    .max()
                    .unwrap_or(0);
                let label_w = longest.clamp(10, (w as usize * 2 / 5).max(10));
                for (i, it) in matches.iter().enumerate().skip(start).take(rows) {
                    let style = if i == sel {
                        theme.selection
                    } else if it.ok {
                        theme.foreground
                    } else {
                        theme.muted
                    };
                    let label = crate::tui::text::middle(&it.label, label_w);
                    let pad = label_w.saturating_sub(crate::tui::text::width(&label));
                    lines.push(Line::from(vec![
                        Span::styled(
                            format!("{label}{} ", " ".repeat(pad)),
                            style.add_modifier(if i == sel {
                                Modifier::BOLD
                            } else {
                                Modifier::empty()
                            }),
                        ),
                        Span::styled(
                            crate::tui::text::clean(&it.detail).into_owned(),
                            if it.ok { theme.muted } else { theme.error },
                        ),
                    ]));
                }
            }
        }
        lines.push(Line::styled(self.hint.clone(), theme.muted));
        f.render_widget(
            Paragraph::new(lines).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" {} ", self.title))
                    .border_style(theme.accent),
            ),
            r,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(l: &str) -> PickItem {
        PickItem {
            label: l.into(),
            detail: String::new(),
            value: l.into(),
            ok: true,
        }
    }

    fn k(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn filters_fuzzily_and_takes_typed_text() {
        let mut p = Picker::loading("models", "", true);
        p.set_items(vec![
            item("Qwen/Qwen2.5-0.5B-Instruct"),
            item("HuggingFaceTB/SmolLM2-135M-Instruct"),
        ]);
        for c in "smol".chars() {
            p.key(&k(KeyCode::Char(c)));
        }
        assert_eq!(p.matches().len(), 1);
        assert_eq!(
            p.key(&k(KeyCode::Enter)),
            Picked::Item("HuggingFaceTB/SmolLM2-135M-Instruct".into())
        );
        for _ in 0..4 {
            p.key(&k(KeyCode::Backspace));
        }
        for c in "org/zzz".chars() {
            p.key(&k(KeyCode::Char(c)));
        }
        assert_eq!(p.key(&k(KeyCode::Enter)), Picked::Typed("org/zzz".into()));
        assert_eq!(p.key(&k(KeyCode::Esc)), Picked::Cancel);
    }
}
