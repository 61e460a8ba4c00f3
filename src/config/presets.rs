//! The presets shipped in `presets/`: ordinary run configurations, embedded in the binary.

/// The presets shipped in `presets/`, embedded: (name, YAML).
pub const PRESETS: &[(&str, &str)] = &[
    ("tiny-demo", include_str!("../../presets/tiny-demo.yaml")),
    (
        "tiny-demo-dpo",
        include_str!("../../presets/tiny-demo-dpo.yaml"),
    ),
    (
        "tiny-demo-kto",
        include_str!("../../presets/tiny-demo-kto.yaml"),
    ),
    (
        "tiny-demo-grpo",
        include_str!("../../presets/tiny-demo-grpo.yaml"),
    ),
    (
        "smollm2-135m-persona",
        include_str!("../../presets/smollm2-135m-persona.yaml"),
    ),
    (
        "smollm2-135m-dpo",
        include_str!("../../presets/smollm2-135m-dpo.yaml"),
    ),
    (
        "smollm2-135m-grpo",
        include_str!("../../presets/smollm2-135m-grpo.yaml"),
    ),
    (
        "qwen2.5-0.5b-lora",
        include_str!("../../presets/qwen2.5-0.5b-lora.yaml"),
    ),
    (
        "qwen3-0.6b-lora",
        include_str!("../../presets/qwen3-0.6b-lora.yaml"),
    ),
    (
        "qwen3-0.6b-qlora",
        include_str!("../../presets/qwen3-0.6b-qlora.yaml"),
    ),
    (
        "gemma-3-1b-lora",
        include_str!("../../presets/gemma-3-1b-lora.yaml"),
    ),
    (
        "gemma-3-1b-qlora",
        include_str!("../../presets/gemma-3-1b-qlora.yaml"),
    ),
    (
        "llama-3.1-8b-lora",
        include_str!("../../presets/llama-3.1-8b-lora.yaml"),
    ),
    (
        "llama-3.1-8b-qlora",
        include_str!("../../presets/llama-3.1-8b-qlora.yaml"),
    ),
];
