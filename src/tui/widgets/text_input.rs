//! The one text field of the workbench: search, chat messages, the system prompt and the
//! Adapter form's values all edit through it. Cursor movement by character (UTF-8 safe),
//! word deletion and line editing keys as in a shell.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextInput {
    value: String,
    /// Cursor position in characters.
    cursor: usize,
}

/// What a key did to the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEvent {
    /// Enter: the owner takes the value.
    Submit,
    /// Esc: the owner drops the field.
    Cancel,
    /// The text changed.
    Changed,
    /// The cursor moved, nothing else.
    Moved,
    /// Not a key the field uses.
    Ignored,
}

impl TextInput {
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        let cursor = value.chars().count();
        TextInput { value, cursor }
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    pub fn into_value(self) -> String {
        self.value
    }

    fn byte(&self, chars: usize) -> usize {
        self.value
            .char_indices()
            .nth(chars)
            .map_or(self.value.len(), |(i, _)| i)
    }

    fn len(&self) -> usize {
        self.value.chars().count()
    }

    pub fn handle(&mut self, key: &KeyEvent) -> InputEvent {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Enter => InputEvent::Submit,
            KeyCode::Esc => InputEvent::Cancel,
            KeyCode::Char('a') if ctrl => self.move_to(0),
            KeyCode::Char('e') if ctrl => self.move_to(self.len()),
            KeyCode::Char('u') if ctrl => {
                let at = self.byte(self.cursor);
                self.value.replace_range(..at, "");
                self.cursor = 0;
                InputEvent::Changed
            }
            KeyCode::Char('w') if ctrl => {
                let chars: Vec<char> = self.value.chars().collect();
                let mut start = self.cursor;
                while start > 0 && chars[start - 1].is_whitespace() {
                    start -= 1;
                }
                while start > 0 && !chars[start - 1].is_whitespace() {
                    start -= 1;
                }
                let (a, b) = (self.byte(start), self.byte(self.cursor));
                self.value.replace_range(a..b, "");
                self.cursor = start;
                InputEvent::Changed
            }
            KeyCode::Char(c) if !ctrl => {
                let at = self.byte(self.cursor);
                self.value.insert(at, c);
                self.cursor += 1;
                InputEvent::Changed
            }
            KeyCode::Backspace if self.cursor > 0 => {
                let (a, b) = (self.byte(self.cursor - 1), self.byte(self.cursor));
                self.value.replace_range(a..b, "");
                self.cursor -= 1;
                InputEvent::Changed
            }
            KeyCode::Delete if self.cursor < self.len() => {
                let (a, b) = (self.byte(self.cursor), self.byte(self.cursor + 1));
                self.value.replace_range(a..b, "");
                InputEvent::Changed
            }
            KeyCode::Left => self.move_to(self.cursor.saturating_sub(1)),
            KeyCode::Right => self.move_to((self.cursor + 1).min(self.len())),
            KeyCode::Home => self.move_to(0),
            KeyCode::End => self.move_to(self.len()),
            _ => InputEvent::Ignored,
        }
    }

    fn move_to(&mut self, c: usize) -> InputEvent {
        self.cursor = c;
        InputEvent::Moved
    }

    /// The text with the cursor drawn as `▏` where it stands.
    pub fn display(&self) -> String {
        let at = self.byte(self.cursor);
        format!("{}▏{}", &self.value[..at], &self.value[at..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn edits_at_the_cursor_by_character() {
        let mut t = TextInput::new("héllo");
        assert_eq!(t.display(), "héllo▏");
        t.handle(&k(KeyCode::Left));
        t.handle(&k(KeyCode::Left));
        t.handle(&k(KeyCode::Left));
        assert_eq!(t.handle(&k(KeyCode::Backspace)), InputEvent::Changed);
        assert_eq!(t.value(), "hllo");
        t.handle(&k(KeyCode::Char('é')));
        assert_eq!(t.display(), "hé▏llo");
        t.handle(&KeyEvent::new(KeyCode::Char('w'), KeyModifiers::CONTROL));
        assert_eq!(t.value(), "llo");
        t.handle(&k(KeyCode::End));
        t.handle(&k(KeyCode::Char(' ')));
        t.handle(&k(KeyCode::Char('x')));
        assert_eq!(t.value(), "llo x");
        assert_eq!(t.handle(&k(KeyCode::Enter)), InputEvent::Submit);
        assert_eq!(t.handle(&k(KeyCode::F(2))), InputEvent::Ignored);
    }
}
