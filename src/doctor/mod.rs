//! `tunelab doctor`'s facts, for a person setting up a new machine: what this build can do,
//! the GPUs, memory and disk, the Hugging Face cache, which API keys are set (names only,
//! never values) and which llama.cpp tools are on PATH, each with a line of advice for what
//! is missing. Gathered here without printing; the CLI renders the same [`Report`] as text
//! or JSON.

mod advice;
mod probe;

pub use advice::{advise, Advice, Section};
pub use probe::{cpu_features, find_on_path, CpuFeature};

use crate::paths::Paths;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// An API key tunelab reads: its name, what it enables, and what its absence means.
#[derive(Debug, Clone, Copy)]
pub struct ApiKey {
    pub name: &'static str,
    pub enables: &'static str,
    pub if_missing: &'static str,
}

/// The API keys tunelab reads.
pub fn api_keys() -> [ApiKey; 3] {
    use crate::synth::Provider;
    [
        ApiKey {
            name: Provider::Anthropic.key_var(),
            enables: "`data synth --provider anthropic` (Claude)",
            if_missing: "`data synth --provider anthropic` refuses to start; export it with a \
                         key from console.anthropic.com",
        },
        ApiKey {
            name: Provider::Openai.key_var(),
            enables: "`data synth --provider openai` and the workbench's remote chat, against \
                      a server that wants a key",
            if_missing: "fine for local servers (llama-server, vLLM, Ollama, tunelab serve); \
                         api.openai.com needs it exported",
        },
        ApiKey {
            name: "HF_TOKEN",
            enables: "downloads of private or gated models (org/name) and datasets (`data pull`)",
            if_missing: "public models and datasets still download; private or gated ones need \
                         it exported (a token from huggingface.co/settings/tokens)",
        },
    ]
}

/// The llama.cpp tools looked for on PATH, and what each one is for here.
pub const LLAMA_CPP_TOOLS: [(&str, &str); 5] = [
    (
        "llama-server",
        "serves a `tunelab export --gguf` file over an OpenAI-compatible API (also a \
         `data synth --provider openai` endpoint)",
    ),
    (
        "llama-cli",
        "chats with a GGUF export, or a base with a `--gguf-lora` adapter (`--lora`)",
    ),
    (
        "llama-completion",
        "plain-text completions from a GGUF, to hold against `tunelab chat --raw`",
    ),
    (
        "llama-quantize",
        "re-quantizes an f16 GGUF export to llama.cpp's other types (Q4_K_M, …)",
    ),
    (
        "llama-bench",
        "measures a GGUF's speed, to hold against `tunelab bench`",
    ),
];

/// What the report looks at. [`Inputs::from_env`] reads this process's environment; tests
/// build their own.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub paths: Paths,
    pub hf_cache: PathBuf,
    pub hf_offline: bool,
    /// The folders of PATH, in order.
    pub search_path: Vec<PathBuf>,
    /// The names from [`api_keys`] that are set to something; values are never read.
    pub keys_set: Vec<&'static str>,
    /// The Python an engine run would use (the active venv's, else python3 on PATH).
    pub python: Option<PathBuf>,
}

impl Inputs {
    pub fn from_env() -> Inputs {
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        Inputs {
            paths: Paths::resolve(),
            hf_cache: crate::paths::hf_hub_cache(),
            hf_offline: crate::paths::hf_hub_offline(),
            search_path: crate::paths::search_path(),
            keys_set: api_keys()
                .into_iter()
                .map(|k| k.name)
                .filter(|name| set(name))
                .collect(),
            python: crate::engine::preflight::interpreter(None).ok(),
        }
    }
}

/// Everything `tunelab doctor` reports. Its JSON keys are stable; byte counts are bytes.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub build: Build,
    pub gpu: Gpu,
    pub memory: Memory,
    pub folders: Folders,
    pub hf_cache: HubCache,
    /// Each key's name and whether it is set.
    pub api_keys: BTreeMap<String, bool>,
    pub llama_cpp: Vec<Tool>,
    /// The engines `tunelab train --engine` can launch with that Python.
    pub engines: Vec<EngineFound>,
    /// One line for each thing missing: what it means and how to fix it.
    pub advice: Vec<Advice>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Build {
    pub version: String,
    /// `x86_64-linux`.
    pub target: String,
    /// `release` or `debug` (a debug build computes many times slower).
    pub profile: String,
    pub cpu_cores: usize,
    pub cpu_features: Vec<CpuFeature>,
    /// Whether candle's CUDA backend was compiled in (`--features cuda`).
    pub cuda_compiled: bool,
    /// The CUDA compiler a `--features cuda` build needs, if found.
    pub nvcc: Option<Nvcc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Nvcc {
    pub path: String,
    /// Whether it is on PATH (a build finds it only there).
    pub on_path: bool,
    /// From `nvcc --version`: `release 12.4, V12.4.131`.
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gpu {
    /// The NVIDIA driver, through NVML.
    pub driver_version: Option<String>,
    /// The newest CUDA the driver runs (`12.4`).
    pub cuda_driver_version: Option<String>,
    pub devices: Vec<GpuDevice>,
    /// Why no GPU is listed: no driver library, driver not loaded, no device.
    pub why_none: Option<String>,
    /// With CUDA compiled in and a GPU present: whether device 0 opens (`None` otherwise).
    pub cuda_opens: Option<bool>,
    pub cuda_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GpuDevice {
    pub index: u32,
    pub name: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub total_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Folders {
    pub config: String,
    pub data: String,
    pub state: String,
    pub cache: String,
    /// The file system holding the data folder (runs, exports, the demo).
    pub data_disk_total_bytes: Option<u64>,
    pub data_disk_free_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HubCache {
    pub path: String,
    pub exists: bool,
    /// HF_HUB_OFFLINE: the cache only, no downloads.
    pub offline: bool,
    /// Free space where downloads go.
    pub disk_free_bytes: Option<u64>,
    pub models: Vec<HubModel>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HubModel {
    /// `org/name`, as `model.path` takes it.
    pub id: String,
    pub arch: Option<String>,
    pub supported: bool,
    /// Why tunelab cannot load it.
    pub unsupported: Option<String>,
    pub params: Option<u64>,
    pub disk_bytes: u64,
}

/// One engine under the Python an engine run would use.
#[derive(Debug, Clone, Serialize)]
pub struct EngineFound {
    /// `trl`, `axolotl`, `llamafactory` (what `--engine` takes).
    pub name: String,
    pub python: Option<String>,
    /// The installed version, when it is one tunelab knows.
    pub version: Option<String>,
    /// Why it cannot be used (not installed, an unknown version).
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    pub name: String,
    pub path: Option<String>,
    pub enables: String,
}

/// Looks at everything [`Report`] holds. Reads files and asks NVML; never prints.
pub fn gather(inputs: &Inputs) -> Report {
    let mut report = Report {
        build: build(inputs),
        gpu: gpu(),
        memory: memory(),
        folders: folders(&inputs.paths),
        hf_cache: hub_cache(inputs),
        api_keys: api_keys()
            .into_iter()
            .map(|k| (k.name.to_string(), inputs.keys_set.contains(&k.name)))
            .collect(),
        llama_cpp: LLAMA_CPP_TOOLS
            .iter()
            .map(|(name, enables)| Tool {
                name: name.to_string(),
                path: find_on_path(name, &inputs.search_path).map(|p| p.display().to_string()),
                enables: enables.to_string(),
            })
            .collect(),
        engines: engines(inputs.python.as_deref()),
        advice: Vec::new(),
    };
    report.advice = advise(&report);
    report
}

fn engines(python: Option<&std::path::Path>) -> Vec<EngineFound> {
    use strum::IntoEnumIterator;
    match python {
        Some(py) => crate::engine::preflight::survey(py)
            .into_iter()
            .map(|(tool, found)| EngineFound {
                name: tool.to_string(),
                python: Some(py.display().to_string()),
                version: found.as_ref().ok().cloned(),
                problem: found.err(),
            })
            .collect(),
        None => crate::scaleout::Tool::iter()
            .map(|t| EngineFound {
                name: t.to_string(),
                python: None,
                version: None,
                problem: Some("no python3 on the PATH".into()),
            })
            .collect(),
    }
}

fn build(inputs: &Inputs) -> Build {
    Build {
        version: env!("CARGO_PKG_VERSION").to_string(),
        target: format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .to_string(),
        cpu_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_features: cpu_features(),
        cuda_compiled: cfg!(feature = "cuda"),
        nvcc: probe::nvcc(&inputs.search_path),
    }
}

fn gpu() -> Gpu {
    let mut out = Gpu {
        driver_version: None,
        cuda_driver_version: None,
        devices: Vec::new(),
        why_none: None,
        cuda_opens: None,
        cuda_error: None,
    };
    let gpus = match crate::telemetry::Gpus::try_open() {
        Ok(g) => g,
        Err(why) => {
            out.why_none = Some(why);
            return out;
        }
    };
    out.driver_version = gpus.driver_version();
    out.cuda_driver_version = gpus
        .cuda_driver_version()
        .map(|(major, minor)| format!("{major}.{minor}"));
    out.devices = gpus
        .memory()
        .into_iter()
        .map(|m| GpuDevice {
            index: m.index,
            name: m.name,
            total_bytes: m.total,
            free_bytes: m.total.saturating_sub(m.used),
        })
        .collect();
    if out.devices.is_empty() {
        out.why_none = Some("the NVIDIA driver is loaded but lists no GPU".into());
    } else if cfg!(feature = "cuda") {
        match crate::model::DeviceSpec::Cuda(Some(0)).open() {
            Ok(_) => out.cuda_opens = Some(true),
            Err(e) => {
                out.cuda_opens = Some(false);
                out.cuda_error = Some(e.to_string());
            }
        }
    }
    out
}

fn memory() -> Memory {
    let m = crate::telemetry::system_memory();
    Memory {
        total_bytes: m.map(|(t, _)| t),
        available_bytes: m.map(|(_, a)| a),
    }
}

fn folders(p: &Paths) -> Folders {
    let disk = crate::telemetry::disk_space(&p.data);
    Folders {
        config: p.config.display().to_string(),
        data: p.data.display().to_string(),
        state: p.state.display().to_string(),
        cache: p.cache.display().to_string(),
        data_disk_total_bytes: disk.map(|(t, _)| t),
        data_disk_free_bytes: disk.map(|(_, f)| f),
    }
}

fn hub_cache(inputs: &Inputs) -> HubCache {
    let models = crate::model::catalog::in_hub_cache(&inputs.hf_cache)
        .into_iter()
        .map(|e| HubModel {
            id: e.spec,
            arch: e.arch,
            supported: e.unsupported.is_none(),
            unsupported: e.unsupported,
            params: e.params,
            disk_bytes: e.disk_bytes,
        })
        .collect();
    HubCache {
        path: inputs.hf_cache.display().to_string(),
        exists: inputs.hf_cache.is_dir(),
        offline: inputs.hf_offline,
        disk_free_bytes: crate::telemetry::disk_space(&inputs.hf_cache).map(|(_, f)| f),
        models,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn inputs(root: &std::path::Path, keys_set: Vec<&'static str>) -> Inputs {
        let home = root.join("home");
        Inputs {
            paths: Paths {
                config: home.join("config"),
                data: home.join("data"),
                state: home.join("state"),
                cache: home.join("cache"),
            },
            hf_cache: root.join("hf/hub"),
            hf_offline: false,
            search_path: vec![root.join("bin")],
            keys_set,
            python: None,
        }
    }

    #[test]
    fn the_report_holds_the_cache_keys_and_tools_it_was_shown() {
        let dir = tempfile::tempdir().unwrap();
        let i = inputs(dir.path(), vec!["HF_TOKEN"]);
        let repo = i.hf_cache.join("models--acme--tiny");
        crate::model::tiny::init_tiny(
            &repo.join("snapshots/r1"),
            &crate::model::tiny::TinySpec::default(),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        let tool = dir.path().join("bin/llama-bench");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();

        let r = gather(&i);
        assert_eq!(r.build.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(r.build.cuda_compiled, cfg!(feature = "cuda"));
        assert_eq!(r.hf_cache.models.len(), 1);
        let m = &r.hf_cache.models[0];
        assert_eq!(
            (m.id.as_str(), m.arch.as_deref(), m.supported),
            ("acme/tiny", Some("llama"), true)
        );
        let keys: Vec<(&str, bool)> = r.api_keys.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            keys,
            [
                ("ANTHROPIC_API_KEY", false),
                ("HF_TOKEN", true),
                ("OPENAI_API_KEY", false)
            ]
        );
        let found: Vec<&str> = r
            .llama_cpp
            .iter()
            .filter(|t| t.path.is_some())
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(found, ["llama-bench"]);
        assert_eq!(r.llama_cpp.len(), LLAMA_CPP_TOOLS.len());
        // The data folder does not exist yet: its disk is measured where it will be.
        assert!(r.folders.data_disk_free_bytes.is_some());
        assert!(r.gpu.why_none.is_some() || !r.gpu.devices.is_empty());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["api_keys"]["HF_TOKEN"], true);
        assert_eq!(json["hf_cache"]["models"][0]["id"], "acme/tiny");
    }
}
