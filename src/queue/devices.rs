//! What a run occupies: the CPU (one run at a time, as two trainers on the same cores
//! would only slow each other) or GPUs (one run per GPU). A queued run asks for the CPU, a
//! named GPU (`cuda:1`) or any N GPUs (`cuda` with `--gpus N`, handed over as
//! `CUDA_VISIBLE_DEVICES`).

use super::error::QueueError;
use crate::model::DeviceSpec;
use serde::Serialize;

/// One thing a run occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Slot {
    Cpu,
    Gpu(usize),
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Slot::Cpu => f.write_str("cpu"),
            Slot::Gpu(k) => write!(f, "cuda:{k}"),
        }
    }
}

/// What a queued run waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Cpu,
    /// The GPU its config names.
    Gpu(usize),
    /// Any this many GPUs.
    AnyGpus(usize),
}

impl Need {
    /// A run on `device` with `gpus` GPUs (as [`gpus_for`] settled it).
    pub fn of(device: DeviceSpec, gpus: usize) -> Need {
        match device {
            DeviceSpec::Cpu => Need::Cpu,
            DeviceSpec::Cuda(Some(k)) => Need::Gpu(k),
            DeviceSpec::Cuda(None) => Need::AnyGpus(gpus.max(1)),
        }
    }
}

/// The GPUs a run on `device` needs, given `--gpus`: none on the CPU (where `--gpus` is a
/// mistake), one for a named GPU, `--gpus` (default 1) for `cuda`.
pub fn gpus_for(device: DeviceSpec, gpus: Option<usize>) -> Result<usize, QueueError> {
    match (device, gpus) {
        (_, Some(0)) => Err(QueueError::NoGpus),
        (DeviceSpec::Cpu, Some(n)) => Err(QueueError::GpusOnCpu { gpus: n }),
        (DeviceSpec::Cpu, None) => Ok(0),
        (DeviceSpec::Cuda(Some(_)), Some(n)) if n > 1 => Err(QueueError::GpusOnOrdinal {
            gpus: n,
            device: device.to_string(),
        }),
        (DeviceSpec::Cuda(_), n) => Ok(n.unwrap_or(1)),
    }
}

/// What a run started outside the queue occupies: its config's device (`cuda` is taken to
/// mean the first GPU, as CUDA numbers them).
pub fn slot_of(device: DeviceSpec) -> Slot {
    match device {
        DeviceSpec::Cpu => Slot::Cpu,
        DeviceSpec::Cuda(k) => Slot::Gpu(k.unwrap_or(0)),
    }
}

/// How many GPUs the queue hands out: `TUNELAB_GPUS` when set, else what NVML counts; a
/// machine where neither says is taken to have one (a run that cannot open CUDA then
/// fails with the trainer's own error instead of waiting forever).
pub fn gpu_count() -> usize {
    if let Some(n) = std::env::var("TUNELAB_GPUS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return n;
    }
    // NVML is loaded once per process: the workbench asks every second.
    static NVML_COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *NVML_COUNT.get_or_init(|| {
        crate::telemetry::Gpus::open()
            .map(|g| g.memory().len())
            .filter(|n| *n > 0)
            .unwrap_or(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_follow_the_device_and_mistakes_are_named() {
        assert_eq!(gpus_for(DeviceSpec::Cpu, None).unwrap(), 0);
        assert_eq!(gpus_for(DeviceSpec::Cuda(None), None).unwrap(), 1);
        assert_eq!(gpus_for(DeviceSpec::Cuda(None), Some(2)).unwrap(), 2);
        assert_eq!(gpus_for(DeviceSpec::Cuda(Some(1)), Some(1)).unwrap(), 1);
        let e = gpus_for(DeviceSpec::Cpu, Some(1)).unwrap_err().to_string();
        assert!(e.contains("train.device: cpu"), "{e}");
        let e = gpus_for(DeviceSpec::Cuda(Some(1)), Some(2))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cuda:1 names one GPU"), "{e}");
        assert!(gpus_for(DeviceSpec::Cuda(None), Some(0)).is_err());
        assert_eq!(Need::of(DeviceSpec::Cuda(None), 2), Need::AnyGpus(2));
    }
}
