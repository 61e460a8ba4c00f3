//! The quantized-base cache: quantizing a base costs minutes for an 8B model, so the
//! quantized matrices are written once as a GGUF file under the cache folder, keyed by the
//! weight files' identity (path, size, modification time) and the plan, and read back on
//! later loads. A sidecar records the file's size and checksum; an entry that does not
//! match (truncated, overwritten, half-written) is reported and rebuilt.

use candle_core::quantized::{gguf_file, QTensor};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bumped when the entry layout changes, so old entries are never misread.
const FORMAT: u32 = 1;

/// A cache entry's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub gguf: PathBuf,
    pub sidecar: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sidecar {
    format: u32,
    bytes: u64,
    checksum: String,
    /// The model folder and plan, for whoever looks into the cache folder.
    source: String,
    quantization: String,
}

/// The entry for the weight `files` quantized as `plan` (the quantization's name and
/// whether the head is included) in `cache_dir`.
pub fn entry(
    cache_dir: &Path,
    files: &[PathBuf],
    plan: (&str, bool),
    dtype: DType,
) -> std::io::Result<Entry> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut fnv = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    fnv(&FORMAT.to_le_bytes());
    fnv(plan.0.as_bytes());
    fnv(&[u8::from(plan.1)]);
    fnv(format!("{dtype:?}").as_bytes());
    for f in files {
        let meta = std::fs::metadata(f)?;
        let path = std::fs::canonicalize(f)?;
        fnv(path.to_string_lossy().as_bytes());
        fnv(&meta.len().to_le_bytes());
        let mtime = meta
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        fnv(&mtime.to_le_bytes());
    }
    let dir = cache_dir.join("quantized");
    let key = format!("{h:016x}");
    Ok(Entry {
        gguf: dir.join(format!("{key}.gguf")),
        sidecar: dir.join(format!("{key}.json")),
    })
}

/// A fast 64-bit checksum of a file (word-wise multiply-xor), with its size.
fn checksum(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut h, mut bytes) = (0x9E37_79B9_7F4A_7C15u64, 0u64);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        let mut chunks = buf[..n].chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h ^ w).wrapping_mul(0x0000_0100_0000_01B3).rotate_left(23);
        }
        for &b in chunks.remainder() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    Ok((bytes, format!("{h:016x}")))
}

/// What reading an entry found.
pub enum Lookup {
    /// The quantized matrices, by tensor name.
    Hit(HashMap<String, Arc<QTensor>>),
    Missing,
    /// Present but unusable, and why; it will be rebuilt.
    Damaged(String),
}

/// Reads `e` onto `device`, checking its size and checksum against the sidecar first.
pub fn read(e: &Entry, device: &Device) -> Lookup {
    let Ok(text) = std::fs::read(&e.sidecar) else {
        return Lookup::Missing;
    };
    if !e.gguf.is_file() {
        return Lookup::Damaged("the sidecar has no GGUF beside it".into());
    }
    let side: Sidecar = match serde_json::from_slice(&text) {
        Ok(s) => s,
        Err(err) => return Lookup::Damaged(format!("unreadable sidecar: {err}")),
    };
    if side.format != FORMAT {
        return Lookup::Damaged(format!("format {} (expected {FORMAT})", side.format));
    }
    match checksum(&e.gguf) {
        Ok((bytes, sum)) if bytes == side.bytes && sum == side.checksum => {}
        Ok((bytes, _)) if bytes != side.bytes => {
            return Lookup::Damaged(format!("{bytes} bytes, expected {}", side.bytes))
        }
        Ok(_) => return Lookup::Damaged("checksum mismatch".into()),
        Err(err) => return Lookup::Damaged(err.to_string()),
    }
    let load = || -> candle_core::Result<HashMap<String, Arc<QTensor>>> {
        let mut f = std::fs::File::open(&e.gguf)?;
        let content = gguf_file::Content::read(&mut f)?;
        let mut out = HashMap::with_capacity(content.tensor_infos.len());
        let mut names: Vec<&String> = content.tensor_infos.keys().collect();
        names.sort();
        for name in names {
            let t = content.tensor(&mut f, name, device)?;
            out.insert(name.clone(), Arc::new(t));
        }
        Ok(out)
    };
    match load() {
        Ok(m) => Lookup::Hit(m),
        Err(err) => Lookup::Damaged(err.to_string()),
    }
}

/// Writes `tensors` as entry `e`: the GGUF to a temporary file renamed into place, then the
/// sidecar, so a crash never leaves an entry that verifies.
pub fn write(
    e: &Entry,
    tensors: &[(String, Arc<QTensor>)],
    source: &Path,
    quantization: &str,
) -> std::io::Result<()> {
    let dir = e.gguf.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let _ = std::fs::remove_file(&e.sidecar);
    let mut tmp = crate::files::temp_beside(&e.gguf)?;
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), &**t)).collect();
    gguf_file::write(tmp.as_file_mut(), &[], &refs).map_err(std::io::Error::other)?;
    crate::files::publish(tmp, &e.gguf)?;
    let (bytes, checksum) = checksum(&e.gguf)?;
    let side = Sidecar {
        format: FORMAT,
        bytes,
        checksum,
        source: source.display().to_string(),
        quantization: quantization.to_string(),
    };
    let text = serde_json::to_vec_pretty(&side).map_err(std::io::Error::other)?;
    crate::files::write_atomic(&e.sidecar, &text)
}
