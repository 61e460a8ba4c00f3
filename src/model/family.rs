//! The model families tunelab runs, in one table. A family is a set of architecture switches
//! over the one decoder in `model::llama` (q/k norms, Gemma's `1 + w` norms and scaled
//! embeddings, sandwich norms, fused projections, the activation) plus what the rest of the
//! workbench needs to know about it: its Hugging Face and GGUF names, LoRA target modules,
//! default chat template and stop tokens. Adding a family is an entry here plus its distinct
//! ops.

/// A decoder family, by what its `config.json` declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Arch {
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
}

/// LoRA-targetable modules of a layer as (group, module) in the order of
/// [`crate::model::llama::Block::linears`]; a module's index there seeds its dropout mask.
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
    /// `general.architecture` in GGUF.
    pub gguf_arch: &'static str,
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
    /// The built-in chat template used when the model folder brings none.
    pub template: &'static str,
    /// End-of-turn tokens generation stops at, beside the tokenizer's own eos.
    pub stop_tokens: &'static [&'static str],
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
}

const PLAIN: Family = Family {
    arch: Arch::Llama,
    model_type: "llama",
    hf_class: "LlamaForCausalLM",
    gguf_arch: "llama",
    covers: "Llama 2, 3, 3.1, 3.2; SmolLM, SmolLM2",
    qkv_bias: false,
    qk_norm: false,
    norm_plus_one: false,
    embed_scale: false,
    sandwich_norms: false,
    fused: false,
    activation: Activation::Silu,
    template: "llama3",
    stop_tokens: &["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"],
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
        stop_tokens: &["<|im_end|>", "<|endoftext|>"],
        ..PLAIN
    },
    Family {
        arch: Arch::Qwen3,
        model_type: "qwen3",
        hf_class: "Qwen3ForCausalLM",
        gguf_arch: "qwen3",
        covers: "Qwen3 (dense)",
        qk_norm: true,
        template: "qwen3",
        stop_tokens: &["<|im_end|>", "<|endoftext|>"],
        ..PLAIN
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
        covers: "Gemma 2",
        norm_plus_one: true,
        embed_scale: true,
        sandwich_norms: true,
        activation: Activation::GeluTanh,
        template: "gemma",
        stop_tokens: &["<end_of_turn>", "<eos>"],
        ..PLAIN
    },
    Family {
        arch: Arch::Gemma3,
        model_type: "gemma3_text",
        hf_class: "Gemma3ForCausalLM",
        gguf_arch: "gemma3",
        covers: "Gemma 3 (text: 270M, 1B; the text tower of larger ones)",
        qk_norm: true,
        norm_plus_one: true,
        embed_scale: true,
        sandwich_norms: true,
        activation: Activation::GeluTanh,
        template: "gemma",
        stop_tokens: &["<end_of_turn>", "<eos>"],
        ..PLAIN
    },
    Family {
        arch: Arch::Phi3,
        model_type: "phi3",
        hf_class: "Phi3ForCausalLM",
        gguf_arch: "phi3",
        covers: "Phi-3, Phi-3.5, Phi-4, Phi-4-mini",
        fused: true,
        template: "phi4",
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
}
