//! What a run or a command computes in and on: the compute dtype (`f32`, `bf16`, `f16`;
//! LoRA parameters stay f32) and the device (`cpu`, `cuda`, `cuda:N`). Typed, so a misspelt
//! name fails where it is read, with the field that holds it.

use super::ModelError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The dtype frozen dense weights and activations are computed in.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Dtype {
    #[default]
    F32,
    Bf16,
    F16,
}

impl FromStr for Dtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("dtype", s)
    }
}

impl Dtype {
    pub fn candle(self) -> candle_core::DType {
        match self {
            Dtype::F32 => candle_core::DType::F32,
            Dtype::Bf16 => candle_core::DType::BF16,
            Dtype::F16 => candle_core::DType::F16,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        self.candle().size_in_bytes()
    }
}

/// A device by name: `cpu`, `cuda` (the first GPU) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// `None` is plain `cuda`, written back as such.
    Cuda(Option<usize>),
}

impl DeviceSpec {
    pub const EXPECTED: &'static str = "must be cpu, cuda or cuda:N";

    /// Opens the device; a CUDA device in a build without CUDA is a clear error.
    pub fn open(self) -> Result<candle_core::Device, ModelError> {
        let ordinal = match self {
            DeviceSpec::Cpu => return Ok(candle_core::Device::Cpu),
            DeviceSpec::Cuda(n) => n.unwrap_or(0),
        };
        if !candle_core::utils::cuda_is_available() {
            return Err(ModelError::Device(format!(
                "{self}: this tunelab was built without CUDA; rebuild with `cargo build --release --features cuda`"
            )));
        }
        candle_core::Device::new_cuda(ordinal)
            .map_err(|e| ModelError::Device(format!("{self}: {e}")))
    }

    pub fn is_cuda(self) -> bool {
        matches!(self, DeviceSpec::Cuda(_))
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(None) => f.write_str("cuda"),
            DeviceSpec::Cuda(Some(n)) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(None)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(|n| DeviceSpec::Cuda(Some(n)))
                .ok_or_else(|| format!("{other:?}: {}", DeviceSpec::EXPECTED)),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

/// Logits the LM head computes at once: beyond this many (128 MB in f32) the training step
/// takes the target rows in chunks, so an 8B model's 2048 × 128,256 logits never exist at
/// once.
const HEAD_CHUNK_LOGITS: usize = 1 << 25;

/// Target rows the head takes at once for a vocabulary of `vocab`.
/// `TUNELAB_HEAD_CHUNK_ROWS=N` overrides it (a test hook: small models never need chunks).
pub fn head_chunk_rows(vocab: usize) -> usize {
    std::env::var("TUNELAB_HEAD_CHUNK_ROWS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or((HEAD_CHUNK_LOGITS / vocab.max(1)).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in ["cpu", "cuda", "cuda:3"] {
            assert_eq!(s.parse::<DeviceSpec>().unwrap().to_string(), s);
        }
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        for s in ["f32", "bf16", "f16"] {
            assert_eq!(s.parse::<Dtype>().unwrap().to_string(), s);
        }
        assert_eq!(Dtype::Bf16.size(), 2);
    }
}
