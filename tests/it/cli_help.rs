//! The command line's own documentation: every command's `--help` (walked from the
//! binary's "Commands:" lists), the shell completions and the man pages made from the same
//! definitions, and help texts that say what the commands do.

use crate::common::run;
use std::collections::BTreeSet;

/// The subcommands `tunelab <path> --help` lists (clap's `help` left out).
fn subcommands(path: &[String]) -> Vec<String> {
    let home = tempfile::tempdir().unwrap();
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let (code, out, err) = run(&home, &args);
    assert_eq!(code, 0, "{args:?}: {err}");
    let Some((_, list)) = out.split_once("\nCommands:\n") else {
        return Vec::new();
    };
    list.lines()
        .take_while(|l| !l.trim().is_empty())
        // A command's line is indented two spaces; wrapped descriptions are indented more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every command path below the top, depth first: `["data"], ["data", "convert"], …`.
fn command_tree() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut stack: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = stack.pop() {
        for name in subcommands(&path).into_iter().rev() {
            let mut p = path.clone();
            p.push(name);
            stack.push(p.clone());
            out.push(p);
        }
    }
    out
}

#[test]
fn every_command_has_help_that_says_what_it_does() {
    let tree = command_tree();
    let names: BTreeSet<String> = tree.iter().map(|p| p.join(" ")).collect();
    // The walk sees the whole tree, nested commands included.
    for expected in [
        "train",
        "doctor",
        "completions",
        "man",
        "export-config",
        "data convert",
        "data synth",
        "runs plot",
        "model info",
        "bench train",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
    let home = tempfile::tempdir().unwrap();
    for path in &tree {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (code, out, err) = run(&home, &args);
        assert_eq!(code, 0, "{args:?}: {err}");
        let about = out.lines().next().unwrap_or("").trim();
        assert!(
            !about.is_empty() && !about.starts_with("Usage:"),
            "`tunelab {}` has no about line:\n{out}",
            path.join(" ")
        );
        assert!(out.contains("Usage: tunelab"), "{out}");
    }
}

#[test]
fn train_help_names_every_method_and_preference_loss() {
    use strum::VariantNames;
    let home = tempfile::tempdir().unwrap();
    let (code, help, err) = run(&home, &["train", "--help"]);
    assert_eq!(code, 0, "{err}");
    let (about, _) = help.split_once("Usage:").unwrap();
    // The about line itself, as `tunelab --help` lists it, names each method (SFT, DPO,
    // KTO): a method added to the core without the help saying so fails here.
    let (_, top, _) = run(&home, &["--help"]);
    let listed = top
        .lines()
        .find(|l| l.trim_start().starts_with("train "))
        .unwrap_or_else(|| panic!("no train line in:\n{top}"))
        .to_string();
    for method in tunelab::config::Method::VARIANTS {
        let name = method.to_uppercase();
        assert!(about.contains(&name), "train --help lacks {name}:\n{about}");
        assert!(
            listed.contains(&name),
            "tunelab --help lacks {name}:\n{listed}"
        );
    }
    for loss in tunelab::config::PrefLoss::VARIANTS {
        assert!(
            about.contains(loss),
            "train --help lacks dpo.loss {loss}:\n{about}"
        );
    }
}

#[test]
fn bash_completion_names_the_commands_and_parses() {
    let home = tempfile::tempdir().unwrap();
    let (code, script, err) = run(&home, &["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    for name in subcommands(&[]) {
        assert!(script.contains(&name), "bash completion lacks {name}");
    }
    for nested in ["convert", "synth", "init-tiny", "--out-dir", "--json"] {
        assert!(script.contains(nested), "bash completion lacks {nested}");
    }
    if std::process::Command::new("bash")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let file = home.path().join("tunelab.bash");
        std::fs::write(&file, &script).unwrap();
        let check = std::process::Command::new("bash")
            .arg("-n")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "bash -n: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    } else {
        eprintln!("SKIPPED the bash -n check: no bash");
    }
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let (code, script, err) = run(&home, &["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(script.contains("export-config"), "{shell}");
    }
    let (code, _, err) = run(&home, &["completions", "tcsh"]);
    assert_eq!(code, 2, "{err}");
}

/// A man page opens with its title (`.TH NAME 1`), after only clap_mangen's definition of
/// the apostrophe string (`.ie` / `.el`), and names the command.
fn assert_title(page: &str, name: &str) {
    let mut lines = page
        .lines()
        .skip_while(|l| l.starts_with(".ie ") || l.starts_with(".el "));
    let title = lines.next().unwrap_or("");
    assert!(
        title.starts_with(&format!(".TH {name} 1")),
        "{}",
        &page[..page.len().min(300)]
    );
    assert!(
        title.contains(concat!("\"tunelab ", env!("CARGO_PKG_VERSION"))),
        "{title}"
    );
    let roff_name = name.replace('-', "\\-");
    assert!(page.contains(&format!("\n{roff_name} \\- ")), "{page}");
}

#[test]
fn man_pages_cover_every_command() {
    let home = tempfile::tempdir().unwrap();
    let (code, page, err) = run(&home, &["man"]);
    assert_eq!(code, 0, "{err}");
    assert_title(&page, "tunelab");
    for name in subcommands(&[]) {
        let entry = format!("tunelab\\-{}(1)", name.replace('-', "\\-"));
        assert!(page.contains(&entry), "the top page lacks {entry}");
    }

    let dir = home.path().join("man/man1");
    let (code, _, err) = run(&home, &["man", "--out-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let written: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut expected: BTreeSet<String> = command_tree()
        .iter()
        .map(|p| format!("tunelab-{}.1", p.join("-")))
        .collect();
    expected.insert("tunelab.1".into());
    assert_eq!(written, expected);
    let convert = std::fs::read_to_string(dir.join("tunelab-data-convert.1")).unwrap();
    assert_title(&convert, "tunelab-data-convert");
    assert!(convert.contains("\\-\\-on\\-error"), "{convert}");
}

/// `bench train` measures what its help names (sft, dpo); a method it has no measurement for
/// is refused instead of silently timed as SFT.
#[test]
fn bench_train_refuses_an_objective_it_does_not_measure() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = run(&home, &["bench", "train", "--objective", "kto"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("kto is not benchmarked"), "{err}");
}

/// Output into a pipe whose reader has gone (`| head -1`) ends the command quietly, as
/// Unix tools do, instead of a panic about a broken pipe.
#[test]
fn a_closed_pipe_ends_output_quietly() {
    let h = tempfile::tempdir().unwrap();
    for args in [
        &["data", "formats"][..],
        &["presets"][..],
        &["completions", "bash"][..],
    ] {
        let mut child = crate::common::tunelab(&h)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "tunelab {}: {err}",
            args.join(" ")
        );
    }
}
