//! Scale-out: `tunelab export-config` writes the Axolotl, TRL and LLaMA-Factory equivalents of
//! a run (config, converted and split data, accelerate/DeepSpeed files, README), and
//! `tunelab runs import` brings a Trainer output folder back as a run. The configs are checked
//! field by field here; `tests/reference/check_axolotl_config.py`,
//! `check_trl_command.py` and `check_llamafactory_config.py` check them against the tools'
//! own parsers. A GRPO export's `tunelab_rewards.py` is run here, through
//! `check_trl_rewards.py` (the standard library alone), on the cases the Rust rewards are
//! tested on.

use crate::common;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tunelab::runs::{self, EventKind, RunState};

/// `tunelab` with the Hugging Face cache in the temporary home, offline: an export of a hub
/// model never reaches the network (TRL's marked template then falls back, as it says).
fn tunelab(home: &tempfile::TempDir) -> std::process::Command {
    let mut c = common::tunelab(home);
    c.env("HF_HOME", home.path().join("hf"))
        .env("HF_HUB_OFFLINE", "1");
    c
}

fn run_offline(home: &tempfile::TempDir, args: &[&str]) -> (i32, String, String) {
    let out = tunelab(home).args(args).output().expect("run tunelab");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tunelab export-config SPEC --to TOOL -o <tmp>/NAME EXTRA…`, which must succeed.
fn export(home: &tempfile::TempDir, spec: &str, tool: &str, name: &str, extra: &[&str]) -> PathBuf {
    let dir = home.path().join("exports").join(name);
    let d = dir.to_str().unwrap();
    let mut args = vec!["export-config", spec, "--to", tool, "-o", d];
    args.extend_from_slice(extra);
    let (code, out, err) = run_offline(home, &args);
    assert_eq!(code, 0, "{args:?}\n{out}\n{err}");
    dir
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `trl` command in run.sh: its subcommand and each flag's values.
fn trl_args(dir: &Path) -> (String, BTreeMap<String, Vec<String>>) {
    let text = std::fs::read_to_string(dir.join("run.sh")).unwrap();
    let sub = text
        .lines()
        .find_map(|l| l.strip_prefix("trl "))
        .unwrap()
        .trim_end_matches(" \\")
        .to_string();
    let mut args = BTreeMap::new();
    for l in text.lines() {
        let l = l.trim().trim_end_matches('\\').trim();
        if let Some(rest) = l.strip_prefix("--") {
            let mut words = rest.split_whitespace();
            let flag = format!("--{}", words.next().unwrap());
            let prev = args.insert(flag.clone(), words.map(str::to_string).collect());
            assert!(prev.is_none(), "{flag} given twice");
        }
    }
    (sub, args)
}

fn one(args: &BTreeMap<String, Vec<String>>, flag: &str) -> String {
    match args.get(flag).map(Vec::as_slice) {
        Some([v]) => v.clone(),
        other => panic!("{flag}: {other:?}"),
    }
}

/// The demo's persona file and the indices tunelab's trainer holds out of it (eval_split
/// 0.1, seed 42).
fn persona(home: &tempfile::TempDir, file: &str) -> (Vec<Value>, Vec<usize>) {
    let records = lines(&home.path().join("data/demo").join(file));
    let (_, held) = tunelab::batch::split((0..records.len()).collect(), 0.1, 42);
    (records, held)
}

/// The first record the train file gets and the first the test file gets.
fn first_of_each(records: &[Value], held: &[usize]) -> (Value, Value) {
    let train = (0..records.len()).find(|i| !held.contains(i)).unwrap();
    let test = *held.iter().min().unwrap();
    (records[train].clone(), records[test].clone())
}

#[test]
fn tiny_demo_to_trl_is_one_command_line() {
    let home = tempfile::tempdir().unwrap();
    let dir = export(&home, "tiny-demo", "trl", "trl", &[]);
    let (sub, a) = trl_args(&dir);
    assert_eq!(sub, "sft");
    let model = home.path().join("data/demo/tiny-model");
    for (flag, want) in [
        ("--model_name_or_path", model.to_str().unwrap()),
        ("--dataset_name", "data"),
        ("--dataset_train_split", "train"),
        ("--dataset_test_split", "test"),
        ("--output_dir", "output"),
        ("--use_peft", "true"),
        ("--lora_r", "16"),
        ("--lora_alpha", "32"),
        ("--lora_dropout", "0"),
        ("--lora_target_modules", "all-linear"),
        ("--learning_rate", "0.01"),
        ("--lr_scheduler_type", "cosine"),
        ("--warmup_steps", "5"),
        ("--max_steps", "600"),
        ("--per_device_train_batch_size", "8"),
        ("--gradient_accumulation_steps", "1"),
        ("--max_grad_norm", "1"),
        ("--seed", "42"),
        ("--max_length", "256"),
        ("--packing", "false"),
        ("--eval_strategy", "steps"),
        ("--eval_steps", "50"),
        ("--save_steps", "100"),
        ("--save_total_limit", "2"),
        ("--gradient_checkpointing", "false"),
        ("--bf16", "false"),
        ("--dtype", "float32"),
        ("--assistant_only_loss", "true"),
        ("--chat_template_path", "chat_template.jinja"),
        ("--optim", "adamw_torch"),
    ] {
        assert_eq!(one(&a, flag), want, "{flag}");
    }
    for absent in [
        "--num_train_epochs",
        "--load_in_4bit",
        "--accelerate_config",
        "--completion_only_loss",
    ] {
        assert!(!a.contains_key(absent), "{absent} in {a:?}");
    }
    // The data: OpenAI messages, split as tunelab's trainer splits it.
    let (records, held) = persona(&home, "persona.jsonl");
    let train = lines(&dir.join("data/train.jsonl"));
    let test = lines(&dir.join("data/test.jsonl"));
    assert_eq!((train.len(), test.len()), (81, 9));
    let (first_train, first_test) = first_of_each(&records, &held);
    assert_eq!(train[0], json!({"messages": first_train["messages"]}));
    assert_eq!(test[0], json!({"messages": first_test["messages"]}));
    // The README has the commands and the import; the config copy is the run's.
    let readme = std::fs::read_to_string(dir.join("README.txt")).unwrap();
    assert!(readme.contains("bash run.sh"), "{readme}");
    assert!(readme.contains("trl sft --dataset_name data"), "{readme}");
    assert!(readme.contains("tunelab runs import output"), "{readme}");
    assert!(
        readme.contains("samples: TRL writes no greedy sample replies"),
        "{readme}"
    );
    // TRL's assistant-only loss reads the marked template, checked on every record.
    assert!(
        readme.contains("checked token for token against tunelab's masks on every record (90)"),
        "{readme}"
    );
    let marked = std::fs::read_to_string(dir.join("chat_template.jinja")).unwrap();
    assert!(
        marked.contains("{%- generation -%}") && marked.contains("{%- endgeneration -%}"),
        "{marked}"
    );
    let copy = tunelab::config::RunConfig::load(&dir.join("tunelab.yaml")).unwrap();
    assert_eq!(copy.name.as_deref(), Some("tiny-demo"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "run.sh is executable");
    }
    // Exporting again into the same folder replaces it; a foreign folder is refused.
    export(
        &home,
        "tiny-demo",
        "trl",
        "trl",
        &["--set", "train.lr=0.02"],
    );
    assert_eq!(one(&trl_args(&dir).1, "--learning_rate"), "0.02");
    // Again with a tool output in it and a file the new export does not write.
    std::fs::create_dir_all(dir.join("output")).unwrap();
    std::fs::write(dir.join("accelerate.yaml"), "stale").unwrap();
    export(&home, "tiny-demo", "trl", "trl", &[]);
    assert!(
        !dir.join("accelerate.yaml").exists(),
        "an earlier export's files go"
    );
    assert!(dir.join("output").is_dir(), "the tool's output stays");
    let foreign = home.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let (code, _, err) = run_offline(
        &home,
        &[
            "export-config",
            "tiny-demo",
            "--to",
            "trl",
            "-o",
            foreign.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("is not an earlier export"), "{err}");
}

/// Every `train_on` but `all` goes to TRL as the marked template; with template arguments
/// fixed in it, since the `trl sft` command line cannot pass them.
#[test]
fn trl_gets_a_marked_template_for_every_train_on() {
    let home = tempfile::tempdir().unwrap();
    let dir = export(
        &home,
        "tiny-demo",
        "trl",
        "last",
        &[
            "--set",
            "data.train_on=last_assistant",
            "--set",
            "data.template_kwargs={enable_thinking: false}",
        ],
    );
    let (_, a) = trl_args(&dir);
    assert_eq!(one(&a, "--assistant_only_loss"), "true");
    assert_eq!(one(&a, "--chat_template_path"), "chat_template.jinja");
    assert!(!a.contains_key("--completion_only_loss"));
    let train = lines(&dir.join("data/train.jsonl"));
    assert!(train[0].get("messages").is_some(), "{}", train[0]);
    let marked = std::fs::read_to_string(dir.join("chat_template.jinja")).unwrap();
    assert!(marked.contains("train_on: last_assistant"), "{marked}");
    assert!(
        marked.contains("{%- set enable_thinking = false -%}"),
        "{marked}"
    );
    let readme = std::fs::read_to_string(dir.join("README.txt")).unwrap();
    assert!(!readme.contains("data.template_kwargs"), "{readme}");
    // `all` needs no markers and trains the whole conversation.
    let all = export(
        &home,
        "tiny-demo",
        "trl",
        "all",
        &["--set", "data.train_on=all"],
    );
    let (_, a) = trl_args(&all);
    assert_eq!(one(&a, "--assistant_only_loss"), "false");
    assert!(!all.join("chat_template.jinja").exists());
}

/// When no correct marked template can be made, the export says so when it runs, names the
/// fallback and what it changes, and writes the fallback's data: no tokenizer to read (a hub
/// model that is not in the cache, offline), or a record tunelab cannot encode to compare.
#[test]
fn trl_falls_back_to_completion_only_loss_and_says_why() {
    let home = tempfile::tempdir().unwrap();
    let d = home.path().join("exports/hub");
    let (code, out, err) = run_offline(
        &home,
        &[
            "export-config",
            "tiny-demo",
            "--to",
            "trl",
            "-o",
            d.to_str().unwrap(),
            "--set",
            "model.path=acme/tiny-chat",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("warning: no chat template with {% generation %} markers")
            && err.contains("acme/tiny-chat")
            && err.contains("completion-only loss on prompt/completion data"),
        "{err}"
    );
    let (_, a) = trl_args(&d);
    assert_eq!(one(&a, "--completion_only_loss"), "true");
    assert!(!a.contains_key("--assistant_only_loss") && !a.contains_key("--chat_template_path"));
    let train = lines(&d.join("data/train.jsonl"));
    assert!(
        train[0].get("prompt").is_some() && train[0].get("completion").is_some(),
        "{}",
        train[0]
    );
    let readme = std::fs::read_to_string(d.join("README.txt")).unwrap();
    assert!(
        readme.contains("earlier assistant turns are context, not trained"),
        "{readme}"
    );

    // A template that rewrites the start of the conversation as it grows: tunelab refuses
    // the record (the masks are rendered turn by turn), so there is nothing to compare with.
    let template = home.path().join("counting.jinja");
    std::fs::write(
        &template,
        "{{ messages|length }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    )
    .unwrap();
    let d = home.path().join("exports/counting");
    let (code, out, err) = run_offline(
        &home,
        &[
            "export-config",
            "tiny-demo",
            "--to",
            "trl",
            "-o",
            d.to_str().unwrap(),
            "--set",
            &format!("model.template={}", template.display()),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("persona.jsonl: line 1: tunelab cannot encode the record"),
        "{err}"
    );
    let (_, a) = trl_args(&d);
    assert_eq!(one(&a, "--completion_only_loss"), "true");
    // The run's own template goes beside the config, unmarked.
    assert_eq!(one(&a, "--chat_template_path"), "chat_template.jinja");
    let copied = std::fs::read_to_string(d.join("chat_template.jinja")).unwrap();
    assert_eq!(copied, std::fs::read_to_string(&template).unwrap());
}

/// Every export launches the same way, `bash run.sh` in its folder, extra arguments passed on.
#[test]
fn every_tool_launches_with_bash_run_sh() {
    let home = tempfile::tempdir().unwrap();
    for (tool, command) in [
        ("axolotl", "axolotl train config.yml \"$@\""),
        ("llamafactory", "llamafactory-cli train config.yaml \"$@\""),
    ] {
        let dir = export(&home, "tiny-demo", tool, tool, &[]);
        let script = std::fs::read_to_string(dir.join("run.sh")).unwrap();
        assert!(script.starts_with("#!/usr/bin/env bash\n"), "{script}");
        assert!(script.contains("cd \"$(dirname \"$0\")\""), "{script}");
        assert!(script.trim_end().ends_with(command), "{script}");
        let readme = std::fs::read_to_string(dir.join("README.txt")).unwrap();
        assert!(readme.contains("    bash run.sh\n"), "{readme}");
    }
}

#[test]
fn tiny_demo_to_axolotl_trains_assistant_turns() {
    let home = tempfile::tempdir().unwrap();
    let dir = export(&home, "tiny-demo", "axolotl", "ax", &[]);
    let c = yaml(&dir.join("config.yml"));
    let model = home.path().join("data/demo/tiny-model");
    let want = json!({
        "base_model": model.to_str().unwrap(),
        "chat_template": "tokenizer_default",
        "val_set_size": 0.0,
        "output_dir": "./output",
        "sequence_len": 256,
        "excess_length_strategy": "truncate",
        "sample_packing": false,
        "train_on_inputs": false,
        "adapter": "lora",
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0,
        "lora_target_linear": true,
        "gradient_accumulation_steps": 1,
        "micro_batch_size": 8,
        "max_steps": 600,
        "optimizer": "adamw_torch",
        "lr_scheduler": "cosine",
        "learning_rate": 0.01,
        "warmup_steps": 5,
        "weight_decay": 0,
        "max_grad_norm": 1,
        "bf16": false,
        "fp16": false,
        "gradient_checkpointing": false,
        "logging_steps": 1,
        "eval_steps": 50,
        "save_steps": 100,
        "save_total_limit": 2,
        "seed": 42,
    });
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&c[k], v, "{k}");
    }
    let ds = json!({
        "path": "data/train.jsonl",
        "ds_type": "json",
        "type": "chat_template",
        "field_messages": "messages",
        "message_property_mappings": {"role": "role", "content": "content"},
        "roles_to_train": ["assistant"],
        "train_on_eos": "turn",
        "message_field_training": "weight",
    });
    assert_eq!(c["datasets"], json!([ds]));
    let mut test = ds.clone();
    test["path"] = json!("data/test.jsonl");
    assert_eq!(c["test_datasets"], json!([test]));
    for absent in [
        "rl",
        "load_in_4bit",
        "deepspeed",
        "fsdp_config",
        "lora_target_modules",
    ] {
        assert!(c.get(absent).is_none(), "{absent}");
    }
    let (records, held) = persona(&home, "persona.jsonl");
    let (first, _) = first_of_each(&records, &held);
    assert_eq!(
        lines(&dir.join("data/train.jsonl"))[0],
        json!({"messages": first["messages"]})
    );
    assert!(
        !dir.join("accelerate.yaml").exists(),
        "one GPU, no sharding: no launcher config"
    );

    // Only the last reply trained: earlier assistant turns weigh 0 for Axolotl.
    let dir = export(
        &home,
        "tiny-demo",
        "axolotl",
        "ax-last",
        &["--set", "data.train_on=last_assistant"],
    );
    let first = &lines(&dir.join("data/train.jsonl"))[0];
    let replies: Vec<&Value> = first["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .collect();
    assert_eq!(replies.last().unwrap()["weight"], json!(1));
}

#[test]
fn tiny_demo_to_llamafactory_registers_its_data() {
    let home = tempfile::tempdir().unwrap();
    let dir = export(&home, "tiny-demo", "llamafactory", "lf", &[]);
    let c = yaml(&dir.join("config.yaml"));
    let want = json!({
        "stage": "sft",
        "do_train": true,
        "finetuning_type": "lora",
        "lora_rank": 16,
        "lora_alpha": 32,
        "lora_dropout": 0,
        "lora_target": "all",
        "dataset": "tunelab_train",
        "eval_dataset": "tunelab_eval",
        "dataset_dir": "data",
        "cutoff_len": 256,
        "packing": false,
        "output_dir": "output",
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "learning_rate": 0.01,
        "max_steps": 600,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 5,
        "max_grad_norm": 1,
        "seed": 42,
        "disable_gradient_checkpointing": true,
        "eval_strategy": "steps",
        "eval_steps": 50,
        "save_steps": 100,
        "save_total_limit": 2,
    });
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&c[k], v, "{k}");
    }
    for absent in [
        "train_on_prompt",
        "mask_history",
        "bf16",
        "quantization_bit",
        "deepspeed",
        "template",
    ] {
        assert!(c.get(absent).is_none(), "{absent}");
    }
    let info = json_file(&dir.join("data/dataset_info.json"));
    assert_eq!(
        info["tunelab_train"],
        json!({"file_name": "train.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations", "system": "system"}})
    );
    assert_eq!(info["tunelab_eval"]["file_name"], "test.jsonl");
    let (records, held) = persona(&home, "persona.jsonl");
    let (first, _) = first_of_each(&records, &held);
    let m = first["messages"].as_array().unwrap();
    assert_eq!(m[0]["role"], "system");
    assert_eq!(
        lines(&dir.join("data/train.jsonl"))[0],
        json!({
            "conversations": [{"from": "human", "value": m[1]["content"]}, {"from": "gpt", "value": m[2]["content"]}],
            "system": m[0]["content"],
        })
    );
    let readme = std::fs::read_to_string(dir.join("README.txt")).unwrap();
    assert!(
        readme.contains("    llamafactory-cli train config.yaml"),
        "{readme}"
    );
    // A run is exported from the config it ran with, by id.
    let root = runs::runs_root(&home.path().join("data"));
    let run = runs::RunDir::new(root.join("tiny-demo-20260101-000000"));
    std::fs::create_dir_all(&run.root).unwrap();
    std::fs::copy(dir.join("tunelab.yaml"), run.config()).unwrap();
    let by_id = export(
        &home,
        "tiny-demo-20260101-000000",
        "llamafactory",
        "lf-run",
        &["--set", "lora.r=4"],
    );
    let c = yaml(&by_id.join("config.yaml"));
    assert_eq!(
        (c["lora_rank"].clone(), c["cutoff_len"].clone()),
        (json!(4), json!(256))
    );
    // Only the last turn trained, or every token.
    let dir = export(
        &home,
        "tiny-demo",
        "llamafactory",
        "lf-last",
        &["--set", "data.train_on=last_assistant"],
    );
    assert_eq!(yaml(&dir.join("config.yaml"))["mask_history"], json!(true));
    let dir = export(
        &home,
        "tiny-demo",
        "llamafactory",
        "lf-all",
        &["--set", "data.train_on=all"],
    );
    assert_eq!(
        yaml(&dir.join("config.yaml"))["train_on_prompt"],
        json!(true)
    );
}

#[test]
fn dpo_maps_its_loss_and_pairs_to_each_tool() {
    let home = tempfile::tempdir().unwrap();
    let dir = export(&home, "tiny-demo-dpo", "trl", "trl", &[]);
    let (records, held) = persona(&home, "persona_dpo.jsonl");
    let (first, _) = first_of_each(&records, &held);
    let (sub, a) = trl_args(&dir);
    assert_eq!(sub, "dpo");
    assert_eq!(a["--loss_type"], ["sigmoid"]);
    assert_eq!(one(&a, "--beta"), "0.1");
    assert_eq!(one(&a, "--max_length"), "256");
    assert!(!a.contains_key("--assistant_only_loss") && !a.contains_key("--packing"));
    assert_eq!(lines(&dir.join("data/train.jsonl"))[0], first);
    let readme = std::fs::read_to_string(dir.join("README.txt")).unwrap();
    assert!(readme.contains("data.max_prompt_len: 128"), "{readme}");
    // RPO is DPO plus TRL's sft term.
    let dir = export(
        &home,
        "tiny-demo-dpo",
        "trl",
        "trl-rpo",
        &["--set", "dpo.rpo_alpha=0.5", "--set", "dpo.loss=ipo"],
    );
    let (_, a) = trl_args(&dir);
    assert_eq!(a["--loss_type"], ["ipo", "sft"]);
    assert_eq!(a["--loss_weights"], ["1", "0.5"]);
    // TRL 1.16's `trl dpo` has no SimPO or ORPO: refused, with where to go instead.
    let out = home.path().join("exports/trl-simpo");
    let (code, _, err) = run_offline(
        &home,
        &[
            "export-config",
            "tiny-demo-dpo",
            "--set",
            "dpo.loss=simpo",
            "--to",
            "trl",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("dpo.loss simpo") && err.contains("axolotl or llamafactory"),
        "{err}"
    );

    let dir = export(&home, "tiny-demo-dpo", "axolotl", "ax", &[]);
    let c = yaml(&dir.join("config.yml"));
    assert_eq!(c["rl"], "dpo");
    assert_eq!(c["rl_beta"], json!(0.1));
    assert_eq!(c["max_prompt_len"], json!(128));
    assert!(c.get("dpo_loss_type").is_none());
    assert_eq!(
        c["datasets"],
        json!([{"path": "data/train.jsonl", "split": "train", "type": "chat_template.default",
                "field_messages": "prompt", "field_chosen": "chosen", "field_rejected": "rejected"}])
    );
    assert!(c.get("train_on_inputs").is_none() && c.get("sample_packing").is_none());
    assert_eq!(lines(&dir.join("data/train.jsonl"))[0], first);
    let dir = export(
        &home,
        "tiny-demo-dpo",
        "axolotl",
        "ax-hinge",
        &["--set", "dpo.loss=hinge"],
    );
    assert_eq!(
        yaml(&dir.join("config.yml"))["dpo_loss_type"],
        json!(["hinge"])
    );
    let dir = export(
        &home,
        "tiny-demo-dpo",
        "axolotl",
        "ax-simpo",
        &["--set", "dpo.loss=simpo"],
    );
    let c = yaml(&dir.join("config.yml"));
    assert_eq!(
        (c["rl"].clone(), c["simpo_gamma"].clone()),
        (json!("simpo"), json!(0.5))
    );
    let dir = export(
        &home,
        "tiny-demo-dpo",
        "axolotl",
        "ax-orpo",
        &["--set", "dpo.loss=orpo"],
    );
    let c = yaml(&dir.join("config.yml"));
    assert_eq!(
        (c["rl"].clone(), c["orpo_alpha"].clone()),
        (json!("orpo"), json!(0.1))
    );
    assert_eq!(c["datasets"][0]["type"], "chat_template.argilla");
    let u = first["prompt"][0].clone();
    assert_eq!(
        lines(&dir.join("data/train.jsonl"))[0],
        json!({"chosen": [u, first["chosen"][0]], "rejected": [u, first["rejected"][0]]})
    );

    let dir = export(&home, "tiny-demo-dpo", "llamafactory", "lf", &[]);
    let c = yaml(&dir.join("config.yaml"));
    assert_eq!(c["stage"], "dpo");
    assert_eq!(c["pref_beta"], json!(0.1));
    assert_eq!(c["pref_loss"], "sigmoid");
    let info = json_file(&dir.join("data/dataset_info.json"));
    assert_eq!(
        info["tunelab_train"],
        json!({"file_name": "train.jsonl", "formatting": "sharegpt", "ranking": true,
               "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}})
    );
    assert_eq!(
        lines(&dir.join("data/train.jsonl"))[0],
        json!({"conversations": [{"from": "human", "value": first["prompt"][0]["content"]}],
               "chosen": {"from": "gpt", "value": first["chosen"][0]["content"]},
               "rejected": {"from": "gpt", "value": first["rejected"][0]["content"]}})
    );
    let dir = export(
        &home,
        "tiny-demo-dpo",
        "llamafactory",
        "lf-simpo",
        &["--set", "dpo.loss=simpo", "--set", "dpo.rpo_alpha=0.2"],
    );
    let c = yaml(&dir.join("config.yaml"));
    assert_eq!(
        (
            c["pref_loss"].clone(),
            c["simpo_gamma"].clone(),
            c["pref_ftx"].clone()
        ),
        (json!("simpo"), json!(0.5), json!(0.2))
    );
}

#[test]
fn kto_writes_rated_completions_each_tool_reads() {
    let home = tempfile::tempdir().unwrap();
    let dir = export(&home, "tiny-demo-kto", "trl", "trl", &[]);
    let (sub, a) = trl_args(&dir);
    assert_eq!(sub, "kto");
    assert_eq!(
        (
            one(&a, "--beta"),
            one(&a, "--desirable_weight"),
            one(&a, "--undesirable_weight")
        ),
        ("0.1".into(), "1".into(), "1".into())
    );
    let (records, held) = persona(&home, "persona_kto.jsonl");
    let (first, _) = first_of_each(&records, &held);
    assert_eq!(lines(&dir.join("data/train.jsonl"))[0], first);
    let n = lines(&dir.join("data/train.jsonl")).len() + lines(&dir.join("data/test.jsonl")).len();
    assert_eq!(n, 180);

    // Axolotl's KTO takes text: the prompt rendered with the generation prompt, the reply the
    // rest of the rendering (the demo model's template is ChatML).
    let dir = export(&home, "tiny-demo-kto", "axolotl", "ax", &[]);
    let c = yaml(&dir.join("config.yml"));
    assert_eq!(c["rl"], "kto");
    assert_eq!(c["remove_unused_columns"], json!(false));
    assert_eq!(c["kto_desirable_weight"], json!(1));
    assert_eq!(
        c["datasets"],
        json!([{"path": "data/train.jsonl", "split": "train"}])
    );
    let user = first["prompt"][0]["content"].as_str().unwrap();
    let reply = first["completion"][0]["content"].as_str().unwrap();
    assert_eq!(
        lines(&dir.join("data/train.jsonl"))[0],
        json!({"prompt": format!("<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"),
               "completion": format!("{reply}<|im_end|>\n"), "label": first["label"]})
    );

    let dir = export(&home, "tiny-demo-kto", "llamafactory", "lf", &[]);
    let c = yaml(&dir.join("config.yaml"));
    assert_eq!(c["stage"], "kto");
    assert_eq!(
        (
            c["kto_chosen_weight"].clone(),
            c["kto_rejected_weight"].clone()
        ),
        (json!(1), json!(1))
    );
    let info = json_file(&dir.join("data/dataset_info.json"));
    assert_eq!(
        info["tunelab_train"]["columns"],
        json!({"messages": "messages", "kto_tag": "label"})
    );
    assert_eq!(info["tunelab_train"]["tags"]["role_tag"], "role");
    assert_eq!(
        lines(&dir.join("data/train.jsonl"))[0],
        json!({"messages": [first["prompt"][0], first["completion"][0]], "label": first["label"]})
    );
}

#[test]
fn grpo_exports_to_trl_grpo_with_its_rewards_as_a_python_module() {
    let home = tempfile::tempdir().unwrap();
    let dir = export(&home, "tiny-demo-grpo", "trl", "trl", &[]);
    let (sub, a) = trl_args(&dir);
    assert_eq!(sub, "grpo");
    let model = home.path().join("data/demo/tiny-model");
    for (flag, want) in [
        ("--model_name_or_path", model.to_str().unwrap()),
        ("--dataset_name", "data"),
        ("--dataset_train_split", "train"),
        ("--per_device_train_batch_size", "32"),
        ("--gradient_accumulation_steps", "2"),
        ("--max_steps", "150"),
        ("--learning_rate", "0.01"),
        ("--lr_scheduler_type", "constant"),
        ("--num_generations", "8"),
        ("--max_completion_length", "2"),
        ("--temperature", "1"),
        ("--top_p", "1"),
        ("--top_k", "0"),
        ("--beta", "0"),
        ("--epsilon", "0.2"),
        ("--num_iterations", "1"),
        ("--importance_sampling_level", "token"),
        ("--scale_rewards", "group"),
        ("--loss_type", "dapo"),
        ("--mask_truncated_completions", "false"),
        ("--log_completions", "true"),
        ("--num_completions_to_print", "4"),
        ("--use_peft", "true"),
        ("--lora_r", "16"),
        ("--dtype", "float32"),
    ] {
        assert_eq!(one(&a, flag), want, "{flag}");
    }
    assert_eq!(
        a["--reward_funcs"],
        ["tunelab_rewards.correct", "tunelab_rewards.digit_first"]
    );
    assert_eq!(a["--reward_weights"], ["1", "0.5"]);
    // No held-out split and `eval_every: 0`: no evaluation; GRPO has no --max_length.
    for absent in [
        "--dataset_test_split",
        "--eval_strategy",
        "--max_length",
        "--epsilon_high",
        "--chat_template_kwargs",
        "--packing",
    ] {
        assert!(!a.contains_key(absent), "{absent} in {a:?}");
    }
    let script = std::fs::read_to_string(dir.join("run.sh")).unwrap();
    assert!(
        script.contains("cd \"$(dirname \"$0\")\"\ntrl grpo \\\n    --dataset_name data \\\n"),
        "{script}"
    );
    assert!(
        script.contains(
            "    --reward_funcs tunelab_rewards.correct tunelab_rewards.digit_first \\\n    --reward_weights 1 0.5 \\\n"
        ),
        "{script}"
    );
    // The data: each prompt up to its last user turn, the reference beside it.
    let sums = lines(&home.path().join("data/demo/sums.jsonl"));
    let train = lines(&dir.join("data/train.jsonl"));
    assert_eq!(train.len(), sums.len());
    assert!(!dir.join("data/test.jsonl").exists());
    assert_eq!(
        train[3],
        json!({"prompt": sums[3]["messages"], "reference": sums[3]["answer"], "answer": sums[3]["answer"]})
    );
    // The rewards, as tunelab scores them: its semantics, then the run's two.
    let py = std::fs::read_to_string(dir.join("tunelab_rewards.py")).unwrap();
    assert!(py.starts_with("\"\"\"The reward functions of the tunelab run \"tiny-demo-grpo\", for `trl grpo` (TRL 1.16)."), "{py}");
    for want in [
        "def _last_number(text):",
        "class _Command(_Reward):",
        "def __getattr__(name):",
        "    # correct: answer ^\\D*?(\\d+) numeric ×1\n",
        r#"    "correct": _Answer("correct", extract="^\\D*?(\\d+)", compare="numeric", reference_regex=None, tolerance=1e-6),"#,
        r#"    "digit_first": _Regex("digit_first", "\\s*\\d.*"),"#,
    ] {
        assert!(py.contains(want), "{want} not in\n{py}");
    }
    let readme = std::fs::read_to_string(dir.join("README.txt")).unwrap();
    for want in [
        "trl grpo --dataset_name data",
        "= 64 completions (8 per prompt) per optimizer step",
        "data.max_prompt_len: 64: TRL 1.16's GRPO does not truncate prompts",
        "grpo.log_completions: 4: TRL prints that many completions",
        "\"reference\": the answer/solution column or the final assistant turn",
    ] {
        assert!(readme.contains(want), "{want} not in\n{readme}");
    }

    // Held out and evaluated: TRL's eval batch must hold whole groups over every GPU.
    let adapter = home.path().join("sft-adapter");
    std::fs::create_dir_all(&adapter).unwrap();
    std::fs::write(adapter.join("adapter_config.json"), "{}").unwrap();
    std::fs::write(adapter.join("adapter_model.safetensors"), "weights").unwrap();
    let init = format!("grpo.init_adapter={}", adapter.display());
    let dir = export(
        &home,
        "tiny-demo-grpo",
        "trl",
        "trl-eval",
        &[
            "--set",
            "data.eval_split=0.2",
            "--set",
            "train.eval_every=10",
            "--set",
            "train.batch_size=4",
            "--set",
            "train.grad_accum=16",
            "--set",
            "grpo.epsilon_high=0.28",
            "--set",
            "grpo.loss_type=dr_grpo",
            "--set",
            &init,
        ],
    );
    let (_, a) = trl_args(&dir);
    for (flag, want) in [
        ("--dataset_test_split", "test"),
        ("--eval_strategy", "steps"),
        ("--eval_steps", "10"),
        ("--per_device_eval_batch_size", "8"),
        ("--epsilon_high", "0.28"),
        ("--loss_type", "dr_grpo"),
    ] {
        assert_eq!(one(&a, flag), want, "{flag}");
    }
    let (train, test) = (
        lines(&dir.join("data/train.jsonl")),
        lines(&dir.join("data/test.jsonl")),
    );
    assert_eq!(train.len() + test.len(), sums.len());
    let (_, held) = tunelab::batch::split((0..sums.len()).collect(), 0.2, 42);
    assert_eq!(test.len(), held.len());
    assert!(dir.join("init_adapter/adapter_config.json").is_file());
    let readme = std::fs::read_to_string(dir.join("README.txt")).unwrap();
    assert!(
        readme.contains("grpo.init_adapter: `trl` starts from a fresh adapter"),
        "{readme}"
    );

    // Axolotl's GRPO wants a reward module of its own layout; LLaMA-Factory has none.
    for (tool, why) in [
        (
            "axolotl",
            "Axolotl's GRPO (`rl: grpo`) imports its reward functions",
        ),
        ("llamafactory", "LLaMA-Factory has no GRPO stage"),
    ] {
        let out = home.path().join("exports").join(tool);
        let (code, _, err) = run_offline(
            &home,
            &[
                "export-config",
                "tiny-demo-grpo",
                "--to",
                tool,
                "-o",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(why) && err.contains("export with --to trl"),
            "{err}"
        );
        assert!(!out.join("data/train.jsonl").exists());
    }
}

/// A GRPO config on prompts answered "42" (with an `id` column), its rewards the shared
/// cases' plus `extra`, in `home/grpo`; returns the config's path.
fn grpo_config(home: &tempfile::TempDir, extra: Value) -> PathBuf {
    let dir = home.path().join("grpo");
    std::fs::create_dir_all(&dir).unwrap();
    let record = json!({"messages": [{"role": "user", "content": "Say a number."},
                                     {"role": "assistant", "content": "42"}], "id": 7});
    std::fs::write(dir.join("prompts.jsonl"), format!("{record}\n{record}\n")).unwrap();
    let preset = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("presets/tiny-demo-grpo.yaml");
    let mut cfg: Value = yaml(&preset);
    cfg["data"]["train"] = json!("prompts.jsonl");
    let mut rewards = crate::reward::cases()["rewards"]
        .as_array()
        .unwrap()
        .clone();
    rewards.extend(extra.as_array().unwrap().iter().cloned());
    cfg["grpo"]["rewards"] = Value::Array(rewards);
    let path = dir.join("config.yaml");
    std::fs::write(&path, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    path
}

#[test]
fn exported_grpo_rewards_score_the_shared_cases_as_tunelab_does() {
    let home = tempfile::tempdir().unwrap();
    let p = crate::reward::cases()["protocol"]["script"].clone();
    let cfg = grpo_config(
        &home,
        json!([{"name": "protocol", "command": {"run": ["./protocol.sh"], "workers": 1}},
               {"name": "judged", "judge": {"provider": "openai"}, "weight": 0.5}]),
    );
    let script = cfg.with_file_name("protocol.sh");
    std::fs::write(&script, format!("#!/bin/sh\n{}\n", p.as_str().unwrap())).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let dir = export(&home, cfg.to_str().unwrap(), "trl", "rewards", &[]);
    let (_, a) = trl_args(&dir);
    let funcs = &a["--reward_funcs"];
    assert_eq!(funcs.len(), 14, "{funcs:?}");
    assert_eq!(funcs.last().unwrap(), "tunelab_rewards.protocol");
    assert!(!funcs.iter().any(|f| f.contains("judged")), "{funcs:?}");
    assert_eq!(&a["--reward_weights"][3], "2");
    assert_eq!(
        lines(&dir.join("data/train.jsonl"))[0],
        json!({"prompt": [{"role": "user", "content": "Say a number."}], "reference": "42", "id": 7})
    );
    let readme = std::fs::read_to_string(dir.join("README.txt")).unwrap();
    for want in [
        "grpo.rewards[14]: judge `judged` (openai): left out of tunelab_rewards.py",
        "grpo.rewards: TRL's reward is the weighted sum of format, anchored,",
        &format!(
            "grpo.rewards[13]: command `protocol` runs as tunelab runs it, and names {}",
            script.display()
        ),
    ] {
        assert!(readme.contains(want), "{want} not in\n{readme}");
    }

    // A judge alone cannot be carried: refused before anything is written.
    let only = cfg.with_file_name("only-judge.yaml");
    let mut v = yaml(&cfg);
    v["grpo"]["rewards"] = json!([{"judge": {"provider": "openai"}}]);
    std::fs::write(&only, serde_yaml::to_string(&v).unwrap()).unwrap();
    let out = home.path().join("exports/only-judge");
    let (code, _, err) = run_offline(
        &home,
        &[
            "export-config",
            only.to_str().unwrap(),
            "--to",
            "trl",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("grpo.rewards: every reward is an LLM judge"),
        "{err}"
    );
    assert!(!out.join("data/train.jsonl").exists());

    // The Python module on the cases the Rust rewards are tested on.
    let Some(python) =
        common::python3("exported_grpo_rewards_score_the_shared_cases_as_tunelab_does")
    else {
        return;
    };
    let checker =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/check_trl_rewards.py");
    let o = std::process::Command::new(python)
        .arg(checker)
        .arg(&dir)
        .arg(common::fixture("rewards/cases.json"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{said}");
    assert_eq!(said.matches("ok   ").count(), 5, "{said}");
}

/// A project folder with `train.jsonl` for the presets that name it (the QLoRA ones).
fn project(home: &tempfile::TempDir) -> PathBuf {
    let dir = home.path().join("project");
    std::fs::create_dir_all(&dir).unwrap();
    let (code, _, err) = run_offline(home, &["demo"]);
    assert_eq!(code, 0, "{err}");
    std::fs::copy(
        home.path().join("data/demo/persona.jsonl"),
        dir.join("train.jsonl"),
    )
    .unwrap();
    dir
}

fn export_in(home: &tempfile::TempDir, cwd: &Path, args: &[&str]) -> PathBuf {
    let out = home
        .path()
        .join("exports")
        .join(args.join("_").replace(['/', '-', '.'], ""));
    let mut all = vec!["export-config"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", out.to_str().unwrap()]);
    let o = tunelab(home).current_dir(cwd).args(&all).output().unwrap();
    assert!(
        o.status.success(),
        "{all:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

#[test]
fn qlora_on_four_gpus_with_zero3() {
    let home = tempfile::tempdir().unwrap();
    let cwd = project(&home);
    let args = ["qwen3-0.6b-qlora", "--gpus", "4", "--zero", "3"];
    let trl = export_in(&home, &cwd, &[&args[..], &["--to", "trl"]].concat());
    let (_, a) = trl_args(&trl);
    for (flag, want) in [
        ("--model_name_or_path", "Qwen/Qwen3-0.6B"),
        ("--load_in_4bit", "true"),
        ("--bnb_4bit_quant_type", "nf4"),
        ("--use_bnb_nested_quant", "true"),
        ("--bnb_4bit_quant_storage", "bfloat16"),
        ("--bf16", "true"),
        ("--dtype", "bfloat16"),
        ("--gradient_checkpointing", "true"),
        ("--packing", "true"),
        ("--attn_implementation", "flash_attention_2"),
        ("--warmup_steps", "0.03"),
        ("--num_train_epochs", "2"),
        ("--accelerate_config", "accelerate.yaml"),
        // 8 × 2 over 4 GPUs: the batch is split so the global batch stays 16.
        ("--per_device_train_batch_size", "2"),
        ("--gradient_accumulation_steps", "2"),
    ] {
        assert_eq!(one(&a, flag), want, "{flag}");
    }
    let acc = yaml(&trl.join("accelerate.yaml"));
    assert_eq!(acc["distributed_type"], "DEEPSPEED");
    assert_eq!(acc["num_processes"], json!(4));
    assert_eq!(
        acc["deepspeed_config"],
        json!({"deepspeed_config_file": "deepspeed.json", "deepspeed_multinode_launcher": "standard", "zero3_init_flag": true})
    );
    assert!(
        acc.get("mixed_precision").is_none(),
        "the DeepSpeed file owns precision"
    );
    let ds = json_file(&trl.join("deepspeed.json"));
    assert_eq!(ds["zero_optimization"]["stage"], json!(3));
    assert_eq!(
        ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"],
        json!(true)
    );
    for k in [
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "gradient_clipping",
    ] {
        assert_eq!(ds[k], "auto", "{k}");
    }
    assert_eq!(ds["bf16"]["enabled"], "auto");
    let readme = std::fs::read_to_string(trl.join("README.txt")).unwrap();
    assert!(
        readme.contains("2 per GPU × 2 accumulation × 4 GPU(s) = 16"),
        "{readme}"
    );
    assert!(readme.contains("model.quantization: q4k"), "{readme}");
    assert!(
        readme.contains("DeepSpeed ZeRO-3 over 4 GPU(s)"),
        "{readme}"
    );

    let ax = export_in(&home, &cwd, &[&args[..], &["--to", "axolotl"]].concat());
    let c = yaml(&ax.join("config.yml"));
    for (k, v) in [
        ("base_model", json!("Qwen/Qwen3-0.6B")),
        ("adapter", json!("qlora")),
        ("load_in_4bit", json!(true)),
        ("deepspeed", json!("deepspeed.json")),
        ("bf16", json!(true)),
        ("warmup_ratio", json!(0.03)),
        ("num_epochs", json!(2)),
        ("sample_packing", json!(true)),
        ("attn_implementation", json!("flash_attention_2")),
        ("micro_batch_size", json!(2)),
        ("gradient_accumulation_steps", json!(2)),
        ("lora_dropout", json!(0.05)),
    ] {
        assert_eq!(c[k], v, "{k}");
    }
    assert_eq!(
        yaml(&ax.join("accelerate.yaml"))["distributed_type"],
        "DEEPSPEED"
    );
    let readme = std::fs::read_to_string(ax.join("README.txt")).unwrap();
    assert!(
        readme.contains("axolotl train config.yml --launcher accelerate -- --num_processes 4"),
        "{readme}"
    );

    let lf = export_in(
        &home,
        &cwd,
        &[&args[..], &["--to", "llamafactory"]].concat(),
    );
    let c = yaml(&lf.join("config.yaml"));
    for (k, v) in [
        ("model_name_or_path", json!("Qwen/Qwen3-0.6B")),
        ("quantization_bit", json!(4)),
        ("quantization_method", json!("bnb")),
        ("quantization_type", json!("nf4")),
        ("double_quantization", json!(true)),
        ("deepspeed", json!("deepspeed.json")),
        ("template", json!("qwen3")),
        ("bf16", json!(true)),
        ("warmup_ratio", json!(0.03)),
        ("neat_packing", json!(true)),
    ] {
        assert_eq!(c[k], v, "{k}");
    }
    assert!(c.get("disable_gradient_checkpointing").is_none());
    let readme = std::fs::read_to_string(lf.join("README.txt")).unwrap();
    assert!(
        readme.contains(
            "FORCE_TORCHRUN=1 NNODES=1 NPROC_PER_NODE=4 llamafactory-cli train config.yaml"
        ),
        "{readme}"
    );
}

#[test]
fn fsdp_moves_activation_checkpointing_into_fsdp() {
    let home = tempfile::tempdir().unwrap();
    let cwd = project(&home);
    let args = ["qwen3-0.6b-qlora", "--gpus", "4", "--fsdp"];
    let trl = export_in(&home, &cwd, &[&args[..], &["--to", "trl"]].concat());
    let (_, a) = trl_args(&trl);
    assert_eq!(one(&a, "--gradient_checkpointing"), "false");
    assert_eq!(one(&a, "--bnb_4bit_quant_storage"), "bfloat16");
    let acc = yaml(&trl.join("accelerate.yaml"));
    assert_eq!(acc["distributed_type"], "FSDP");
    assert_eq!(acc["num_processes"], json!(4));
    assert_eq!(acc["mixed_precision"], "bf16");
    assert_eq!(
        acc["fsdp_config"],
        json!({
            "fsdp_activation_checkpointing": true,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_cpu_ram_efficient_loading": false,
            "fsdp_offload_params": false,
            "fsdp_reshard_after_forward": true,
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_version": 2
        })
    );
    // PyYAML (YAML 1.1) would read a bare `no` as false: it is quoted.
    let text = std::fs::read_to_string(trl.join("accelerate.yaml")).unwrap();
    assert!(text.contains("downcast_bf16: \"no\""), "{text}");
    assert!(!trl.join("deepspeed.json").exists());

    let ax = export_in(&home, &cwd, &[&args[..], &["--to", "axolotl"]].concat());
    let c = yaml(&ax.join("config.yml"));
    assert_eq!(c["fsdp_version"], json!(2));
    assert_eq!(c["fsdp_config"]["activation_checkpointing"], json!(true));
    assert_eq!(c["fsdp_config"]["cpu_ram_efficient_loading"], json!(false));
    assert_eq!(c["gradient_checkpointing"], json!(false));
    assert!(c.get("deepspeed").is_none());

    let lf = export_in(
        &home,
        &cwd,
        &[&args[..], &["--to", "llamafactory"]].concat(),
    );
    let c = yaml(&lf.join("config.yaml"));
    assert_eq!(c["disable_gradient_checkpointing"], json!(true));
    assert!(c.get("deepspeed").is_none());
    let readme = std::fs::read_to_string(lf.join("README.txt")).unwrap();
    assert!(
        readme.contains(
            "accelerate launch --config_file accelerate.yaml -m llamafactory.launcher config.yaml"
        ),
        "{readme}"
    );

    // The demo model is local: FSDP wraps its decoder layer class by name.
    let dir = export(
        &home,
        "tiny-demo",
        "trl",
        "tiny-fsdp",
        &["--gpus", "2", "--fsdp", "--set", "train.dtype=bf16"],
    );
    let acc = yaml(&dir.join("accelerate.yaml"));
    assert_eq!(
        acc["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"],
        "LlamaDecoderLayer"
    );
    assert_eq!(
        acc["fsdp_config"]["fsdp_cpu_ram_efficient_loading"],
        json!(true)
    );
}

#[test]
fn unusable_requests_are_refused_by_name() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("x");
    let o = out.to_str().unwrap();
    let (code, _, err) = run_offline(
        &home,
        &["export-config", "tiny-demo", "--to", "nemo", "-o", o],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown --to \"nemo\"; expected axolotl, trl or llamafactory"),
        "{err}"
    );
    let (code, _, err) = run_offline(
        &home,
        &["export-config", "no-such-preset", "--to", "trl", "-o", o],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("no-such-preset: no such file, and no preset by that name"),
        "{err}"
    );
    let (code, _, err) = run_offline(
        &home,
        &[
            "export-config",
            "tiny-demo",
            "--to",
            "trl",
            "--zero",
            "4",
            "-o",
            o,
        ],
    );
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run_offline(
        &home,
        &[
            "export-config",
            "tiny-demo",
            "--to",
            "trl",
            "--zero",
            "3",
            "--fsdp",
            "-o",
            o,
        ],
    );
    assert_eq!(code, 2, "{err}");
    // Pairs under SFT: refused as the trainer refuses them.
    let (code, _, err) = run_offline(
        &home,
        &[
            "export-config",
            "tiny-demo",
            "--set",
            "data.train=demo/persona_dpo.jsonl",
            "--to",
            "trl",
            "-o",
            o,
        ],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "persona_dpo.jsonl: holds preference data; train.method sft needs conversations"
        ),
        "{err}"
    );
    assert!(!out.join("data/train.jsonl").exists());
}

/// The committed TRL output (a DPO run: the final adapter at the top, the Trainer state in
/// `checkpoint-10`, as `trl dpo` leaves them), copied so the import reads a private folder.
fn trl_run(home: &tempfile::TempDir) -> PathBuf {
    let src = common::fixture("scaleout/trl-run");
    let dst = home.path().join("cluster/trl-run");
    for rel in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "checkpoint-10/trainer_state.json",
    ] {
        let to = dst.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(src.join(rel), to).unwrap();
    }
    dst
}

#[test]
fn a_trl_run_comes_back_as_a_tunelab_run() {
    let home = tempfile::tempdir().unwrap();
    let src = trl_run(&home);
    let model = common::fixture("models/llama/model");
    let (code, out, err) = run_offline(
        &home,
        &[
            "runs",
            "import",
            src.to_str().unwrap(),
            "--name",
            "cluster-dpo",
            "--model",
            model.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_string();
    assert!(id.starts_with("cluster-dpo-"), "{out}");
    assert!(
        err.contains("imported 10 steps (10 train and 2 eval events)"),
        "{err}"
    );
    let root = runs::runs_root(&home.path().join("data"));
    let run = runs::RunDir::new(root.join(&id));

    // The events: the losses and steps of log_history, DPO's rewards under TRL's names.
    let state = json_file(&src.join("checkpoint-10/trainer_state.json"));
    let history = state["log_history"].as_array().unwrap();
    let (events, _) = runs::read_events(&run.events_path(), 0).unwrap();
    let trains: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Train(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let evals: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Eval(v) => Some(v.clone()),
            _ => None,
        })
        .collect();
    let want_train: Vec<&Value> = history.iter().filter(|e| e.get("loss").is_some()).collect();
    assert_eq!(trains.len(), 10);
    for (t, h) in trains.iter().zip(&want_train) {
        assert_eq!(t.step, h["step"].as_u64().unwrap());
        assert_eq!(t.loss, h["loss"].as_f64().unwrap());
        assert_eq!(t.lr, h["learning_rate"].as_f64().unwrap());
        assert_eq!(t.grad_norm, h["grad_norm"].as_f64().unwrap());
        assert_eq!(t.epoch, h["epoch"].as_f64().unwrap());
        assert_eq!(t.total_steps, 10);
        assert_eq!(
            t.metrics["rewards/margins"],
            h["rewards/margins"].as_f64().unwrap()
        );
        assert_eq!(
            t.metrics["rewards/accuracies"],
            h["rewards/accuracies"].as_f64().unwrap()
        );
        assert!(!t.metrics.contains_key("loss") && !t.metrics.contains_key("step"));
    }
    assert_eq!(evals.iter().map(|e| e.step).collect::<Vec<_>>(), [5, 10]);
    let last_eval = history
        .iter()
        .rev()
        .find(|e| e.get("eval_loss").is_some())
        .unwrap();
    assert_eq!(evals[1].eval_loss, 0.4821);
    assert_eq!(
        evals[1].metrics["rewards/margins"],
        last_eval["eval_rewards/margins"].as_f64().unwrap()
    );
    assert!(
        evals[1]
            .metrics
            .keys()
            .all(|k| !k.starts_with("eval_") && k != "runtime"),
        "{:?}",
        evals[1].metrics
    );
    assert!(
        matches!(&events[0].kind, EventKind::Start(s) if s.method.as_deref() == Some("dpo") && s.total_steps == 10)
    );
    assert!(
        matches!(&events.last().unwrap().kind, EventKind::Done { step: 10, best_eval_loss: Some(l), .. } if *l == 0.4821)
    );
    // The typed writer's lines: every line reads back as the same event.
    let raw = common::event_lines(&run.events_path());
    assert_eq!(raw.len(), events.len());
    assert_eq!(raw[1]["type"], "train");
    assert_eq!(raw[1]["rewards/chosen"], json!(0.0));

    // status.json: done, with the losses a list shows.
    let s = run.read_status().unwrap();
    assert_eq!(s.state, RunState::Done);
    assert_eq!((s.step, s.total_steps, s.pid), (10, 10, None));
    assert_eq!(s.last_loss, Some(0.4611));
    assert_eq!(s.best_eval_loss, Some(0.4821));
    let listed = runs::list(&root);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state_label(), "done");

    // The config, rebuilt from the adapter and the given model.
    let cfg = tunelab::config::RunConfig::load(&run.config()).unwrap();
    assert_eq!(cfg.model.path, model.to_str().unwrap());
    assert_eq!((cfg.lora.r, cfg.lora.alpha), (4, 8.0));
    assert_eq!(
        cfg.lora.target_modules,
        [
            "q_proj",
            "k_proj",
            "o_proj",
            "v_proj",
            "down_proj",
            "gate_proj",
            "up_proj"
        ]
    );
    assert_eq!(cfg.train.method, tunelab::config::Method::Dpo);
    assert_eq!((cfg.train.max_steps, cfg.train.batch_size), (Some(10), 4));

    // `runs show` reads it; the adapter is a PEFT adapter the base model loads.
    let (code, out, err) = run_offline(&home, &["runs", "show", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("state      done"), "{out}");
    assert!(out.contains("step       10/10"), "{out}");
    assert!(out.contains("last loss  0.4611"), "{out}");
    assert!(out.contains("best eval  0.4821"), "{out}");
    assert!(
        out.contains(&format!("adapter    {}", run.adapter().display())),
        "{out}"
    );
    let mut m =
        tunelab::model::Model::load(&model, candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap();
    tunelab::model::peft::load(&mut m, &run.adapter()).unwrap();
    assert_eq!(m.lora.as_ref().map(|l| l.r), Some(4));
    assert_eq!(
        std::fs::read(run.adapter().join("adapter_model.safetensors")).unwrap(),
        std::fs::read(src.join("adapter_model.safetensors")).unwrap()
    );
}

#[test]
fn an_export_folder_gives_its_config_back_and_a_summary_sets_the_times() {
    let home = tempfile::tempdir().unwrap();
    // An Axolotl/LLaMA-Factory-style output: save_state() put trainer_state.json at the top
    // with the final summary; export-config's tunelab.yaml is one folder up.
    let export_dir = export(&home, "tiny-demo-dpo", "axolotl", "ax", &[]);
    let out = export_dir.join("output");
    std::fs::create_dir_all(&out).unwrap();
    let src = common::fixture("scaleout/trl-run");
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(src.join(f), out.join(f)).unwrap();
    }
    let mut state = json_file(&src.join("checkpoint-10/trainer_state.json"));
    state["log_history"].as_array_mut().unwrap().push(json!({
        "epoch": 2.0, "step": 10, "total_flos": 0.0, "train_loss": 0.6,
        "train_runtime": 120.0, "train_samples_per_second": 0.667, "train_steps_per_second": 0.083
    }));
    std::fs::write(out.join("trainer_state.json"), state.to_string()).unwrap();
    let (code, stdout, err) = run_offline(&home, &["runs", "import", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("config from") && err.contains("tunelab.yaml (export-config's copy)"),
        "{err}"
    );
    let id = stdout.trim();
    assert!(id.starts_with("tiny-demo-dpo-"), "{id}");
    let run = runs::RunDir::new(runs::runs_root(&home.path().join("data")).join(id));
    let cfg = tunelab::config::RunConfig::load(&run.config()).unwrap();
    assert_eq!(cfg.name.as_deref(), Some("tiny-demo-dpo"));
    assert_eq!(cfg.dpo.beta, 0.1);
    let s = run.read_status().unwrap();
    assert!((s.updated - s.started - 120.0).abs() < 1e-6, "{s:?}");
    let (events, _) = runs::read_events(&run.events_path(), 0).unwrap();
    let t5 = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Train(t) if t.step == 5 => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        (t5.elapsed - 60.0).abs() < 1e-6 && (t5.eta - 60.0).abs() < 1e-6,
        "{t5:?}"
    );
}

#[test]
fn import_names_what_is_missing() {
    let home = tempfile::tempdir().unwrap();
    let empty = home.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, _, err) = run_offline(&home, &["runs", "import", empty.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{}: no trainer_state.json", empty.display())),
        "{err}"
    );

    // A state but no adapter.
    let src = trl_run(&home);
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::remove_file(src.join(f)).unwrap();
    }
    let (code, _, err) = run_offline(&home, &["runs", "import", src.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{}: no PEFT adapter", src.display())),
        "{err}"
    );
    std::fs::write(src.join("adapter_model.bin"), b"pickle").unwrap();
    let (_, _, err) = run_offline(&home, &["runs", "import", src.to_str().unwrap()]);
    assert!(err.contains("adapter_model.bin"), "{err}");

    // No base model anywhere: the run comes in without a config, and says why.
    let src = home.path().join("cluster2");
    std::fs::create_dir_all(src.join("checkpoint-10")).unwrap();
    let fx = common::fixture("scaleout/trl-run");
    for rel in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "checkpoint-10/trainer_state.json",
    ] {
        std::fs::copy(fx.join(rel), src.join(rel)).unwrap();
    }
    let (code, out, err) = run_offline(&home, &["runs", "import", src.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("no config.yaml: the adapter names no base model"),
        "{err}"
    );
    let run = runs::RunDir::new(runs::runs_root(&home.path().join("data")).join(out.trim()));
    assert!(out.trim().starts_with("cluster2-"), "{out}");
    assert!(!run.config().exists());
    assert_eq!(run.read_status().unwrap().state, RunState::Done);

    let (code, _, err) = run_offline(
        &home,
        &[
            "runs",
            "import",
            home.path().join("nowhere").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("nowhere: no such folder"), "{err}");
}
