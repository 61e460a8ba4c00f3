//! `data preview`: the rendered template, the tokens and which are trained.

use super::input::{open, unusable, Input, TokenArgs};
use crate::cli::exit;
use serde_json::json;
use std::process::ExitCode;
use tunelab::template::{fit_length, Encoded, Fit};

pub(super) fn preview(
    input: &Input,
    tokens: &TokenArgs,
    samples: usize,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(encoder) = tokens.encoder() else {
        eprintln!("error: preview needs --model DIR (a folder with tokenizer.json)");
        return Ok(ExitCode::from(exit::UNUSABLE));
    };
    let encoder = match encoder {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
    let ds = match open(input) {
        Ok(d) => d,
        Err(e) => return Ok(unusable(&e)),
    };
    let items = match ds.items() {
        Ok(i) => i,
        Err(e) => return Ok(unusable(&e)),
    };
    let color = !as_json && crate::cli::tokens::use_color();
    let path = ds.file.path.display().to_string();
    if !as_json {
        match tunelab::template::tool_survey(&ds, &encoder) {
            Ok(t) => {
                if let Some(line) = t.describe(&encoder.template_name(), encoder.tool_format) {
                    println!("tools: {line}\n");
                }
            }
            Err(e) => return Ok(unusable(&e)),
        }
    }
    let mut shown = 0;
    let mut failed = false;
    for item in items {
        if shown >= samples {
            break;
        }
        let item = match item {
            Ok(i) => i,
            Err(e) => return Ok(unusable(&e)),
        };
        let record = match item.result {
            Ok(r) => r,
            Err(problems) => {
                for p in problems {
                    eprintln!("{path}: {p} (skipped)");
                }
                continue;
            }
        };
        shown += 1;
        let encoded = match encoder.encode(&record) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{path}: {}: {e}", item.location);
                failed = true;
                continue;
            }
        };
        match encoded {
            Encoded::Skipped(_) => {
                if as_json {
                    println!(
                        "{}",
                        json!({"location": item.location.to_string(), "skipped": "tool_format drop"})
                    );
                } else {
                    println!(
                        "── {} · left out: it carries tool calls (data.tool_format drop) ──\n",
                        item.location
                    );
                }
            }
            Encoded::Sft(mut ex) => {
                let full_len = ex.len();
                let fit = fit_length(&mut ex, tokens.max_seq_len, tokens.length_policy);
                if as_json {
                    let out = json!({"location": item.location.to_string(), "tokens": ex.len(), "trained": ex.trained(), "input_ids": ex.input_ids, "labels": ex.labels});
                    println!("{out}");
                    continue;
                }
                let fit_note = match fit {
                    Fit::Kept => String::new(),
                    Fit::Truncated => format!(" · truncated to {}", tokens.max_seq_len),
                    Fit::Dropped => format!(" · over {}: would be dropped", tokens.max_seq_len),
                };
                println!(
                    "── {} · {full_len} tokens, {} trained{fit_note} ──",
                    item.location,
                    ex.trained()
                );
                if let tunelab::data::Body::Conversation(c) = &record.body {
                    for i in encoder.dropped_messages(&c.messages, &ex.text) {
                        println!(
                            "warning: the template left out message {i} ({}): its text is not in the rendering",
                            c.messages[i].role
                        );
                    }
                }
                println!("{}", crate::cli::tokens::spans(&ex, color));
                println!();
            }
            Encoded::Preference(p) => {
                if as_json {
                    let out = json!({"location": item.location.to_string(), "prompt_ids": p.prompt_ids, "chosen_ids": p.chosen_ids, "rejected_ids": p.rejected_ids});
                    println!("{out}");
                    continue;
                }
                let tok = &encoder.tokenizer;
                println!(
                    "── {} · prompt {} tokens, chosen {}, rejected {} ──",
                    item.location,
                    p.prompt_ids.len(),
                    p.chosen_ids.len(),
                    p.rejected_ids.len()
                );
                let (open, close) = crate::cli::tokens::markers(color);
                println!(
                    "prompt    {}",
                    tok.decode(&p.prompt_ids).unwrap_or_default()
                );
                println!(
                    "chosen    {open}{}{close}",
                    tok.decode(&p.chosen_ids).unwrap_or_default()
                );
                println!(
                    "rejected  {open}{}{close}",
                    tok.decode(&p.rejected_ids).unwrap_or_default()
                );
                println!();
            }
            Encoded::Labeled(l) => {
                if as_json {
                    let out = json!({"location": item.location.to_string(), "label": l.desirable, "prompt_ids": l.prompt_ids, "completion_ids": l.completion_ids});
                    println!("{out}");
                    continue;
                }
                let tok = &encoder.tokenizer;
                println!(
                    "── {} · label {} · prompt {} tokens, completion {} ──",
                    item.location,
                    l.desirable,
                    l.prompt_ids.len(),
                    l.completion_ids.len()
                );
                let (open, close) = crate::cli::tokens::markers(color);
                println!(
                    "prompt      {}",
                    tok.decode(&l.prompt_ids).unwrap_or_default()
                );
                println!(
                    "completion  {open}{}{close}",
                    tok.decode(&l.completion_ids).unwrap_or_default()
                );
                println!();
            }
        }
    }
    Ok(ExitCode::from(if failed {
        exit::PROBLEMS
    } else {
        exit::OK
    }))
}
