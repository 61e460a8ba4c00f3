//! The user guide (`docs/`) and the README against the code, so they cannot drift: every
//! config field and every command is documented, `SUMMARY.md` lists every page, the README
//! stays short, relative links resolve, and the generated parts (the config reference, the
//! key table) match what the code makes of them.
//!
//! `TUNELAB_BLESS=1 cargo test --test it docs` rewrites the generated parts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tunelab::config::{FieldKind, RunConfig, FIELDS, PRESETS};

/// The generated config reference, relative to the repository root.
const CONFIG_PAGE: &str = "docs/src/reference/config.md";
/// The placeholders `tunelab presets --show default` fills the required fields with.
const MODEL_PLACEHOLDER: &str = "MODEL (folder, .gguf or org/name)";
const TRAIN_PLACEHOLDER: &str = "TRAIN.jsonl";
/// Commands the guide must document even before the binary has them (they land on another
/// branch); once the binary has them, the `--help` walk requires them too.
const ALWAYS_DOCUMENTED: &[&str] = &["doctor", "completions", "man"];
/// The README's limit, in lines.
const README_MAX_LINES: usize = 250;

/// What the fields outside the Adapter form's table (`FIELDS`) mean. The test fails when a
/// field of the default config has no help here or in `FIELDS`, and when an entry here
/// names no field.
const EXTRA_HELP: &[(&str, &str)] = &[
    (
        "grpo.rewards",
        "the reward functions, each with one kind (`regex`, `answer`, `length`, `persona`, \
         `command`, `judge`), a `weight` and an optional `name`: see [GRPO](../grpo.md)",
    ),
    (
        "model.template",
        "the chat template: `model` (the model's own), a built-in (`chatml`, `llama3`, \
         `mistral`, `alpaca`, `qwen3`, `gemma`, `phi4`, `phi4-mini`) or a `.jinja` file",
    ),
    (
        "data.format",
        "`auto` (detected from the first records) or a format name (`tunelab data formats`)",
    ),
    (
        "data.eval",
        "a separate eval dataset; `null` holds out `data.eval_split` of the training file",
    ),
    (
        "data.length_policy",
        "examples longer than `data.max_seq_len`: `truncate` or `drop`",
    ),
    (
        "data.tool_format",
        "tool calls a template cannot render: `template` (fail), `json` (Hermes \
         `<tool_call>` text) or `drop` (leave the records out)",
    ),
    (
        "data.template_kwargs",
        "extra chat-template arguments, as `apply_chat_template(**kwargs)` takes them \
         (`{enable_thinking: false}` for Qwen3's non-thinking mode); not written when empty",
    ),
    (
        "samples.prompts",
        "prompts (user messages) answered at each eval; empty: the first `samples.count` \
         held-out examples'",
    ),
    (
        "samples.max_new_tokens",
        "tokens per sample reply (at least 1)",
    ),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn blessing() -> bool {
    std::env::var("TUNELAB_BLESS").is_ok_and(|v| v == "1")
}

/// Every `.md` file under `docs/src`, relative to it, with `/` separators, sorted.
fn guide_pages() -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, base, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                let rel = p.strip_prefix(base).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let base = repo().join("docs/src");
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out.sort();
    out
}

/// The whole guide as one text.
fn guide_text() -> String {
    guide_pages()
        .iter()
        .map(|p| read(&format!("docs/src/{p}")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `text` holds `phrase` as a whole: not followed by a letter, digit, `-` or `_`
/// (so `tunelab export` is not found in `tunelab export-config`).
fn mentions(text: &str, phrase: &str) -> bool {
    text.match_indices(phrase).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + phrase.len()..].chars().next();
        let word = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// Writes `expected` to `rel` under `TUNELAB_BLESS=1`; otherwise fails, saying how to
/// refresh it, when the file differs.
fn check_generated(rel: &str, what: &str, actual: &str, expected: &str) {
    if actual == expected {
        return;
    }
    let first = actual
        .lines()
        .zip(expected.lines())
        .position(|(a, e)| a != e)
        .unwrap_or_else(|| actual.lines().count().min(expected.lines().count()));
    panic!(
        "{rel}: {what} is out of date with the code (first difference at line {}):\n  \
         committed: {:?}\n  generated: {:?}\nRefresh it with `TUNELAB_BLESS=1 cargo test --test it docs` \
         and commit the result.",
        first + 1,
        actual.lines().nth(first).unwrap_or("<end of file>"),
        expected.lines().nth(first).unwrap_or("<end of file>"),
    );
}

// ---------------------------------------------------------------------------------------
// The config reference
// ---------------------------------------------------------------------------------------

/// The config `tunelab presets --show default` prints.
fn default_config() -> RunConfig {
    RunConfig::minimal(MODEL_PLACEHOLDER, TRAIN_PLACEHOLDER)
}

/// Every leaf of a YAML value with its dotted path (nested mappings give dotted paths;
/// sequences and scalars are leaves), in the serialized order.
fn yaml_leaves(v: &serde_yaml::Value, prefix: &str, out: &mut Vec<(String, serde_yaml::Value)>) {
    match v {
        serde_yaml::Value::Mapping(m) if !m.is_empty() => {
            for (k, v) in m {
                let k = k.as_str().expect("config keys are strings");
                let path = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                yaml_leaves(v, &path, out);
            }
        }
        _ => out.push((prefix.to_string(), v.clone())),
    }
}

/// Every YAML path of the default config, with its default.
fn default_paths() -> Vec<(String, serde_yaml::Value)> {
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&default_config().to_yaml()).expect("the default config is YAML");
    let mut out = Vec::new();
    yaml_leaves(&yaml, "", &mut out);
    out
}

/// A number as a person writes it: `0.0001`, `1e-6`, `1000`, `1e9`.
fn number(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-4 || x.abs() >= 1e6) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// A default value as a table cell.
fn cell_value(path: &str, v: &serde_yaml::Value) -> String {
    use serde_yaml::Value as Y;
    match v {
        Y::String(s)
            if (path == "model.path" && s == MODEL_PLACEHOLDER)
                || (path == "data.train" && s == TRAIN_PLACEHOLDER) =>
        {
            "*required*".into()
        }
        Y::Sequence(items) => format!(
            "`[{}]`",
            items
                .iter()
                .map(|i| serde_yaml::to_string(i).unwrap().trim().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Y::Mapping(m) if m.is_empty() => "`{}`".into(),
        other => format!("`{}`", serde_yaml::to_string(other).unwrap().trim()),
    }
}

/// What values a form field takes.
fn kind_text(k: &FieldKind) -> String {
    let choices = |opts: &[&str]| {
        opts.iter()
            .map(|o| format!("`{o}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match *k {
        FieldKind::Text => "text".into(),
        FieldKind::Int { min, max } if max == i64::MAX => format!("integer ≥ {min}"),
        FieldKind::Int { min, max } => format!("integer {min}–{max}"),
        FieldKind::Float { min, max } => format!("number {}–{}", number(min), number(max)),
        FieldKind::Bool => "`true` or `false`".into(),
        FieldKind::Choice(opts) => choices(opts),
        FieldKind::Set(opts) => format!("a list of any of {}", choices(opts)),
        FieldKind::Modules => "module names, or `all-linear`".into(),
        FieldKind::OptInt { min } => format!("integer ≥ {min}, or `null`"),
        FieldKind::OptFloat { min, max } => {
            format!("number {}–{}, or `null`", number(min), number(max))
        }
        FieldKind::Adapter => "a run id, run folder or PEFT folder, or `null`".into(),
    }
}

/// A table cell: no pipes, no raw HTML.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The fields to document: the default config's, then form and extra fields it leaves
/// out (serialized only when set), each with its default.
fn documented_fields() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = default_paths()
        .iter()
        .map(|(p, v)| (p.clone(), cell_value(p, v)))
        .collect();
    for p in FIELDS
        .iter()
        .map(|f| f.path)
        .chain(EXTRA_HELP.iter().map(|(p, _)| *p))
    {
        if out.iter().any(|(q, _)| q == p) {
            continue;
        }
        // After the last field of its section, so each section stays one table.
        let top = p.split('.').next().unwrap();
        let at = out
            .iter()
            .rposition(|(q, _)| q.split('.').next() == Some(top))
            .map_or(out.len(), |i| i + 1);
        out.insert(at, (p.to_string(), "*not written when empty*".into()));
    }
    out
}

/// The first sentence of a preset file's leading comment.
fn preset_summary(text: &str) -> String {
    let comment: Vec<&str> = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim())
        .collect();
    let joined = comment.join(" ");
    let end = joined
        .match_indices(". ")
        .map(|(i, _)| i + 1)
        .next()
        .unwrap_or(joined.len());
    joined[..end]
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
}

/// The config reference page, from `FIELDS`, `EXTRA_HELP`, the default config and the
/// presets.
fn config_reference_markdown() -> String {
    let mut s = String::new();
    s.push_str(concat!(
        "# Config fields\n\n",
        "<!-- Generated by tests/it/docs.rs from the code (tunelab::config::FIELDS, the default\n",
        "RunConfig and the presets). Do not edit: `TUNELAB_BLESS=1 cargo test --test it docs`\n",
        "rewrites it. -->\n\n",
        "A run config is one YAML file. Only `model.path` and `data.train` are required; every\n",
        "other field takes the default below (PEFT's `LoraConfig`, TRL's `SFTConfig`, `DPOConfig`\n",
        "and `KTOConfig`). `tunelab presets --show default` prints the same defaults as YAML, and\n",
        "`--set PATH=VALUE` on `tunelab train` overrides any field by its path. Unknown keys are\n",
        "refused, and every problem names its path.\n\n",
        "*Values* is what the workbench's Adapter form accepts for the fields it shows; the\n",
        "description of the others says what they take. [Training](../training.md) explains runs;\n",
        "[DPO](../dpo.md), [KTO](../kto.md) and [QLoRA](../qlora.md) explain their fields.\n",
    ));
    let fields = documented_fields();
    let mut section = String::new();
    for (path, default) in &fields {
        let top = path.split('.').next().unwrap();
        if top != section {
            section = top.to_string();
            s.push_str(&format!(
                "\n## `{top}`\n\n| field | default | values | what it does |\n|---|---|---|---|\n"
            ));
        }
        let (values, help) = match FIELDS.iter().find(|f| f.path == path) {
            Some(f) => (kind_text(&f.kind), f.help.to_string()),
            None => (
                "see description".to_string(),
                EXTRA_HELP
                    .iter()
                    .find(|(p, _)| p == path)
                    .map(|(_, h)| h.to_string())
                    .unwrap_or_default(),
            ),
        };
        s.push_str(&format!(
            "| `{path}` | {default} | {} | {} |\n",
            cell(&values),
            cell(&help)
        ));
    }
    s.push_str(
        "\n## The default config\n\n\
         What `tunelab presets --show default` prints, less its comment:\n\n```yaml\n",
    );
    s.push_str(&default_config().to_yaml());
    s.push_str("```\n\n## Presets\n\n");
    s.push_str(
        "The presets in `presets/`, built into the binary: `tunelab train NAME` runs one,\n\
         `tunelab presets --show NAME` prints it in full.\n\n\
         | preset | what it is | model | method | LoRA | length | lr | device |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for (name, text) in PRESETS {
        let c = RunConfig::from_yaml(text, name).expect("presets parse");
        let method = match c.train.method {
            tunelab::config::Method::Sft => "sft".to_string(),
            tunelab::config::Method::Dpo => format!("dpo ({}, β {})", c.dpo.loss, c.dpo.beta),
            tunelab::config::Method::Kto => format!("kto (β {})", c.kto.beta),
            tunelab::config::Method::Grpo => format!(
                "grpo ({}, {} completions a prompt, rewards: {})",
                c.grpo.loss_type,
                c.grpo.num_generations,
                c.grpo.reward_names().join(", ")
            ),
        };
        let quant = match quantization(&c) {
            Some(q) => format!(" · {q} base"),
            None => String::new(),
        };
        let length = match c.train.max_steps {
            Some(n) => format!("{n} steps"),
            None if c.train.epochs == 1.0 => "1 epoch".to_string(),
            None => format!("{} epochs", c.train.epochs),
        };
        s.push_str(&format!(
            "| `{name}` | {} | `{}` | {method}{quant} | r {} α {} · {} | {length} | {} | {} {} |\n",
            preset_summary(text),
            c.model.path,
            c.lora.r,
            c.lora.alpha,
            c.lora.target_modules.join(" "),
            number(c.train.lr),
            c.train.device,
            c.train.dtype,
        ));
    }
    s
}

/// The quantization a config asks for, if any.
fn quantization(c: &RunConfig) -> Option<String> {
    (c.model.quantization != tunelab::model::Quantization::None).then(|| {
        serde_yaml::to_string(&c.model.quantization)
            .unwrap()
            .trim()
            .to_string()
    })
}

#[test]
fn config_reference_is_generated_from_the_code() {
    let expected = config_reference_markdown();
    let path = repo().join(CONFIG_PAGE);
    if blessing() {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    check_generated(CONFIG_PAGE, "the config reference", &actual, &expected);
}

#[test]
fn every_config_field_has_help_and_is_in_the_guide() {
    let paths = default_paths();
    assert!(
        paths.len() >= 40 && paths.iter().any(|(p, _)| p == "train.lr"),
        "the default config's paths: {paths:?}"
    );
    for (p, _) in &paths {
        assert!(
            FIELDS.iter().any(|f| f.path == p) || EXTRA_HELP.iter().any(|(q, _)| q == p),
            "{p}: a field of the default config with no help; add it to FIELDS \
             (src/config/fields.rs) or to EXTRA_HELP in tests/it/docs.rs"
        );
    }
    // Every extra entry names a real field: one of the default config's, or one the config
    // accepts that is written only when set.
    for (p, _) in EXTRA_HELP {
        if !paths.iter().any(|(q, _)| q == p) {
            let mut c = default_config();
            c.set_path(p, "{}")
                .unwrap_or_else(|e| panic!("EXTRA_HELP names {p}, which is no field: {e}"));
        }
    }
    let guide = guide_text();
    for (p, _) in documented_fields() {
        assert!(
            guide.contains(&format!("`{p}`")),
            "`{p}` is not in the guide (docs/src); refresh the config reference with \
             `TUNELAB_BLESS=1 cargo test --test it docs`"
        );
    }
}

/// The bodies of a page's fenced code blocks in `lang`.
fn code_blocks(md: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Inside a block: whether it is in `lang`, and its body so far.
    let mut block: Option<(bool, String)> = None;
    for line in md.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (block.as_mut(), fence) {
            (None, Some(info)) => block = Some((info.trim() == lang, String::new())),
            (Some(_), Some(_)) => {
                if let Some((true, body)) = block.take() {
                    out.push(body);
                }
            }
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

#[test]
fn yaml_examples_are_valid_run_configs() {
    let mut checked = 0;
    for page in guide_pages() {
        for block in code_blocks(&read(&format!("docs/src/{page}")), "yaml") {
            if !block.lines().any(|l| l.starts_with("model:")) {
                continue;
            }
            let cfg = RunConfig::from_yaml(&block, &page)
                .unwrap_or_else(|e| panic!("docs/src/{page}: a YAML example does not parse: {e}"));
            assert_eq!(cfg.validate(), vec![], "docs/src/{page}: {block}");
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "only {checked} run configs found in the guide"
    );
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// The names under a `--help` output's "Commands:" heading (`help` left out).
fn subcommands(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line.trim_end() == "Commands:" {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if line.trim().is_empty() || !line.starts_with(' ') {
            break;
        }
        // A command's line starts with two spaces and its name; wrapped help is indented
        // deeper.
        let rest = &line[2..];
        if rest.starts_with(' ') {
            continue;
        }
        let name = rest.split_whitespace().next().unwrap_or_default();
        if name != "help" && !name.is_empty() {
            out.push(name.to_string());
        }
    }
    out
}

fn help_of(args: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    let mut full: Vec<&str> = args.to_vec();
    full.push("--help");
    let (code, out, err) = crate::common::run(&home, &full);
    assert_eq!(code, 0, "tunelab {}: {err}", full.join(" "));
    out
}

/// Every command path of the real binary: `["data"]`, `["data", "inspect"]`, …
fn command_tree() -> Vec<Vec<String>> {
    fn walk(prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        let args: Vec<&str> = prefix.iter().map(String::as_str).collect();
        for name in subcommands(&help_of(&args)) {
            let mut path = prefix.clone();
            path.push(name);
            out.push(path.clone());
            walk(path, out);
        }
    }
    let mut out = Vec::new();
    walk(Vec::new(), &mut out);
    out
}

#[test]
fn help_parsing_finds_commands() {
    let help = "Usage: x\n\nCommands:\n  data    Dataset tools: inspect,\n          validate\n  \
                export-config  A run as\n  help    Print this\n\nOptions:\n  -h, --help\n";
    assert_eq!(subcommands(help), ["data", "export-config"]);
    assert!(mentions(
        "run `tunelab export-config X`",
        "tunelab export-config"
    ));
    assert!(!mentions("run `tunelab export-config X`", "tunelab export"));
    assert!(mentions("tunelab runs list/show", "tunelab runs list"));
}

#[test]
fn every_command_is_in_the_guide() {
    let tree = command_tree();
    let top: Vec<&str> = tree
        .iter()
        .filter(|p| p.len() == 1)
        .map(|p| p[0].as_str())
        .collect();
    for expected in ["data", "train", "runs", "export", "export-config", "model"] {
        assert!(top.contains(&expected), "`tunelab --help` lists {top:?}");
    }
    assert!(
        tree.iter().any(|p| p == &["data", "inspect"]),
        "the walk found no subcommands: {tree:?}"
    );
    let guide = guide_text();
    let readme = read("README.md");
    let mut missing = Vec::new();
    let mut all: Vec<Vec<String>> = tree.clone();
    for c in ALWAYS_DOCUMENTED {
        if !all.iter().any(|p| p == &[c.to_string()]) {
            all.push(vec![c.to_string()]);
        }
    }
    for path in &all {
        let phrase = format!("tunelab {}", path.join(" "));
        if !mentions(&guide, &phrase) {
            missing.push(format!("{phrase} (docs/src)"));
        }
        if path.len() == 1 && !mentions(&readme, &phrase) {
            missing.push(format!("{phrase} (README.md's command map)"));
        }
    }
    assert!(
        missing.is_empty(),
        "commands the documentation does not mention: {missing:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// The book's structure, the README, links
// ---------------------------------------------------------------------------------------

/// The targets of inline Markdown links (`[text](target)`) outside code.
fn links(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop inline code spans.
        let mut text = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                text.push_str(part);
            }
        }
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            match after.find(')') {
                Some(j) => {
                    out.push(after[..j].trim().to_string());
                    rest = &after[j..];
                }
                None => break,
            }
        }
    }
    out
}

/// The anchor ids of a page's headings, as mdBook makes them (GitHub's agree for these):
/// the heading's text without markup, lowercased, spaces as `-`, punctuation dropped.
fn anchors(md: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let text = line.trim_start_matches('#').trim();
        let id: String = text
            .chars()
            .filter_map(|c| {
                if c.is_alphanumeric() || c == '_' || c == '-' {
                    Some(c.to_ascii_lowercase())
                } else if c.is_whitespace() {
                    Some('-')
                } else {
                    None
                }
            })
            .collect();
        let mut unique = id.clone();
        let mut n = 1;
        while out.contains(&unique) {
            unique = format!("{id}-{n}");
            n += 1;
        }
        out.insert(unique);
    }
    out
}

#[test]
fn summary_lists_every_page() {
    let summary = read("docs/src/SUMMARY.md");
    let listed: Vec<String> = links(&summary)
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect();
    let listed_set: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    assert_eq!(
        listed.len(),
        listed_set.len(),
        "SUMMARY.md lists a page twice"
    );
    for l in &listed {
        assert!(
            repo().join("docs/src").join(l).is_file(),
            "SUMMARY.md lists {l}, which does not exist"
        );
    }
    let pages: Vec<String> = guide_pages()
        .into_iter()
        .filter(|p| p != "SUMMARY.md")
        .collect();
    assert!(pages.len() >= 10, "docs/src holds {pages:?}");
    for p in &pages {
        assert!(
            listed_set.contains(p.as_str()),
            "docs/src/{p} is not listed in docs/src/SUMMARY.md (mdBook would leave it out)"
        );
    }
    assert!(read("docs/book.toml").contains("src = \"src\""));
}

#[test]
fn readme_is_short_and_starts_people_off() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines; keep it at {README_MAX_LINES} or fewer and move \
         reference material into the guide (docs/src)"
    );
    for command in ["cargo run --release", "cargo test"] {
        assert!(
            readme.lines().any(|l| l.trim_start().starts_with(command)),
            "README.md does not show `{command}` as a command line"
        );
    }
    for heading in ["## Install", "## Two commands", "## A five-minute tour"] {
        assert!(readme.contains(heading), "README.md lacks {heading:?}");
    }
    assert!(
        readme.contains("What is a gradient?"),
        "the tour's question"
    );
}

#[test]
fn relative_links_resolve() {
    let mut files: Vec<PathBuf> = vec![repo().join("README.md")];
    files.extend(
        guide_pages()
            .iter()
            .map(|p| repo().join("docs/src").join(p)),
    );
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for link in links(&text) {
            if link.is_empty()
                || link.contains("://")
                || link.starts_with("mailto:")
                || link.contains(' ')
            {
                continue;
            }
            checked += 1;
            let (target, anchor) = match link.split_once('#') {
                Some((t, a)) => (t, Some(a)),
                None => (link.as_str(), None),
            };
            let target_path = if target.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(target)
            };
            let rel = file.strip_prefix(repo()).unwrap().display();
            if !target_path.exists() {
                broken.push(format!("{rel}: {link} (no such file)"));
                continue;
            }
            if let Some(a) = anchor.filter(|_| target_path.extension().is_some_and(|x| x == "md")) {
                let ids = anchors(&std::fs::read_to_string(&target_path).unwrap());
                if !ids.contains(a) {
                    broken.push(format!("{rel}: {link} (no heading #{a})"));
                }
            }
        }
    }
    assert!(checked >= 50, "only {checked} links found");
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

#[test]
fn link_checking_finds_broken_links() {
    let md = "See [a](x.md#one) and `[not](code.md)`.\n```\n[no](fence.md)\n```\n# One\n## One\n## `tunelab data` tools: A, B\n";
    assert_eq!(links(md), ["x.md#one"]);
    let ids = anchors(md);
    assert!(ids.contains("one") && ids.contains("one-1"), "{ids:?}");
    assert!(ids.contains("tunelab-data-tools-a-b"), "{ids:?}");
}

// ---------------------------------------------------------------------------------------
// The key table
// ---------------------------------------------------------------------------------------

#[cfg(feature = "tui")]
#[test]
fn key_table_is_generated_from_the_keymap() {
    const PAGE: &str = "docs/src/workbench.md";
    const BEGIN: &str = "<!-- KEYS:BEGIN";
    const END: &str = "<!-- KEYS:END -->";
    let page = read(PAGE);
    let start = page.find(BEGIN).expect("the key table's begin marker");
    let start = start + page[start..].find('\n').unwrap() + 1;
    let end = page.find(END).expect("the key table's end marker");
    let table = tunelab::tui::keymap::Keymap::load(None)
        .expect("the default keymap")
        .markdown();
    assert!(table.lines().count() > 40, "{table}");
    // Blank lines around the table keep it apart from the markers in every Markdown reader.
    let table = format!("\n{table}\n");
    if blessing() {
        let new = format!("{}{}{}", &page[..start], table, &page[end..]);
        std::fs::write(repo().join(PAGE), new).unwrap();
        return;
    }
    check_generated(PAGE, "the key table", &page[start..end], &table);
}
