//! GRPO against TRL 1.16's own `GRPOTrainer._compute_loss` (tests/reference/
//! make_grpo_fixture.py, on the tiny Llama fixture with its LoRA adapter): per-token
//! log-probs, advantages for every `scale_rewards`, the loss of every `loss_type` with the
//! ratio moved (as on the second of `num_iterations`) and on policy, GSPO's sequence level,
//! clip-higher, the KL term, clip ratios and LoRA gradients, inside the objective on both
//! backward paths and through `tunelab eval --grpo`.

use crate::common;
use candle_core::{DType, Device};
use serde_json::Value;
use tunelab::config::GrpoSection;
use tunelab::model::Model;
use tunelab::train::grpo::{fixed_rollout, FixedBatch, FixedGroup};
use tunelab::train::micro::StepArgs;
use tunelab::train::Grads;

fn fixture() -> Value {
    let p = common::fixture("grpo/expected.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

fn policy() -> Model {
    let dir = common::fixture("models/llama");
    let mut m = Model::load(&dir.join("model"), DType::F32, &Device::Cpu).unwrap();
    tunelab::model::peft::load(&mut m, &dir.join("adapter")).unwrap();
    m
}

fn ids(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn groups(exp: &Value) -> Vec<FixedGroup> {
    exp["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| FixedGroup {
            prompt: ids(&g["prompt"]),
            text: String::new(),
            completions: g["completions"]
                .as_array()
                .unwrap()
                .iter()
                .map(ids)
                .collect(),
            rewards: serde_json::from_value(g["rewards"].clone()).unwrap(),
        })
        .collect()
}

fn section(exp: &Value, case: &Value) -> GrpoSection {
    GrpoSection {
        loss_type: case["loss_type"].as_str().unwrap().parse().unwrap(),
        beta: case["beta"].as_f64().unwrap(),
        epsilon: case["epsilon"].as_f64().unwrap(),
        epsilon_high: case["epsilon_high"].as_f64(),
        importance_sampling_level: case["importance_sampling_level"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        scale_rewards: case["scale_rewards"].as_str().unwrap().parse().unwrap(),
        max_completion_length: exp["max_completion_length"].as_u64().unwrap() as usize,
        num_generations: exp["num_generations"].as_u64().unwrap() as usize,
        ..Default::default()
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-8)
}

/// A loss within `rel` of TRL's, or within 1e-6 absolute: on policy the policy term is
/// `−mean(A)` over group-centred advantages, zero up to TRL's f32 rounding (a few 1e-8 per
/// completion), so a loss of 1e-4 carries that rounding at 1e-4 relative.
fn loss_close(a: f64, b: f64, rel: f64) -> bool {
    close(a, b, rel) || (a - b).abs() <= 1e-6
}

/// The policy's and the reference's per-token log-probs and the advantages of every
/// `scale_rewards` equal TRL's.
#[test]
fn log_probs_and_advantages_match_trl() {
    let exp = fixture();
    let model = policy();
    let gs = groups(&exp);
    for scale in ["group", "batch", "none"] {
        let cfg = GrpoSection {
            scale_rewards: scale.parse().unwrap(),
            ..Default::default()
        };
        let (_, r) = fixed_rollout(&gs, &cfg);
        let want = floats(&exp["advantages"][scale]);
        for (c, w) in r.completions.iter().zip(&want) {
            assert!(
                close(c.advantage, f64::from(*w), 1e-5),
                "{scale}: {} vs {w}",
                c.advantage
            );
        }
    }
    let cfg = GrpoSection {
        beta: 0.04,
        num_iterations: 2,
        ..Default::default()
    };
    let (prompts, mut r) = fixed_rollout(&gs, &cfg);
    let batch = FixedBatch {
        prompts: &prompts,
        cfg: &cfg,
        pad_id: 0,
    };
    let bypass = |mb: &tunelab::batch::MicroBatch| {
        tunelab::train::reference::Reference::Bypass
            .with(&model, |m| tunelab::eval::token_logps(m, mb, 1.0))
    };
    batch.score_logps(&model, &bypass, &mut r, 3).unwrap();
    for (i, c) in r.completions.iter().enumerate() {
        for (who, got) in [
            ("per_token_logps", c.old.as_ref().unwrap()),
            ("ref_per_token_logps", c.reference.as_ref().unwrap()),
        ] {
            let want = floats(&exp[who][i]);
            assert_eq!(got.len(), want.len(), "{who} {i}");
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    close(f64::from(*g), f64::from(*w), 1e-5),
                    "{who} {i}: {g} vs {w}"
                );
            }
        }
    }
}

/// Every case's loss, metrics and LoRA gradients, inside the objective's micro-step, on the
/// hand-written backward and on autograd.
#[test]
fn loss_metrics_and_gradients_match_trl_on_both_backward_paths() {
    let exp = fixture();
    let gs = groups(&exp);
    let cases = exp["cases"].as_object().unwrap();
    assert!(cases.len() >= 13, "{}", cases.len());
    for (name, case) in cases {
        let cfg = section(&exp, case);
        for autograd in [false, true] {
            let model = policy();
            let (prompts, mut r) = fixed_rollout(&gs, &cfg);
            let batch = FixedBatch {
                prompts: &prompts,
                cfg: &cfg,
                pad_id: 0,
            };
            let bypass = |mb: &tunelab::batch::MicroBatch| {
                tunelab::train::reference::Reference::Bypass
                    .with(&model, |m| tunelab::eval::token_logps(m, mb, 1.0))
            };
            batch.score_logps(&model, &bypass, &mut r, 8).unwrap();
            if case["old"] == "moved" {
                for (i, c) in r.completions.iter_mut().enumerate() {
                    c.old = Some(floats(&exp["old_per_token_logps"][i]));
                }
            }
            let items: Vec<usize> = (0..r.completions.len()).collect();
            let vars = model.lora_vars();
            let mut grads = Grads::new(vars.iter().map(|(_, v)| v.clone()).collect());
            let args = StepArgs {
                autograd,
                ..StepArgs::plain(items.len())
            };
            let out = batch
                .micro_step(&model, &r, &items, 1, &args, &mut grads)
                .unwrap();
            let what = format!("{name} (autograd {autograd})");
            let want = case["loss"].as_f64().unwrap();
            assert!(
                loss_close(out.loss, want, 1e-5),
                "{what}: loss {} vs {want}",
                out.loss
            );
            for (k, w) in case["metrics"].as_object().unwrap() {
                if k == "entropy" {
                    continue;
                }
                let got = out.metrics.get(k).copied().unwrap_or(f64::NAN);
                let w = w.as_f64().unwrap();
                assert!(
                    close(got, w, 1e-5) || (got - w).abs() < 1e-9,
                    "{what}: {k} {got} vs {w}"
                );
            }
            assert_eq!(
                out.metrics.contains_key("kl"),
                case["beta"].as_f64().unwrap() != 0.0,
                "{what}: kl only with β"
            );
            let norm = grads.norm().unwrap();
            let want_norm = case["grad_norm"].as_f64().unwrap();
            assert!(
                close(norm, want_norm, 1e-4),
                "{what}: grad norm {norm} vs {want_norm}"
            );
            common::assert_grads_match_fixture(
                &vars,
                &grads,
                &format!("grpo/{}", case["grads"].as_str().unwrap()),
                &what,
            );
        }
    }
}

/// Splitting the generation batch into micro-batches changes nothing for DAPO (its
/// normalizer is the whole batch's tokens): two halves accumulate to the one-batch gradient.
#[test]
fn accumulation_equals_one_batch_for_dapo() {
    let exp = fixture();
    let case = &exp["cases"]["dapo_moved"];
    let cfg = section(&exp, case);
    let model = policy();
    let (prompts, mut r) = fixed_rollout(&groups(&exp), &cfg);
    let batch = FixedBatch {
        prompts: &prompts,
        cfg: &cfg,
        pad_id: 0,
    };
    let bypass = |mb: &tunelab::batch::MicroBatch| {
        tunelab::train::reference::Reference::Bypass
            .with(&model, |m| tunelab::eval::token_logps(m, mb, 1.0))
    };
    batch.score_logps(&model, &bypass, &mut r, 8).unwrap();
    for (i, c) in r.completions.iter_mut().enumerate() {
        c.old = Some(floats(&exp["old_per_token_logps"][i]));
    }
    let vars = model.lora_vars();
    let mut grads = Grads::new(vars.iter().map(|(_, v)| v.clone()).collect());
    let mut loss = 0.0;
    for half in [vec![0, 1, 2, 3], vec![4, 5, 6, 7]] {
        let out = batch
            .micro_step(&model, &r, &half, 2, &StepArgs::plain(4), &mut grads)
            .unwrap();
        loss += out.loss;
    }
    let want = case["loss"].as_f64().unwrap();
    assert!(close(loss, want, 1e-5), "{loss} vs {want}");
    common::assert_grads_match_fixture(
        &vars,
        &grads,
        "grpo/grads_dapo_moved.safetensors",
        "halves",
    );
}

/// `tunelab eval --grpo` on the fixture's groups as text (word `wN` is token N, the template
/// emits the message content alone): every on-policy case's loss, gradient norm, KL and
/// advantages equal TRL's, on both backward paths.
#[test]
fn eval_grpo_prints_trls_numbers() {
    let exp = fixture();
    let h = tempfile::tempdir().unwrap();
    let model = common::fixture_model_with_ids_tokenizer(h.path());
    let template = h.path().join("content.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}{{ m['content'] }}{% endfor %}",
    )
    .unwrap();
    let adapter = common::fixture("models/llama/adapter");
    let data = common::fixture("grpo/groups.jsonl");
    let mut checked = 0;
    for (name, case) in exp["cases"].as_object().unwrap() {
        if case["old"] != "on_policy" {
            continue;
        }
        let cfg = section(&exp, case);
        for autograd in [false, true] {
            let beta = cfg.beta.to_string();
            let eps = cfg.epsilon.to_string();
            let mcl = cfg.max_completion_length.to_string();
            let mut args = vec![
                "eval",
                "--grpo",
                "--json",
                "--model",
                model.to_str().unwrap(),
                "--adapter",
                adapter.to_str().unwrap(),
                "--template",
                template.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
                "--loss-type",
                case["loss_type"].as_str().unwrap(),
                "--beta",
                &beta,
                "--epsilon",
                &eps,
                "--max-completion-length",
                &mcl,
                "--scale-rewards",
                case["scale_rewards"].as_str().unwrap(),
            ];
            if autograd {
                args.push("--autograd");
            }
            let (code, out, err) = common::run(&h, &args);
            assert_eq!(code, 0, "{name}: {err}");
            let v: Value = serde_json::from_str(out.trim()).unwrap();
            let what = format!("{name} (autograd {autograd})");
            let (got, want) = (v["loss"].as_f64().unwrap(), case["loss"].as_f64().unwrap());
            assert!(loss_close(got, want, 1e-5), "{what}: loss {got} vs {want}");
            let (got, want) = (
                v["grad_norm"].as_f64().unwrap(),
                case["grad_norm"].as_f64().unwrap(),
            );
            assert!(close(got, want, 1e-4), "{what}: grad_norm {got} vs {want}");
            match case["metrics"]["kl"].as_f64() {
                Some(w) => assert!(close(v["kl"].as_f64().unwrap(), w, 1e-5), "{what}: {v}"),
                None => assert!(v["kl"].is_null(), "{what}: {v}"),
            }
            let want = floats(&exp["advantages"][case["scale_rewards"].as_str().unwrap()]);
            for (g, w) in v["advantages"].as_array().unwrap().iter().zip(&want) {
                assert!(
                    close(g.as_f64().unwrap(), f64::from(*w), 1e-5),
                    "{what}: {g} vs {w}"
                );
            }
            assert_eq!(v["completions"], 8);
            checked += 1;
        }
    }
    assert!(checked >= 12, "{checked}");
}

/// A line that is not a group names its line and field.
#[test]
fn eval_grpo_names_the_bad_line_and_field() {
    let h = tempfile::tempdir().unwrap();
    let model = common::fixture_model_with_ids_tokenizer(h.path());
    let data = h.path().join("groups.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\": \"w5 w6\", \"completions\": [\"w7\", \"w8\"], \"rewards\": [1, 0]}\n{\"prompt\": \"w5\", \"completions\": [\"w7\", \"w8\"], \"rewards\": [1]}\n",
    )
    .unwrap();
    let (code, _, err) = common::run(
        &h,
        &[
            "eval",
            "--grpo",
            "--model",
            model.to_str().unwrap(),
            "--template",
            "chatml",
            "--data",
            data.to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("groups.jsonl:2: rewards: expected one number per completion"),
        "{err}"
    );
}
