//! Context and continuation to tokens, as lm-evaluation-harness's `HFLM` does it (checked
//! against lm-eval 0.4.13): the trailing whitespace of the context moves onto the
//! continuation, `context + continuation` and `context` are encoded separately, and the
//! continuation is the whole's tokens after the context's count, so a merge across the
//! boundary changes the continuation's first tokens exactly as it does there.
//!
//! Special tokens: lm-eval's `tok_encode` adds what the tokenizer adds by default (a
//! Llama 3 or Gemma tokenizer its BOS; SmolLM2, Qwen and the tiny models nothing) unless the
//! text already starts with the prefix token, and `add_bos_token=True|False` forces it on or
//! off (older lm-eval releases never added any). [`Specials`] is that switch. An empty
//! context is the model's prefix token (BOS, else EOS) as there.

use crate::template::{TemplateError, TextTokenizer};

/// Which special tokens an encoding adds (lm-eval's `add_bos_token` model argument).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Specials {
    /// What the tokenizer adds by default (its post-processor, and its BOS when its config
    /// says `add_bos_token`): lm-eval's default.
    #[default]
    Tokenizer,
    /// Always the tokenizer's specials (`add_bos_token=True`).
    Add,
    /// None (`add_bos_token=False`; every lm-eval before the default changed).
    Omit,
}

/// Whitespace as Python's `str.isspace` (and so `str.rstrip()`) counts it: Unicode's
/// White_Space plus the four ASCII separators U+001C..U+001F, which Python also strips.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `s` without Python-whitespace at either end (`str.strip()`).
pub fn trim_py(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// `context` without its trailing whitespace, and that whitespace (`_encode_pair`'s move).
pub fn split_trailing_space(context: &str) -> (&str, &str) {
    let kept = context.trim_end_matches(is_py_space);
    (kept, &context[kept.len()..])
}

/// The id lm-eval puts before a continuation whose context is empty (`prefix_token_id`):
/// the BOS token when the tokenizer has one, else the EOS.
pub fn prefix_token_id(tok: &TextTokenizer) -> Option<u32> {
    tok.bos_token
        .as_deref()
        .and_then(|b| tok.token_to_id(b))
        .or_else(|| tok.eos_id())
}

fn prefix(tok: &TextTokenizer) -> Result<u32, TemplateError> {
    prefix_token_id(tok).ok_or_else(|| {
        TemplateError::Tokenize(
            "an empty context needs a BOS or EOS token to stand for it, and the tokenizer has neither"
                .into(),
        )
    })
}

/// `HFLM.tok_encode(text)`: the specials `specials` asks for, none when the text already
/// starts with the prefix token's text.
pub fn tok_encode(
    tok: &TextTokenizer,
    text: &str,
    specials: Specials,
) -> Result<Vec<u32>, TemplateError> {
    let prefix_text = tok.bos_token.as_deref().or(tok.eos_token.as_deref());
    if specials == Specials::Omit
        || prefix_text.is_some_and(|p| !p.is_empty() && text.starts_with(p))
    {
        return Ok(tok.encode(text, false)?.ids);
    }
    let mut ids = tok.encode(text, true)?.ids;
    // A config's `add_bos_token` (or a GGUF's) is how transformers builds the tokenizer's
    // post-processor; a tokenizer.json without one still gets its BOS.
    if let (true, Some(bos)) = (
        tok.add_bos_token,
        tok.bos_token.as_deref().and_then(|b| tok.token_to_id(b)),
    ) {
        if ids.first() != Some(&bos) {
            ids.insert(0, bos);
        }
    }
    Ok(ids)
}

/// `(context tokens, continuation tokens)` of one request.
pub fn encode_pair(
    tok: &TextTokenizer,
    context: &str,
    continuation: &str,
    specials: Specials,
) -> Result<(Vec<u32>, Vec<u32>), TemplateError> {
    if context.is_empty() {
        let p = prefix(tok)?;
        let cont = tok.encode(continuation, false)?.ids;
        return Ok(match cont.first() {
            Some(&first) if first == p => (vec![p], cont[1..].to_vec()),
            _ => (vec![p], cont),
        });
    }
    let (ctx, spaces) = split_trailing_space(context);
    let cont = format!("{spaces}{continuation}");
    let whole = tok_encode(tok, &format!("{ctx}{cont}"), specials)?;
    let ctx_ids = if ctx.is_empty() {
        Vec::new()
    } else {
        tok_encode(tok, ctx, specials)?
    };
    let cont_ids = whole.get(ctx_ids.len()..).unwrap_or_default().to_vec();
    if ctx_ids.is_empty() {
        // A context of whitespace only: lm-eval would score the continuation without its
        // first token; the prefix token stands for the context instead, as for "".
        let p = prefix(tok)?;
        let cont = whole.strip_prefix(&[p][..]).unwrap_or(&whole).to_vec();
        return Ok((vec![p], cont));
    }
    Ok((ctx_ids, cont_ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_space_moves_as_python_strips_it() {
        assert_eq!(split_trailing_space("Answer: "), ("Answer:", " "));
        assert_eq!(split_trailing_space("a\t\n \u{a0}"), ("a", "\t\n \u{a0}"));
        assert_eq!(split_trailing_space("a\u{1f}"), ("a", "\u{1f}"));
        assert_eq!(split_trailing_space("   "), ("", "   "));
        assert_eq!(split_trailing_space("é"), ("é", ""));
        // U+200B (zero-width space) is not whitespace to Python either.
        assert_eq!(split_trailing_space("a\u{200b}"), ("a\u{200b}", ""));
        assert_eq!(trim_py(" \u{1c}x y\n"), "x y");
    }
}
