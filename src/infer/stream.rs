//! Text from a stream of token ids, piece by piece, without decoding the whole reply again
//! for every token (the idea of candle-examples' `TokenOutputStream`): only the tokens since
//! the last emitted piece are decoded, together with one token before them so tokenizers
//! whose spacing depends on the previous token decode right. A character split across
//! tokens waits until it is complete, so no replacement character is ever emitted.

use crate::template::TextTokenizer;

pub struct TokenStream<'a> {
    tok: &'a TextTokenizer,
    ids: Vec<u32>,
    /// Start of the decode window (one token before the unshown ones).
    prev: usize,
    /// Tokens up to here have been shown.
    shown: usize,
}

impl<'a> TokenStream<'a> {
    pub fn new(tok: &'a TextTokenizer) -> Self {
        TokenStream {
            tok,
            ids: Vec::new(),
            prev: 0,
            shown: 0,
        }
    }

    /// Every id so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Adds a token; returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Option<String> {
        self.ids.push(id);
        let piece = self.pending()?;
        if piece.ends_with('\u{FFFD}') {
            return None;
        }
        self.prev = self.shown;
        self.shown = self.ids.len();
        Some(piece)
    }

    /// Whatever is left when the stream ends (a dangling partial character included).
    pub fn finish(&mut self) -> Option<String> {
        let piece = self.pending()?;
        self.shown = self.ids.len();
        Some(piece)
    }

    /// The text of the unshown tokens.
    fn pending(&self) -> Option<String> {
        let before = self.tok.decode(&self.ids[self.prev..self.shown]).ok()?;
        let now = self.tok.decode(&self.ids[self.prev..]).ok()?;
        // The window's earlier text is normally a prefix; where a tokenizer rewrites it,
        // the new bytes past its length are what is new.
        let piece = now
            .strip_prefix(before.as_str())
            .or_else(|| now.get(before.len()..))?;
        (!piece.is_empty()).then(|| piece.to_string())
    }
}
