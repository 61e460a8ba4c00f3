//! Small looks at the machine for the report: executables on PATH, the CUDA compiler's
//! version, the CPU's vector extensions.

use super::Nvcc;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A CPU extension, whether this CPU has it, and what in this build uses it.
#[derive(Debug, Clone, Serialize)]
pub struct CpuFeature {
    pub name: String,
    pub detected: bool,
    pub used_for: String,
}

/// The extensions the compute paths pick at run time (x86-64; none elsewhere).
pub fn cpu_features() -> Vec<CpuFeature> {
    #[allow(unused_mut)]
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        let mut push = |name: &str, detected: bool, used_for: &str| {
            out.push(CpuFeature {
                name: name.into(),
                detected,
                used_for: used_for.into(),
            })
        };
        use std::arch::is_x86_feature_detected as has;
        push(
            "avx2",
            has!("avx2"),
            "matrix multiplies (gemm), activations and softmax (with FMA)",
        );
        push(
            "fma",
            has!("fma"),
            "matrix multiplies (gemm), activations and softmax (with AVX2)",
        );
        push(
            "f16c",
            has!("f16c"),
            "the quantized (QLoRA, GGUF) matmul kernel (with AVX2 and FMA)",
        );
        push(
            "avx512f",
            has!("avx512f"),
            "nothing in this build (its kernels stop at AVX2 + FMA)",
        );
    }
    out
}

pub use crate::paths::find_on_path;
use crate::paths::is_executable;

/// nvcc on PATH, else in the toolkit's usual place (then a build would not find it).
pub(super) fn nvcc(dirs: &[PathBuf]) -> Option<Nvcc> {
    let (path, on_path) = match find_on_path("nvcc", dirs) {
        Some(p) => (p, true),
        None => {
            let usual = PathBuf::from("/usr/local/cuda/bin/nvcc");
            if !is_executable(&usual) {
                return None;
            }
            (usual, false)
        }
    };
    let version = output_of(&path, "--version", Duration::from_secs(5)).and_then(|out| {
        out.lines()
            .find_map(|l| l.find("release ").map(|at| l[at..].trim().to_string()))
    });
    Some(Nvcc {
        path: path.display().to_string(),
        on_path,
        version,
    })
}

/// `program arg`'s standard output, or `None` when it fails or runs past `limit` (then it
/// is killed, and whatever it started is left to finish without us).
fn output_of(program: &Path, arg: &str, limit: Duration) -> Option<String> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return reader.join().ok()?.ok(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(Some(_)) => return None,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn only_executable_files_are_found_first_folder_first() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        script(a.path(), "tool", "", 0o644);
        std::fs::create_dir(a.path().join("dir-tool")).unwrap();
        let in_b = script(b.path(), "tool", "", 0o755);
        let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(find_on_path("tool", &dirs), Some(in_b));
        assert_eq!(find_on_path("dir-tool", &dirs), None);
        let in_a = script(a.path(), "tool", "", 0o755);
        assert_eq!(find_on_path("tool", &dirs), Some(in_a));
    }

    #[test]
    fn nvcc_version_is_read_and_a_hanging_program_is_cut_off() {
        let d = tempfile::tempdir().unwrap();
        script(
            d.path(),
            "nvcc",
            "echo 'nvcc: NVIDIA (R) Cuda compiler driver'\necho 'Cuda compilation tools, release 12.4, V12.4.131'",
            0o755,
        );
        let n = nvcc(&[d.path().to_path_buf()]).unwrap();
        assert!(n.on_path);
        assert_eq!(n.version.as_deref(), Some("release 12.4, V12.4.131"));
        let slow = script(d.path(), "slow", "exec sleep 30", 0o755);
        let t = Instant::now();
        assert_eq!(output_of(&slow, "x", Duration::from_millis(300)), None);
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
