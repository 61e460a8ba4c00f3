//! Reading model weights: safetensors, single or sharded, memory-mapped. Pickle `.bin`
//! checkpoints are refused because loading them can execute code.

use super::ModelError;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

pub struct Weights {
    files: Vec<PathBuf>,
    st: MmapedSafetensors,
}

impl Weights {
    /// Opens `model.safetensors`, or the shards listed in `model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| ModelError::Invalid {
                    path: index.clone(),
                    message: format!("invalid JSON: {e}"),
                })?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| ModelError::Invalid {
                    path: index.clone(),
                    message: "weight_map: missing; expected an object of tensor name → shard file"
                        .into(),
                })?;
            let mut shards: Vec<PathBuf> = map
                .values()
                .filter_map(|f| f.as_str())
                .map(|f| dir.join(f))
                .collect();
            shards.sort();
            shards.dedup();
            shards
        } else if dir.join("pytorch_model.bin").is_file()
            || dir.join("pytorch_model.bin.index.json").is_file()
        {
            return Err(ModelError::Invalid {
                path: dir.to_path_buf(),
                message: "only pickle .bin weights found; they can execute code when loaded, so tunelab refuses them. Convert to safetensors first".into(),
            });
        } else {
            return Err(ModelError::Invalid {
                path: dir.to_path_buf(),
                message: "no model.safetensors or model.safetensors.index.json".into(),
            });
        };
        // SAFETY: the files are mapped read-only; tunelab never writes to a model it is reading.
        let st = unsafe { MmapedSafetensors::multi(&files) }.map_err(|e| ModelError::Invalid {
            path: dir.to_path_buf(),
            message: format!("cannot read safetensors: {e}"),
        })?;
        Ok(Weights { files, st })
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// A tensor's shape, read from the header alone.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.st.get(name).ok().map(|v| v.shape().to_vec())
    }

    pub fn has(&self, name: &str) -> bool {
        self.st.get(name).is_ok()
    }

    /// A tensor converted to `dtype` on `device`.
    pub fn get(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor, ModelError> {
        let t = self
            .st
            .load(name, device)
            .map_err(|e| ModelError::MissingTensor {
                name: name.to_string(),
                message: e.to_string(),
            })?;
        t.to_dtype(dtype).map_err(ModelError::Candle)
    }
}
