//! Stop strings over streamed text: text is released only once it cannot be the start of a
//! stop string, and a match ends the completion with the stop string left out (as the
//! OpenAI API does).

/// Generated text, fed piece by piece, checked against the request's stop strings.
#[derive(Debug, Clone, Default)]
pub struct StopText {
    stops: Vec<String>,
    /// Everything generated so far.
    text: String,
    /// Bytes of `text` already released.
    released: usize,
    /// Where a stop string matched: the completion is `text[..at]`, and the generated text
    /// runs to `at + len`.
    hit: Option<(usize, usize)>,
}

impl StopText {
    pub fn new(stops: Vec<String>) -> Self {
        StopText {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            ..Default::default()
        }
    }

    /// Whether a stop string has matched (nothing more is released after it).
    pub fn stopped(&self) -> bool {
        self.hit.is_some()
    }

    /// Adds a piece; returns the text that is now certain to be in the completion (may be
    /// empty while a possible stop string is held back).
    pub fn push(&mut self, piece: &str) -> String {
        if self.hit.is_some() {
            return String::new();
        }
        let from = self.released;
        self.text.push_str(piece);
        // A match may start in text held back earlier, never in text already released.
        let found = self
            .stops
            .iter()
            .filter_map(|s| {
                self.text[from..]
                    .find(s.as_str())
                    .map(|i| (from + i, s.len()))
            })
            .min();
        if let Some((at, len)) = found {
            self.hit = Some((at, len));
            self.released = at;
            return self.text[from..at].to_string();
        }
        let hold = self
            .stops
            .iter()
            .map(|s| held_prefix(&self.text[from..], s))
            .max()
            .unwrap_or(0);
        self.released = self.text.len() - hold;
        self.text[from..self.released].to_string()
    }

    /// At the end of generation: the text still held back (no stop string completed).
    pub fn finish(&mut self) -> String {
        if self.hit.is_some() {
            return String::new();
        }
        let rest = self.text[self.released..].to_string();
        self.released = self.text.len();
        rest
    }

    /// The completion (stop string excluded).
    pub fn completion(&self) -> &str {
        match self.hit {
            Some((at, _)) => &self.text[..at],
            None => &self.text,
        }
    }

    /// The generated text through the end of the matched stop string (what the model
    /// produced before it was stopped), when one matched.
    pub fn generated_through_stop(&self) -> Option<&str> {
        self.hit.map(|(at, len)| &self.text[..at + len])
    }
}

/// The length of the longest suffix of `text` that is a proper prefix of `stop`.
fn held_prefix(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&k| stop.is_char_boundary(k) && text.ends_with(&stop[..k]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, String, bool) {
        let mut s = StopText::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out: Vec<String> = pieces.iter().map(|p| s.push(p)).collect();
        out.push(s.finish());
        (out, s.completion().to_string(), s.stopped())
    }

    #[test]
    fn text_without_stops_passes_through() {
        let (out, all, stopped) = run(&[], &["a", "bc"]);
        assert_eq!(out, ["a", "bc", ""]);
        assert_eq!((all.as_str(), stopped), ("abc", false));
    }

    #[test]
    fn a_stop_split_across_pieces_is_held_then_cut() {
        let (out, all, stopped) = run(&["END"], &["ab", "cE", "N", "Dxy"]);
        assert_eq!(out, ["ab", "c", "", "", ""]);
        assert_eq!((all.as_str(), stopped), ("abc", true));
    }

    #[test]
    fn a_false_start_is_released() {
        let (out, all, stopped) = run(&["END"], &["aE", "Nx", "y"]);
        assert_eq!(out, ["a", "ENx", "y", ""]);
        assert_eq!((all.as_str(), stopped), ("aENxy", false));
        let (out, _, _) = run(&["END"], &["aEN"]);
        assert_eq!(out, ["a", "EN"], "held text is released at the end");
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        let mut s = StopText::new(vec!["\n".into(), "lo".into(), String::new()]);
        assert_eq!(s.push("hel"), "he");
        assert_eq!(s.push("lo\nmore"), "l");
        assert!(s.stopped());
        assert_eq!(s.completion(), "hel");
        assert_eq!(s.generated_through_stop(), Some("hello"));
        assert_eq!(s.push("x"), "");
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let (out, all, _) = run(&["éé"], &["aé", "b", "éé"]);
        assert_eq!(out, ["a", "éb", "", ""]);
        assert_eq!(all, "aéb");
    }
}
