//! What the machine is doing: process RSS and system memory from /proc, GPU memory through
//! NVML (loaded at run time, so a build without a GPU runs everywhere).

use serde::{Deserialize, Serialize};

/// Resident set size of process `pid` (this process when `None`), in bytes.
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/statm"),
        None => "/proc/self/statm".into(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    use nix::unistd::{sysconf, SysconfVar};
    match sysconf(SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 => n as u64,
        _ => 4096,
    }
}

/// (total, available) system memory in bytes.
pub fn system_memory() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// (total, available to this user) bytes of the file system holding `path`, or of its
/// nearest existing ancestor (a data folder not created yet lands where it will be).
// c_ulong and fsblkcnt_t are u64 on 64-bit Linux, narrower elsewhere.
#[allow(clippy::useless_conversion)]
pub fn disk_space(path: &std::path::Path) -> Option<(u64, u64)> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let s = nix::sys::statvfs::statvfs(existing).ok()?;
    let unit = u64::from(s.fragment_size());
    Some((
        u64::from(s.blocks()).saturating_mul(unit),
        u64::from(s.blocks_available()).saturating_mul(unit),
    ))
}

/// Whether process `pid` is alive (a zombie counts as gone).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Memory of one GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuMemory {
    pub index: u32,
    pub name: String,
    pub used: u64,
    pub total: u64,
    /// Percent of time a kernel ran over the last sample period, when NVML reports it.
    #[serde(default)]
    pub utilization: Option<u32>,
    /// Degrees Celsius, when NVML reports it.
    #[serde(default)]
    pub temperature: Option<u32>,
}

/// NVML, when the driver's library is present.
pub struct Gpus {
    nvml: nvml_wrapper::Nvml,
}

impl Gpus {
    /// `None` on machines without an NVIDIA driver.
    pub fn open() -> Option<Gpus> {
        Gpus::try_open().ok()
    }

    /// NVML, or why it cannot be used, in words a person can act on (`tunelab doctor`).
    pub fn try_open() -> Result<Gpus, String> {
        use nvml_wrapper::error::NvmlError;
        nvml_wrapper::Nvml::init()
            .map(|nvml| Gpus { nvml })
            .map_err(|e| match e {
                NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => {
                    "no NVIDIA driver library (libnvidia-ml.so.1 is not installed)".to_string()
                }
                NvmlError::DriverNotLoaded => {
                    "the NVIDIA driver library is installed but the driver is not loaded".into()
                }
                NvmlError::NoPermission => "no permission to query the NVIDIA driver".into(),
                e => format!("NVML did not start: {e}"),
            })
    }

    /// The NVIDIA driver's version (`550.54.15`).
    pub fn driver_version(&self) -> Option<String> {
        self.nvml.sys_driver_version().ok()
    }

    /// The newest CUDA version the driver runs, as (major, minor).
    pub fn cuda_driver_version(&self) -> Option<(i32, i32)> {
        let v = self.nvml.sys_cuda_driver_version().ok()?;
        Some((v / 1000, (v % 1000) / 10))
    }

    pub fn memory(&self) -> Vec<GpuMemory> {
        let n = self.nvml.device_count().unwrap_or(0);
        (0..n)
            .filter_map(|i| {
                let d = self.nvml.device_by_index(i).ok()?;
                let m = d.memory_info().ok()?;
                Some(GpuMemory {
                    index: i,
                    name: d.name().unwrap_or_else(|_| format!("GPU {i}")),
                    used: m.used,
                    total: m.total,
                    utilization: d.utilization_rates().ok().map(|u| u.gpu),
                    temperature: d
                        .temperature(nvml_wrapper::enum_wrappers::device::TemperatureSensor::Gpu)
                        .ok(),
                })
            })
            .collect()
    }
}

/// One memory reading: the GPU through NVML, else system RAM; and the trainer's RSS.
#[derive(Debug, Clone, PartialEq)]
pub struct MemorySample {
    /// `GPU 0 · NVIDIA H100 · 87% · 54°C` or `RAM (no GPU)`.
    pub label: String,
    /// `GPU 0 · NVIDIA H100` or `RAM (no GPU)`: what the Adapter tab's estimate is held
    /// against.
    pub device: String,
    pub used: u64,
    pub total: u64,
    pub trainer_rss: Option<u64>,
}

impl MemorySample {
    /// Reads the machine now; `trainer` is the pid of the attached run's trainer.
    pub fn read(gpus: Option<&Gpus>, trainer: Option<u32>) -> Option<Self> {
        let trainer_rss = trainer.and_then(|p| rss_bytes(Some(p)));
        if let Some(g) = gpus.and_then(|g| g.memory().into_iter().next()) {
            let util = g
                .utilization
                .map(|u| format!(" · {u}%"))
                .unwrap_or_default();
            let temp = g
                .temperature
                .map(|t| format!(" · {t}°C"))
                .unwrap_or_default();
            let device = format!("GPU {} · {}", g.index, g.name);
            return Some(MemorySample {
                label: format!("{device}{util}{temp}"),
                device,
                used: g.used,
                total: g.total,
                trainer_rss,
            });
        }
        let (total, avail) = system_memory()?;
        Some(MemorySample {
            label: "RAM (no GPU)".into(),
            device: "RAM (no GPU)".into(),
            used: total.saturating_sub(avail),
            total,
            trainer_rss,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_plausible_rss_and_is_alive() {
        let rss = rss_bytes(None).unwrap();
        assert!(rss > 1 << 20 && rss < 1 << 40, "{rss}");
        assert!(process_alive(std::process::id()));
        let (total, avail) = system_memory().unwrap();
        assert!(avail <= total && total > 1 << 28);
    }

    #[test]
    fn disk_space_is_read_for_a_folder_not_created_yet() {
        let dir = tempfile::tempdir().unwrap();
        let (total, free) = disk_space(&dir.path().join("not/yet")).unwrap();
        assert!(total > 0 && free <= total, "{total} {free}");
        // The same file system as the folder that exists (free space may move between reads).
        assert_eq!(disk_space(dir.path()).map(|(t, _)| t), Some(total));
        assert_eq!(disk_space(std::path::Path::new("")), None);
    }
}
