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
        nvml_wrapper::Nvml::init().ok().map(|nvml| Gpus { nvml })
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
}
