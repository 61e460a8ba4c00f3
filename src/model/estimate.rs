//! What a run will cost before it starts: trainable LoRA parameters and a memory estimate
//! (frozen weights, LoRA state, activations, logits) to hold against the GPU or RAM.

use super::config::ModelConfig;
use crate::lora::LoraConfig;
use serde::Serialize;

/// LoRA parameters `lora` adds to a model of shape `c`: r·(in + out) per targeted projection.
pub fn trainable_parameters(c: &ModelConfig, lora: &LoraConfig) -> usize {
    let per_layer: usize = c
        .projection_shapes()
        .iter()
        .filter(|(n, _, _)| lora.targets(n))
        .map(|(_, i, o)| lora.r * (i + o))
        .sum();
    per_layer * c.num_hidden_layers
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryEstimate {
    pub weights: u64,
    /// LoRA parameters, gradients and two AdamW moments, all f32.
    pub lora_state: u64,
    pub activations: u64,
    pub logits: u64,
    /// On the host: the process itself (code, tokenizer, thread stacks, the allocator's
    /// slack), measured on the smallest runs; 0 for a GPU's memory.
    pub runtime: u64,
    pub total: u64,
}

/// What a training process holds besides the model and the step (`MemoryEstimate::runtime`):
/// `tunelab bench train` on bench-tiny at 1 × 64 peaks at 67 MiB, of which the parts above
/// account for 25.
pub const HOST_RUNTIME: u64 = 40 << 20;

/// Bytes the frozen base occupies under `quant`: each projection at its block type's bits
/// (after llama.cpp's fallbacks for widths a block cannot take), everything else in the
/// compute dtype. Equals what loading measures (`QuantReport::base_bytes`).
pub fn base_bytes(c: &ModelConfig, plan: &super::QuantPlan, compute_bytes: u64) -> u64 {
    let matrix = |inp: usize, out: usize| -> u64 {
        let n = (inp * out) as u64;
        if plan.quantization == super::Quantization::Nf4 {
            return if super::nf4::Nf4Tensor::fits(inp) {
                super::nf4::bytes(out, inp)
            } else {
                n * compute_bytes
            };
        }
        match plan
            .quantization
            .ggml()
            .and_then(|t| super::quant::block_type(t, inp))
        {
            Some(t) => n / t.block_size() as u64 * t.type_size() as u64,
            None => n * compute_bytes,
        }
    };
    let projections: u64 = c
        .projection_shapes()
        .iter()
        .map(|&(_, inp, out)| matrix(inp, out))
        .sum::<u64>()
        * c.num_hidden_layers as u64;
    let head_params = (c.vocab_size * c.hidden_size) as u64;
    // An untied head quantized like the projections.
    let head_saving = if plan.head && !c.tie_word_embeddings {
        head_params * compute_bytes - matrix(c.hidden_size, c.vocab_size)
    } else {
        0
    };
    let rest = c.parameter_count() as u64 - projection_params(c);
    projections + rest * compute_bytes - head_saving
}

/// The frozen base as a training run holds it: [`base_bytes`], plus on the host the second
/// copy that an unquantized f32 base's projections and head take when packed into
/// microkernel panels ([`crate::model::Model::prefer_training_layout`]; it packs only where
/// this CPU has the kernels and the copy fits, so this is the larger of the two outcomes).
pub fn training_weights(
    c: &ModelConfig,
    plan: &super::QuantPlan,
    compute_bytes: u64,
    host: bool,
) -> u64 {
    let base = base_bytes(c, plan, compute_bytes);
    let packs = host
        && compute_bytes == 4
        && plan.quantization == super::Quantization::None
        && crate::ops::panels::Isa::detect().is_some();
    if !packs {
        return base;
    }
    base + (projection_params(c) + (c.vocab_size * c.hidden_size) as u64) * compute_bytes
}

/// Values in the layers' projection matrices.
fn projection_params(c: &ModelConfig) -> u64 {
    c.projection_shapes()
        .iter()
        .map(|&(_, i, o)| (i * o) as u64)
        .sum::<u64>()
        * c.num_hidden_layers as u64
}

/// Bytes a LoRA SFT run needs, given the frozen base's `weights` bytes ([`base_bytes`]):
/// the base, the LoRA state, the activations the hand-written backward keeps, one chunk of
/// the head's logits, and on the `host` the process's own runtime. Checked against measured
/// peak RSS by `scripts/bench_memory.py`.
#[allow(clippy::too_many_arguments)]
pub fn memory(
    c: &ModelConfig,
    lora: &LoraConfig,
    weights: u64,
    compute_bytes: u64,
    batch: usize,
    seq: usize,
    checkpointing: bool,
    host: bool,
) -> MemoryEstimate {
    let lora_state = trainable_parameters(c, lora) as u64 * 16;
    let tokens = (batch * seq) as u64;
    let h = c.hidden_size as u64;
    let q = (c.num_attention_heads * c.head_dim) as u64;
    let heads = c.num_attention_heads as u64;
    let inter = c.intermediate_size as u64;
    // What `train::manual` keeps per token of a layer: its input and two normed copies, the
    // rotated queries, keys and values repeated to every head, the attention output, the
    // attention probabilities (one row of `seq` per head), and the MLP's gate, up and
    // activated products. Families add: q and k before their norms (Qwen3, Gemma 3), the
    // attention and MLP outputs before Gemma's sandwich norms, and the tanh of soft-capped
    // scores (another row of `seq` per head).
    let f = c.family();
    let kv = (c.num_key_value_heads * c.head_dim) as u64;
    let qk_norm = if f.qk_norm { q + kv } else { 0 };
    let sandwich = if f.sandwich_norms { 2 * h } else { 0 };
    let capped = if c.attn_logit_softcapping.is_some() {
        2
    } else {
        1
    };
    let per_token = 4 * h + 4 * q + capped * heads * seq as u64 + 3 * inter + qk_norm + sandwich;
    let layer = tokens * per_token * compute_bytes;
    let layers = c.num_hidden_layers as u64;
    // While a layer's backward runs, its saved tensors (recomputed, with checkpointing),
    // the gradients of each of them and the temporaries between are in flight: three
    // layers' worth (fitted on bench-tiny, where attention at 512 positions dominates a
    // layer, and SmolLM2, where the MLP does; `scripts/bench_memory.py`).
    let in_flight = 3 * layer;
    let activations = if checkpointing {
        layers * tokens * h * compute_bytes + in_flight
    } else {
        layers * layer + in_flight
    };
    // Per target row of one chunk: the logits and their gradient in the compute dtype, and
    // the f32 copies on the way. On the host one (the softmax is taken in place, the
    // gradient written into it); elsewhere five (cast, log-softmax, exp, the one-hot step,
    // the scaling).
    let rows = tokens.min(super::compute::head_chunk_rows(c.vocab_size) as u64);
    let copies = if host { 4 } else { 20 };
    let logits = rows * c.vocab_size as u64 * (2 * compute_bytes + copies);
    let runtime = if host { HOST_RUNTIME } else { 0 };
    let total = weights + lora_state + activations + logits + runtime;
    MemoryEstimate {
        weights,
        lora_state,
        activations,
        logits,
        runtime,
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A CPU run on an f32 base counts the packed second copy of the projections and the
    /// head (SmolLM2: 30 × 3.54M + 49,152 × 576 values); a quantized, bf16 or GPU run does not.
    #[test]
    fn a_cpu_f32_run_counts_the_packed_copy() {
        let c =
            ModelConfig::from_json(&crate::model::random::shape("smollm2-135m").unwrap()).unwrap();
        let none: crate::model::QuantPlan = crate::model::Quantization::None.into();
        let base = base_bytes(&c, &none, 4);
        let copy = (30 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536) + 49_152 * 576) * 4;
        let packs = crate::ops::panels::Isa::detect().is_some();
        let host = training_weights(&c, &none, 4, true);
        assert_eq!(host, base + if packs { copy } else { 0 });
        assert_eq!(training_weights(&c, &none, 4, false), base);
        assert_eq!(
            training_weights(&c, &none, 2, true),
            base_bytes(&c, &none, 2)
        );
        let q4k = crate::model::QuantPlan {
            quantization: crate::model::Quantization::Q4k,
            head: false,
            cache: None,
        };
        assert_eq!(training_weights(&c, &q4k, 4, true), base_bytes(&c, &q4k, 4));
    }

    /// The `llama-3.1-8b-qlora` preset's run (q4k base, r16 on all linear layers, seq 2048,
    /// batch 1, checkpointing, bf16) is estimated at 8.4 GiB: a 12 GB consumer GPU holds it
    /// with room for the CUDA context.
    #[test]
    fn an_8b_qlora_run_fits_a_12_gb_gpu() {
        let shape = crate::model::random::shape("llama-3.1-8b").unwrap();
        let c = ModelConfig::from_json(&shape).unwrap();
        let lora = LoraConfig {
            r: 16,
            alpha: 32.0,
            dropout: 0.05,
            target_modules: vec!["all-linear".into()],
            use_rslora: false,
        };
        let plan = crate::model::QuantPlan {
            quantization: crate::model::Quantization::Q4k,
            head: true,
            cache: None,
        };
        let base = base_bytes(&c, &plan, 2);
        let e = memory(&c, &lora, base, 2, 1, 2048, true, false);
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        eprintln!(
            "8B QLoRA: base {:.2} · LoRA state {:.2} · activations {:.2} · logits {:.2} · total {:.2} GiB",
            gib(e.weights),
            gib(e.lora_state),
            gib(e.activations),
            gib(e.logits),
            gib(e.total)
        );
        assert!(gib(e.total) <= 8.5, "{e:?}: {:.2} GiB", gib(e.total));
        // The same run on a bf16 base does not fit: the base alone is 15 GiB.
        let none = crate::model::Quantization::None.into();
        let dense = memory(&c, &lora, base_bytes(&c, &none, 2), 2, 1, 2048, true, false);
        eprintln!(
            "8B LoRA, bf16 base: base {:.2} · total {:.2} GiB",
            gib(dense.weights),
            gib(dense.total)
        );
        assert!(gib(dense.weights) > 14.0, "{dense:?}");
        // Without chunking the head, the logits alone would take 2048 × 128,256 × 12 bytes.
        assert!(e.logits < 1 << 30);
    }

    /// The #35 shape `bench train` measures (`--shape llama-3.1-8b --quantization q4k
    /// --quantize-head --batch 1 --seq 128 --rank 16 --checkpointing`, f32 on the CPU): its
    /// parts, which the measured peak RSS (7.12 GiB, BENCHMARKS.md) is held against.
    #[test]
    fn the_8b_bench_shape_has_these_parts() {
        let c =
            ModelConfig::from_json(&crate::model::random::shape("llama-3.1-8b").unwrap()).unwrap();
        let lora = LoraConfig {
            r: 16,
            alpha: 32.0,
            dropout: 0.0,
            target_modules: vec!["all-linear".into()],
            use_rslora: false,
        };
        let plan = crate::model::QuantPlan {
            quantization: crate::model::Quantization::Q4k,
            head: true,
            cache: None,
        };
        let base = base_bytes(&c, &plan, 4);
        let e = memory(&c, &lora, base, 4, 1, 128, true, true);
        // q4k projections (4.5 bits), the q4k head, the embedding and norms in f32.
        assert_eq!(e.weights, 6_323_781_632);
        // 41,943,040 LoRA parameters × (weight, gradient, two moments) × 4 bytes.
        assert_eq!(e.lora_state, 41_943_040 * 16);
        // 32 layer inputs of 128 × 4096 f32, and three layers in flight.
        assert_eq!(e.activations, 32 * 128 * 4096 * 4 + 3 * 128 * 79_872 * 4);
        assert_eq!(e.activations, 189_792_256);
        // One chunk of 128 target rows × 128,256 logits: f32 logits and gradient, one copy.
        assert_eq!(e.logits, 128 * 128_256 * 12);
        assert_eq!(e.runtime, HOST_RUNTIME);
        assert_eq!(e.total, 7_423_606_784);
        assert!(e.total as f64 / (1u64 << 30) as f64 <= 7.09);
    }

    #[test]
    fn counts_match_a_built_model() {
        let v = json!({"architectures": ["LlamaForCausalLM"], "vocab_size": 128, "hidden_size": 64,
                       "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "num_key_value_heads": 2, "rms_norm_eps": 1e-5});
        let c = ModelConfig::from_json(&v).unwrap();
        let lora = LoraConfig {
            r: 4,
            target_modules: vec!["q_proj".into(), "down_proj".into()],
            ..LoraConfig::default()
        };
        // q: 4·(64+64), down: 4·(96+64), two layers
        assert_eq!(trainable_parameters(&c, &lora), 2 * (4 * 128 + 4 * 160));
        let mut m = crate::model::random::random_model(
            &v,
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        m.add_lora(&lora, 0).unwrap();
        assert_eq!(m.trainable_parameters(), trainable_parameters(&c, &lora));
        let weights = base_bytes(&c, &crate::model::Quantization::None.into(), 4);
        assert_eq!(weights, c.parameter_count() as u64 * 4);
        assert_eq!(weights, m.resident_bytes());
        let e = memory(&c, &lora, weights, 4, 2, 16, false, true);
        assert_eq!(
            e.total,
            e.weights + e.lora_state + e.activations + e.logits + e.runtime
        );
        assert!(memory(&c, &lora, weights, 4, 2, 16, true, true).activations < e.activations);
    }
}

/// The estimate for each of `world` GPUs sharing a run: ZeRO-2 splits LoRA's gradients and
/// AdamW moments (three quarters of its state), ZeRO-3 and FSDP the frozen weights and the
/// whole LoRA state. Activations and logits are each GPU's own micro-batch's already.
pub fn per_gpu(
    m: &MemoryEstimate,
    world: usize,
    shards_state: bool,
    shards_weights: bool,
) -> MemoryEstimate {
    let w = world.max(1) as u64;
    let weights = if shards_weights {
        m.weights.div_ceil(w)
    } else {
        m.weights
    };
    let lora_state = if shards_weights {
        m.lora_state.div_ceil(w)
    } else if shards_state {
        m.lora_state / 4 + (m.lora_state - m.lora_state / 4).div_ceil(w)
    } else {
        m.lora_state
    };
    MemoryEstimate {
        weights,
        lora_state,
        activations: m.activations,
        logits: m.logits,
        runtime: m.runtime,
        total: m.total - m.weights - m.lora_state + weights + lora_state,
    }
}

#[cfg(test)]
mod per_gpu_tests {
    use super::*;

    #[test]
    fn sharding_divides_what_it_shards() {
        let m = MemoryEstimate {
            weights: 8000,
            lora_state: 400,
            activations: 300,
            logits: 100,
            runtime: 0,
            total: 8800,
        };
        assert_eq!(per_gpu(&m, 8, false, false), m);
        let z2 = per_gpu(&m, 8, true, false);
        assert_eq!(
            (z2.weights, z2.lora_state, z2.total),
            (8000, 100 + 38, 8538)
        );
        let z3 = per_gpu(&m, 8, true, true);
        assert_eq!((z3.weights, z3.lora_state, z3.total), (1000, 50, 1450));
    }
}
