//! One line for each thing the report finds missing: what it means for tunelab, and how to
//! fix it. Only facts in the [`Report`] decide what is said, so a test can build any report.

use super::Report;
use serde::Serialize;

/// The report's sections, in the order they are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Section {
    Build,
    Gpu,
    Memory,
    Disk,
    HfCache,
    ApiKeys,
    LlamaCpp,
    Engines,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advice {
    pub section: Section,
    pub text: String,
}

const GIB: u64 = 1 << 30;

/// How to get a GPU build, said wherever one is missing.
pub const GPU_BUILD: &str = "cargo build --release --features cuda (needs the CUDA toolkit, \
                             nvcc on PATH, to build, and an NVIDIA driver to run)";

/// The advice for `r`, section by section.
pub fn advise(r: &Report) -> Vec<Advice> {
    let mut out = Vec::new();
    let mut say = |section, text: String| out.push(Advice { section, text });
    build(r, &mut say);
    gpu(r, &mut say);
    match r.memory.available_bytes {
        None => say(
            Section::Memory,
            "cannot read /proc/meminfo: the workbench cannot show memory use or hold the \
             Adapter tab's estimate against it"
                .into(),
        ),
        Some(a) if a < 4 * GIB => say(
            Section::Memory,
            format!(
                "only {:.1} GiB of RAM available: CPU training of models above ~0.5B \
                 parameters may not fit; close other programs, pick a smaller model or \
                 quantize the base (model.quantization: q4k)",
                a as f64 / GIB as f64
            ),
        ),
        Some(_) => {}
    }
    if let Some(free) = r.folders.data_disk_free_bytes.filter(|f| *f < 10 * GIB) {
        say(
            Section::Disk,
            format!(
                "only {:.1} GiB free for the data folder: runs keep checkpoints and a merged \
                 export is as large as the model; free some space or set TUNELAB_HOME to a \
                 bigger disk",
                free as f64 / GIB as f64
            ),
        );
    }
    hub(r, &mut say);
    for k in super::api_keys() {
        if r.api_keys.get(k.name) != Some(&true) {
            say(
                Section::ApiKeys,
                format!("{} is not set: {}", k.name, k.if_missing),
            );
        }
    }
    let missing: Vec<&str> = r
        .llama_cpp
        .iter()
        .filter(|t| t.path.is_none())
        .map(|t| t.name.as_str())
        .collect();
    if !missing.is_empty() {
        say(
            Section::LlamaCpp,
            format!(
                "not on PATH: {}; exports can still be written, but not tried with llama.cpp \
                 here. scripts/build-llama-cpp.sh builds llama-server, llama-cli, \
                 llama-completion and llama-bench (put the folder it prints on PATH); \
                 llama-quantize comes with a full llama.cpp build",
                missing.join(", ")
            ),
        );
    }
    out
}

fn build(r: &Report, say: &mut impl FnMut(Section, String)) {
    let b = &r.build;
    if b.profile == "debug" {
        say(
            Section::Build,
            "a debug build: training and inference run many times slower; build with \
             cargo build --release"
                .into(),
        );
    }
    let has = |n: &str| b.cpu_features.iter().any(|f| f.name == n && f.detected);
    // Features are listed on x86-64 only.
    let x86 = !b.cpu_features.is_empty();
    if x86 && !(has("avx2") && has("fma")) {
        say(
            Section::Build,
            "this CPU lacks AVX2 or FMA: matrix multiplies and activations fall back to \
             narrower code, so CPU training and inference are several times slower"
                .into(),
        );
    } else if x86 && !has("f16c") {
        say(
            Section::Build,
            "this CPU lacks F16C: quantized bases (QLoRA, GGUF) use candle's slower kernel".into(),
        );
    }
    if !b.cuda_compiled {
        let nvcc = match &b.nvcc {
            None => " nvcc was not found: install the CUDA toolkit first.".to_string(),
            Some(n) if !n.on_path => format!(
                " nvcc is at {} but not on PATH: add its folder to PATH first.",
                n.path
            ),
            Some(_) => String::new(),
        };
        say(
            Section::Build,
            format!("CUDA is not compiled in, so everything runs on the CPU. For a GPU build: {GPU_BUILD}.{nvcc}"),
        );
    }
}

fn gpu(r: &Report, say: &mut impl FnMut(Section, String)) {
    let g = &r.gpu;
    if g.why_none.is_some() {
        say(
            Section::Gpu,
            "no GPU to use: training runs on the CPU. With an NVIDIA GPU, install its driver \
             (nvidia-smi should list the GPU)"
                .into(),
        );
    } else if !r.build.cuda_compiled {
        say(
            Section::Gpu,
            format!(
                "a GPU is here but this tunelab has no CUDA: rebuild with {GPU_BUILD}, then \
                 set train.device: cuda"
            ),
        );
    }
    if let (Some(false), Some(e)) = (g.cuda_opens, &g.cuda_error) {
        say(
            Section::Gpu,
            format!(
                "CUDA device 0 does not open: {e}. The driver may be older than the CUDA \
                 toolkit this was built with (driver CUDA {})",
                g.cuda_driver_version.as_deref().unwrap_or("unknown")
            ),
        );
    }
}

fn hub(r: &Report, say: &mut impl FnMut(Section, String)) {
    let h = &r.hf_cache;
    if !h.exists {
        say(
            Section::HfCache,
            format!(
                "no Hugging Face cache at {}: a model given as org/name is downloaded there on \
                 first use (HF_HOME moves it)",
                h.path
            ),
        );
    } else if h.models.is_empty() {
        say(
            Section::HfCache,
            "no models in the cache yet: a model given as org/name is downloaded on first use"
                .into(),
        );
    }
    if h.offline {
        say(
            Section::HfCache,
            "HF_HUB_OFFLINE is set: models and datasets come from the cache only; unset it to \
             download"
                .into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::*;

    /// A report of a machine with everything: a CUDA build, one GPU, plenty of memory and
    /// disk, a cache with a model, every key and every tool.
    fn complete() -> Report {
        Report {
            build: Build {
                version: "0".into(),
                target: "x86_64-linux".into(),
                profile: "release".into(),
                cpu_cores: 8,
                cpu_features: ["avx2", "fma", "f16c", "avx512f"]
                    .map(|n| CpuFeature {
                        name: n.into(),
                        detected: true,
                        used_for: String::new(),
                    })
                    .to_vec(),
                cuda_compiled: true,
                nvcc: None,
            },
            gpu: Gpu {
                driver_version: Some("550.54.15".into()),
                cuda_driver_version: Some("12.4".into()),
                devices: vec![GpuDevice {
                    index: 0,
                    name: "NVIDIA H100".into(),
                    total_bytes: 80 * GIB,
                    free_bytes: 79 * GIB,
                }],
                why_none: None,
                cuda_opens: Some(true),
                cuda_error: None,
            },
            memory: Memory {
                total_bytes: Some(64 * GIB),
                available_bytes: Some(60 * GIB),
            },
            folders: Folders {
                config: "c".into(),
                data: "d".into(),
                state: "s".into(),
                cache: "k".into(),
                data_disk_total_bytes: Some(500 * GIB),
                data_disk_free_bytes: Some(400 * GIB),
            },
            hf_cache: HubCache {
                path: "/hf/hub".into(),
                exists: true,
                offline: false,
                disk_free_bytes: Some(400 * GIB),
                models: vec![HubModel {
                    id: "acme/tiny".into(),
                    arch: Some("llama".into()),
                    supported: true,
                    unsupported: None,
                    params: Some(1),
                    disk_bytes: 1,
                }],
            },
            api_keys: api_keys()
                .iter()
                .map(|k| (k.name.to_string(), true))
                .collect(),
            llama_cpp: LLAMA_CPP_TOOLS
                .iter()
                .map(|(n, e)| Tool {
                    name: n.to_string(),
                    path: Some(format!("/bin/{n}")),
                    enables: e.to_string(),
                })
                .collect(),
            engines: Vec::new(),
            advice: Vec::new(),
        }
    }

    fn sections(r: &Report) -> Vec<Section> {
        advise(r).iter().map(|a| a.section).collect()
    }

    #[test]
    fn a_complete_machine_needs_no_advice() {
        assert_eq!(advise(&complete()), []);
    }

    #[test]
    fn each_missing_thing_gets_its_line() {
        // A GPU but no CUDA in the build: rebuild, in both sections.
        let mut r = complete();
        r.build.cuda_compiled = false;
        r.gpu.cuda_opens = None;
        let a = advise(&r);
        assert_eq!(sections(&r), [Section::Build, Section::Gpu]);
        assert!(a[1].text.contains("--features cuda") && a[1].text.contains("train.device"));
        assert!(a[0].text.contains("nvcc was not found"), "{}", a[0].text);

        let mut r = complete();
        r.gpu.devices.clear();
        r.gpu.cuda_opens = None;
        r.gpu.why_none = Some("no NVIDIA driver library".into());
        assert_eq!(sections(&r), [Section::Gpu]);
        assert!(advise(&r)[0]
            .text
            .starts_with("no GPU to use: training runs on the CPU"));

        let mut r = complete();
        r.gpu.cuda_opens = Some(false);
        r.gpu.cuda_error = Some("CUDA_ERROR_INVALID_DEVICE".into());
        assert!(advise(&r)[0].text.contains("driver CUDA 12.4"));

        let mut r = complete();
        r.memory.available_bytes = Some(GIB);
        r.folders.data_disk_free_bytes = Some(GIB);
        r.hf_cache.offline = true;
        assert_eq!(
            sections(&r),
            [Section::Memory, Section::Disk, Section::HfCache]
        );

        let mut r = complete();
        r.build.cpu_features[1].detected = false;
        r.build.profile = "debug".into();
        assert_eq!(sections(&r), [Section::Build, Section::Build]);

        let mut r = complete();
        r.api_keys.insert("HF_TOKEN".into(), false);
        r.llama_cpp[2].path = None;
        r.llama_cpp[3].path = None;
        let a = advise(&r);
        assert_eq!(sections(&r), [Section::ApiKeys, Section::LlamaCpp]);
        assert!(a[0].text.starts_with("HF_TOKEN is not set"));
        assert!(a[1]
            .text
            .starts_with("not on PATH: llama-completion, llama-quantize;"));
    }
}
