//! The model families tunelab runs, in one table. A family is a set of architecture switches
//! over the one decoder in `model::decoder` (q/k norms, Gemma's `1 + w` norms and scaled
//! embeddings, sandwich norms, fused projections, the activation) plus what the rest of the
//! workbench needs to know about it: its Hugging Face and GGUF names and quirks, its config
//! defaults (sliding-window layers, tied embeddings, Gemma's attention scalar), LoRA target
//! modules, default chat template and stop tokens, and what `model init-tiny` switches on.
//! Config parsing, GGUF reading and writing and the tiny-model writer read this table; none
//! of them names a family. Adding a family is a variant and an entry here plus its distinct
//! ops (in the decoder, switched by a field of this table).

/// A decoder family, by what its `config.json` declares. Its command-line name
/// (`--arch`) is its lowercase name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    strum::EnumIter,
    strum::IntoStaticStr,
    clap::ValueEnum,
)]
#[strum(serialize_all = "lowercase")]
pub enum Arch {
    // The plain decoder, first in the table (clap would show a doc comment in `--help`).
    #[default]
    Llama,
    Qwen2,
    Qwen3,
    Mistral,
    Gemma2,
    Gemma3,
    Phi3,
}

/// The MLP's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`, Gemma's GeGLU).
    GeluTanh,
}

impl Activation {
    /// The activation named by `hidden_act` / `hidden_activation`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "silu" | "swish" => Some(Activation::Silu),
            "gelu_pytorch_tanh" | "gelu_tanh" | "gelu_new" => Some(Activation::GeluTanh),
            _ => None,
        }
    }

    /// The name `config.json` gives it (`hidden_act`).
    pub fn hf_name(self) -> &'static str {
        match self {
            Activation::Silu => "silu",
            Activation::GeluTanh => "gelu_pytorch_tanh",
        }
    }
}

/// Which layers attend within the sliding window when `config.json` has no `layer_types`
/// (and, for GGUF files without `attention.sliding_window_pattern`, llama.cpp's fixed
/// pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlidingLayers {
    /// Every layer (Mistral's window).
    All,
    /// All but every `n`-th layer, which attends globally (Gemma 2: 2, alternating from a
    /// sliding first layer; Gemma 3: 6). `configurable`: `config.json`'s
    /// `sliding_window_pattern` overrides `n`.
    Period { n: usize, configurable: bool },
    /// Layers from `max_window_layers` on (Qwen2's config; GGUF: every layer).
    FromMaxWindowLayers,
}

/// `layers` flags, all but every `n`-th layer sliding.
pub fn every_nth_global(n: usize, layers: usize) -> Vec<bool> {
    (0..layers).map(|i| (i + 1) % n.max(1) != 0).collect()
}

impl SlidingLayers {
    /// Which of `layers` layers slide, `config` reading `config.json`'s integers.
    pub fn layers(self, layers: usize, config: impl Fn(&str) -> Option<usize>) -> Vec<bool> {
        match self {
            SlidingLayers::All => vec![true; layers],
            SlidingLayers::Period { n, configurable } => {
                let n = if configurable {
                    config("sliding_window_pattern")
                        .or_else(|| config("_sliding_window_pattern"))
                        .unwrap_or(n)
                } else {
                    n
                };
                every_nth_global(n, layers)
            }
            SlidingLayers::FromMaxWindowLayers => {
                let from = config("max_window_layers").unwrap_or(layers);
                (0..layers).map(|i| i >= from).collect()
            }
        }
    }

    /// llama.cpp's fixed pattern for a GGUF file that states none.
    pub fn gguf_default(self, layers: usize) -> Vec<bool> {
        match self {
            SlidingLayers::Period { n, .. } => every_nth_global(n, layers),
            _ => vec![true; layers],
        }
    }
}

/// What `model init-tiny` switches on for a family, so a tiny run exercises it.
#[derive(Debug, Clone, Copy)]
pub struct Tiny {
    /// Tied embeddings (the family's small published models are tied).
    pub tied: bool,
    /// Whether layer `i` of `n` attends within a 64-token window (`None`: no window).
    pub sliding: Option<fn(usize, usize) -> bool>,
    /// (attention, final) logit soft-caps.
    pub softcaps: Option<(f64, f64)>,
}

/// LoRA-targetable modules of a layer as (group, module) in the order of
/// [`crate::model::decoder::Block::linears`]; a module's index there seeds its dropout mask.
pub type Modules = &'static [(&'static str, &'static str)];

const SEPARATE: Modules = &[
    ("self_attn", "q_proj"),
    ("self_attn", "k_proj"),
    ("self_attn", "v_proj"),
    ("self_attn", "o_proj"),
    ("mlp", "gate_proj"),
    ("mlp", "up_proj"),
    ("mlp", "down_proj"),
];

/// Phi-3's fused projections: `qkv_proj` (q, k, v rows in that order) and `gate_up_proj`
/// (gate rows, then up rows). PEFT adapts the fused modules, so LoRA does too.
const FUSED: Modules = &[
    ("self_attn", "qkv_proj"),
    ("self_attn", "o_proj"),
    ("mlp", "gate_up_proj"),
    ("mlp", "down_proj"),
];

/// What differs between families.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub arch: Arch,
    /// `model_type` in `config.json`.
    pub model_type: &'static str,
    /// `architectures[0]` in `config.json`.
    pub hf_class: &'static str,
    /// `general.architecture` in GGUF, also the prefix of its metadata keys.
    pub gguf_arch: &'static str,
    /// llama.cpp permutes the q/k rows (and biases) into its rotary layout (its `llama`
    /// architecture).
    pub gguf_permuted_qk: bool,
    /// Which published models this entry covers (the guide's models page, `model info`).
    pub covers: &'static str,
    /// q/k/v projections carry a bias whatever `attention_bias` says (Qwen2).
    pub qkv_bias: bool,
    /// Per-head RMS norms on q and k before RoPE (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// RMS norm weights are stored as `w` and applied as `1 + w` (Gemma).
    pub norm_plus_one: bool,
    /// Embeddings are multiplied by √hidden (Gemma).
    pub embed_scale: bool,
    /// Norms after attention and after the MLP as well as before (Gemma 2/3).
    pub sandwich_norms: bool,
    /// Fused `qkv_proj` and `gate_up_proj` (Phi-3).
    pub fused: bool,
    /// The activation when the config names none.
    pub activation: Activation,
    /// Which layers slide when the config has a window but no `layer_types`.
    pub sliding: SlidingLayers,
    /// The config's `sliding_window` counts only with `use_sliding_window: true` (Qwen2.5
    /// ships a window it does not use); otherwise it counts unless that says false.
    pub window_opt_in: bool,
    /// Embeddings are tied when the config does not say (Gemma).
    pub tied_by_default: bool,
    /// Attention scores are scaled by `1/√query_pre_attn_scalar` (config.json; GGUF's
    /// `attention.scale`, else llama.cpp's `1/√head_dim`), and config.json spells Gemma's
    /// keys: `hidden_activation`, the scalar and both soft-caps, null when off (transformers
    /// would otherwise default them on).
    pub query_pre_attn_scalar: bool,
    /// Sliding layers have their own RoPE base (Gemma 3: `rope_local_base_freq`,
    /// `rope_parameters.sliding_attention`, GGUF's `rope.freq_base_swa`).
    pub local_rope: bool,
    /// The built-in chat template used when the model folder brings none.
    pub template: &'static str,
    /// (token, template): the built-in template used instead of `template` when the
    /// vocabulary lacks `token` (Phi-3 and Phi-4-mini have no `<|im_sep|>`, Phi-4 has).
    pub template_without: Option<(&'static str, &'static str)>,
    /// End-of-turn tokens generation stops at, beside the tokenizer's own eos.
    pub stop_tokens: &'static [&'static str],
    /// What `model init-tiny` switches on.
    pub tiny: Tiny,
}

impl Family {
    pub fn modules(&self) -> Modules {
        if self.fused {
            FUSED
        } else {
            SEPARATE
        }
    }

    /// The module names LoRA can target.
    pub fn module_names(&self) -> Vec<&'static str> {
        self.modules().iter().map(|(_, m)| *m).collect()
    }

    /// A GGUF metadata key of this family (`llama.block_count`).
    pub fn gguf_key(&self, key: &str) -> String {
        format!("{}.{key}", self.gguf_arch)
    }
}

const PLAIN: Family = Family {
    arch: Arch::Llama,
    model_type: "llama",
    hf_class: "LlamaForCausalLM",
    gguf_arch: "llama",
    gguf_permuted_qk: true,
    covers: "Llama 2, 3, 3.1, 3.2; SmolLM, SmolLM2",
    qkv_bias: false,
    qk_norm: false,
    norm_plus_one: false,
    embed_scale: false,
    sandwich_norms: false,
    fused: false,
    activation: Activation::Silu,
    sliding: SlidingLayers::All,
    window_opt_in: false,
    tied_by_default: false,
    query_pre_attn_scalar: false,
    local_rope: false,
    template: "llama3",
    template_without: None,
    stop_tokens: &["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"],
    tiny: Tiny {
        tied: false,
        sliding: None,
        softcaps: None,
    },
};

/// Gemma's switches, shared by both generations.
const GEMMA: Family = Family {
    norm_plus_one: true,
    embed_scale: true,
    sandwich_norms: true,
    activation: Activation::GeluTanh,
    tied_by_default: true,
    query_pre_attn_scalar: true,
    template: "gemma",
    stop_tokens: &["<end_of_turn>", "<eos>"],
    ..PLAIN
};

/// Qwen's: a window only when `use_sliding_window` asks, on layers from
/// `max_window_layers` on.
const QWEN: Family = Family {
    gguf_permuted_qk: false,
    sliding: SlidingLayers::FromMaxWindowLayers,
    window_opt_in: true,
    stop_tokens: &["<|im_end|>", "<|endoftext|>"],
    ..PLAIN
};

/// Every family, the registry's one table.
pub const FAMILIES: &[Family] = &[
    PLAIN,
    Family {
        arch: Arch::Qwen2,
        model_type: "qwen2",
        hf_class: "Qwen2ForCausalLM",
        gguf_arch: "qwen2",
        covers: "Qwen2, Qwen2.5",
        qkv_bias: true,
        template: "chatml",
        tiny: Tiny {
            tied: true,
            ..PLAIN.tiny
        },
        ..QWEN
    },
    Family {
        arch: Arch::Qwen3,
        model_type: "qwen3",
        hf_class: "Qwen3ForCausalLM",
        gguf_arch: "qwen3",
        covers: "Qwen3 (dense)",
        qk_norm: true,
        template: "qwen3",
        ..QWEN
    },
    Family {
        arch: Arch::Mistral,
        model_type: "mistral",
        hf_class: "MistralForCausalLM",
        gguf_arch: "llama",
        covers: "Mistral 7B v0.1–v0.3, Ministral",
        template: "mistral",
        stop_tokens: &["</s>"],
        ..PLAIN
    },
    Family {
        arch: Arch::Gemma2,
        model_type: "gemma2",
        hf_class: "Gemma2ForCausalLM",
        gguf_arch: "gemma2",
        gguf_permuted_qk: false,
        covers: "Gemma 2",
        sliding: SlidingLayers::Period {
            n: 2,
            configurable: false,
        },
        tiny: Tiny {
            tied: true,
            sliding: Some(|i, _| i % 2 == 0),
            softcaps: Some((50.0, 30.0)),
        },
        ..GEMMA
    },
    Family {
        arch: Arch::Gemma3,
        model_type: "gemma3_text",
        hf_class: "Gemma3ForCausalLM",
        gguf_arch: "gemma3",
        gguf_permuted_qk: false,
        covers: "Gemma 3 (text: 270M, 1B; the text tower of larger ones)",
        qk_norm: true,
        sliding: SlidingLayers::Period {
            n: 6,
            configurable: true,
        },
        local_rope: true,
        // All but the last layer slide: a tiny model has too few for the period of six.
        tiny: Tiny {
            tied: true,
            sliding: Some(|i, n| i + 1 < n),
            softcaps: None,
        },
        ..GEMMA
    },
    Family {
        arch: Arch::Phi3,
        model_type: "phi3",
        hf_class: "Phi3ForCausalLM",
        gguf_arch: "phi3",
        gguf_permuted_qk: false,
        covers: "Phi-3, Phi-3.5, Phi-4, Phi-4-mini",
        fused: true,
        template: "phi4",
        template_without: Some(("<|im_sep|>", "phi4-mini")),
        stop_tokens: &["<|end|>", "<|im_end|>", "<|endoftext|>"],
        ..PLAIN
    },
];

impl Arch {
    pub fn family(self) -> &'static Family {
        FAMILIES
            .iter()
            .find(|f| f.arch == self)
            .unwrap_or(&FAMILIES[0])
    }

    pub fn name(self) -> &'static str {
        self.into()
    }

    pub fn hf_class(self) -> &'static str {
        self.family().hf_class
    }

    /// The family a config's `architectures[0]` or `model_type` names.
    pub fn from_hf(name: &str) -> Option<Arch> {
        FAMILIES
            .iter()
            .find(|f| f.hf_class == name || f.model_type == name)
            .map(|f| f.arch)
    }

    /// The family of a GGUF file's `general.architecture` (Mistral's GGUF files say llama).
    pub fn from_gguf(name: &str) -> Option<Arch> {
        FAMILIES
            .iter()
            .find(|f| f.gguf_arch == name)
            .map(|f| f.arch)
    }

    /// "LlamaForCausalLM (llama), …" for errors that list what is supported.
    pub fn supported() -> String {
        FAMILIES
            .iter()
            .map(|f| format!("{} ({})", f.hf_class, f.model_type))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn supported_gguf() -> String {
        let mut names: Vec<&str> = Vec::new();
        for f in FAMILIES {
            if !names.contains(&f.gguf_arch) {
                names.push(f.gguf_arch);
            }
        }
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn every_arch_has_exactly_one_entry() {
        for a in Arch::iter() {
            assert_eq!(FAMILIES.iter().filter(|f| f.arch == a).count(), 1, "{a:?}");
            assert_eq!(Arch::from_hf(a.hf_class()), Some(a));
            assert_eq!(Arch::from_hf(a.family().model_type), Some(a));
            // llama.cpp permutes q/k rows for its `llama` architecture only.
            let f = a.family();
            assert_eq!(f.gguf_permuted_qk, f.gguf_arch == "llama", "{a:?}");
        }
        assert_eq!(Arch::from_gguf("llama"), Some(Arch::Llama));
        assert_eq!(Arch::from_gguf("gemma3"), Some(Arch::Gemma3));
        assert_eq!(
            Arch::Phi3.family().module_names(),
            ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
        );
        assert!(Arch::supported().contains("Gemma3ForCausalLM (gemma3_text)"));
        assert_eq!(
            Arch::supported_gguf(),
            "llama, qwen2, qwen3, gemma2, gemma3, phi3"
        );
    }

    /// `--arch` takes each family by its name.
    #[test]
    fn command_line_names_are_the_family_names() {
        use clap::ValueEnum;
        for a in Arch::iter() {
            assert_eq!(a.to_possible_value().unwrap().get_name(), a.name());
            assert_eq!(Arch::from_str(a.name(), false), Ok(a));
        }
        assert_eq!(Arch::default().family().arch, FAMILIES[0].arch);
    }
}
