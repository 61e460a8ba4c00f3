//! The quantized-base cache: quantizing a base costs minutes for an 8B model, so the
//! quantized matrices are written once under the cache folder, keyed by the weight files'
//! identity (path, size, modification time) and the plan, and read back through a memory
//! map on later loads. Block formats go into a GGUF file; NF4, which GGUF has no type for,
//! into a safetensors file of its parts (codes, int8 scales, their scales, the mean). A
//! sidecar records the file's size and checksum; an entry that does not match (truncated,
//! overwritten, half-written) is reported and rebuilt.

use super::nf4::{Nf4Parts, Nf4Tensor};
use super::stored::Stored;
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
    /// `<key>.gguf` for block formats, `<key>.safetensors` for NF4.
    pub file: PathBuf,
    pub sidecar: PathBuf,
}

impl Entry {
    fn is_nf4(&self) -> bool {
        self.file.extension().is_some_and(|e| e == "safetensors")
    }
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
    let ext = if plan.0 == "nf4" {
        "safetensors"
    } else {
        "gguf"
    };
    Ok(Entry {
        file: dir.join(format!("{key}.{ext}")),
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
    Hit(HashMap<String, Stored>),
    Missing,
    /// Present but unusable, and why; it will be rebuilt.
    Damaged(String),
}

/// Reads `e` onto `device`, checking its size and checksum against the sidecar first.
pub fn read(e: &Entry, device: &Device) -> Lookup {
    let Ok(text) = std::fs::read(&e.sidecar) else {
        return Lookup::Missing;
    };
    if !e.file.is_file() {
        return Lookup::Damaged("the sidecar has no quantized file beside it".into());
    }
    let side: Sidecar = match serde_json::from_slice(&text) {
        Ok(s) => s,
        Err(err) => return Lookup::Damaged(format!("unreadable sidecar: {err}")),
    };
    if side.format != FORMAT {
        return Lookup::Damaged(format!("format {} (expected {FORMAT})", side.format));
    }
    match checksum(&e.file) {
        Ok((bytes, sum)) if bytes == side.bytes && sum == side.checksum => {}
        Ok((bytes, _)) if bytes != side.bytes => {
            return Lookup::Damaged(format!("{bytes} bytes, expected {}", side.bytes))
        }
        Ok(_) => return Lookup::Damaged("checksum mismatch".into()),
        Err(err) => return Lookup::Damaged(err.to_string()),
    }
    let load = || -> candle_core::Result<HashMap<String, Stored>> {
        let f = std::fs::File::open(&e.file)?;
        // SAFETY: the entry is ours, written once and renamed into place; a concurrent
        // rewrite replaces the file (a new inode) rather than changing these pages.
        let map = unsafe { memmap2::Mmap::map(&f)? };
        if e.is_nf4() {
            read_nf4(&map, device)
        } else {
            read_gguf(&map, device)
        }
    };
    match load() {
        Ok(m) => Lookup::Hit(m),
        Err(err) => Lookup::Damaged(err.to_string()),
    }
}

/// The block-format matrices of a GGUF entry, copied out of the map into candle's storage.
fn read_gguf(map: &[u8], device: &Device) -> candle_core::Result<HashMap<String, Stored>> {
    let mut cur = std::io::Cursor::new(map);
    let content = gguf_file::Content::read(&mut cur)?;
    let mut out = HashMap::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let t = content.tensor(&mut cur, name, device)?;
        out.insert(name.clone(), Stored::Ggml(Arc::new(t)));
    }
    Ok(out)
}

/// Suffixes of an NF4 matrix's parts in a safetensors entry.
const CODES: &str = ".nf4_codes";
const SCALES: &str = ".nf4_scales";
const SCALE_SCALES: &str = ".nf4_scale_scales";
const MEAN: &str = ".nf4_mean";

/// The NF4 matrices of a safetensors entry.
fn read_nf4(map: &[u8], device: &Device) -> candle_core::Result<HashMap<String, Stored>> {
    use safetensors::{Dtype, SafeTensors};
    let st = SafeTensors::deserialize(map).map_err(candle_core::Error::wrap)?;
    let get = |name: &str, dtype: Dtype| -> candle_core::Result<(Vec<usize>, &[u8])> {
        let t = st.tensor(name).map_err(candle_core::Error::wrap)?;
        if t.dtype() != dtype {
            candle_core::bail!("{name}: {:?}, expected {dtype:?}", t.dtype());
        }
        Ok((t.shape().to_vec(), t.data()))
    };
    let f32s = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let mut out = HashMap::new();
    for full in st.names() {
        let Some(name) = full.strip_suffix(CODES) else {
            continue;
        };
        let (shape, codes) = get(full, Dtype::U8)?;
        let [rows, half] = shape[..] else {
            candle_core::bail!("{full}: shape {shape:?}, expected two dimensions");
        };
        let (_, scales) = get(&format!("{name}{SCALES}"), Dtype::I8)?;
        let (_, scale_scales) = get(&format!("{name}{SCALE_SCALES}"), Dtype::F32)?;
        let (_, mean) = get(&format!("{name}{MEAN}"), Dtype::F32)?;
        let parts = Nf4Parts {
            rows,
            cols: 2 * half,
            codes: codes.to_vec(),
            scales_q: scales.iter().map(|&b| b as i8).collect(),
            scales_scale: f32s(scale_scales),
            mean: f32s(mean).first().copied().unwrap_or(0.0),
        };
        let q = Nf4Tensor::from_parts(parts, device)?;
        out.insert(name.to_string(), Stored::Nf4(Arc::new(q)));
    }
    Ok(out)
}

/// Writes `tensors` to `path` in the entry's format: a GGUF of block formats, or a
/// safetensors file of NF4 parts (codes borrowed where they sit in host memory).
fn encode(e: &Entry, tensors: &[(String, Stored)], path: &Path) -> std::io::Result<()> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    use std::borrow::Cow;
    if !e.is_nf4() {
        let refs: Vec<(&str, &QTensor)> = tensors
            .iter()
            .filter_map(|(n, t)| match t {
                Stored::Ggml(q) => Some((n.as_str(), &**q)),
                Stored::Nf4(_) => None,
            })
            .collect();
        let mut f = std::fs::File::create(path)?;
        return gguf_file::write(&mut f, &[], &refs).map_err(std::io::Error::other);
    }
    let le = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    /// One safetensors entry: name, type, shape, bytes.
    type Part<'a> = (String, Dtype, Vec<usize>, Cow<'a, [u8]>);
    let mut parts: Vec<Part> = Vec::new();
    for (n, t) in tensors {
        let Stored::Nf4(q) = t else { continue };
        let p = q.parts_without_codes().map_err(std::io::Error::other)?;
        let codes = match q.host_codes() {
            Some(c) => Cow::Borrowed(c),
            None => Cow::Owned(q.parts().map_err(std::io::Error::other)?.codes),
        };
        let shape = vec![p.rows, p.cols / 2];
        parts.push((format!("{n}{CODES}"), Dtype::U8, shape, codes));
        let scales: Vec<u8> = p.scales_q.iter().map(|&x| x as u8).collect();
        parts.push((
            format!("{n}{SCALES}"),
            Dtype::I8,
            vec![scales.len()],
            scales.into(),
        ));
        let groups = p.scales_scale.len();
        let ss = le(&p.scales_scale);
        parts.push((
            format!("{n}{SCALE_SCALES}"),
            Dtype::F32,
            vec![groups],
            ss.into(),
        ));
        parts.push((
            format!("{n}{MEAN}"),
            Dtype::F32,
            vec![1],
            le(&[p.mean]).into(),
        ));
    }
    let views = parts
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(std::io::Error::other)?;
    safetensors::tensor::serialize_to_file(views, None, path).map_err(std::io::Error::other)
}

/// Writes `tensors` as entry `e`: the file to a temporary one renamed into place, then the
/// sidecar, so a crash never leaves an entry that verifies.
pub fn write(
    e: &Entry,
    tensors: &[(String, Stored)],
    source: &Path,
    quantization: &str,
) -> std::io::Result<()> {
    let dir = e.file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let _ = std::fs::remove_file(&e.sidecar);
    let tmp = crate::files::temp_beside(&e.file)?;
    encode(e, tensors, tmp.path())?;
    crate::files::publish(tmp, &e.file)?;
    let (bytes, checksum) = checksum(&e.file)?;
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
