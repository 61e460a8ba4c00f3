//! TFRecord framing, the container of TensorBoard's event files: each record is its length
//! (u64, little-endian), the masked CRC-32C of those 8 bytes, the data, and the masked
//! CRC-32C of the data. Readers (TensorBoard, `wandb sync`) check both checksums, so a
//! record is either whole or detectably torn.
//!
//! CRC-32C (Castagnoli) is not the CRC-32 of zlib that `crc32fast` computes; it is small
//! enough to carry here (a 256-entry table built at compile time).

/// The CRC-32C table, reflected polynomial 0x82F63B78.
const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, b| {
        TABLE[((c ^ *b as u32) & 0xff) as usize] ^ (c >> 8)
    })
}

/// The masked CRC TFRecord stores (a CRC of data that holds CRCs is weak, so TensorFlow
/// rotates and offsets it).
pub fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// `data` as one framed record.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// What is wrong with a file of records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record {index} at byte {offset}: {what}")]
    Bad {
        index: usize,
        offset: usize,
        what: &'static str,
    },
}

/// Every record's data in `bytes`, each checksum checked.
pub fn unframe(bytes: &[u8]) -> Result<Vec<&[u8]>, RecordError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let bad = |what| RecordError::Bad {
            index: out.len(),
            offset: at,
            what,
        };
        let header = bytes.get(at..at + 12).ok_or_else(|| bad("torn header"))?;
        let (len, crc) = header.split_at(8);
        if masked_crc(len).to_le_bytes() != crc {
            return Err(bad("length checksum mismatch"));
        }
        let n = u64::from_le_bytes(len.try_into().unwrap_or_default());
        let n = usize::try_from(n).map_err(|_| bad("length out of range"))?;
        let end = (at + 12)
            .checked_add(n)
            .and_then(|e| e.checked_add(4))
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| bad("torn data"))?;
        let data = &bytes[at + 12..end - 4];
        if masked_crc(data).to_le_bytes() != bytes[end - 4..end] {
            return Err(bad("data checksum mismatch"));
        }
        out.push(data);
        at = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_values() {
        // RFC 3720 (iSCSI), appendix B.4, and the CRC catalogue's check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
        assert_eq!(crc32c(b""), 0);
    }

    /// `tensorboard.compat.tensorflow_stub.pywrap_tensorflow.masked_crc32c(struct.pack("<Q", 5))`.
    const MASKED_LEN_5: u32 = 0x3e04_b2ea;

    #[test]
    fn records_round_trip_and_damage_is_caught() {
        let mut file = frame(b"hello");
        file.extend(frame(b""));
        file.extend(frame(&[7u8; 300]));
        let back = unframe(&file).unwrap();
        assert_eq!(back, [&b"hello"[..], &b""[..], &[7u8; 300][..]]);
        // The first record's header: length 5, then its masked CRC (computed by
        // tensorboard's own `masked_crc32c` for these 8 bytes).
        assert_eq!(&file[..8], &5u64.to_le_bytes());
        assert_eq!(
            u32::from_le_bytes(file[8..12].try_into().unwrap()),
            MASKED_LEN_5
        );
        let mut torn = file.clone();
        torn.truncate(file.len() - 1);
        assert!(unframe(&torn)
            .unwrap_err()
            .to_string()
            .contains("torn data"));
        let mut flipped = file.clone();
        flipped[13] ^= 1;
        assert_eq!(
            unframe(&flipped).unwrap_err().to_string(),
            "record 0 at byte 0: data checksum mismatch"
        );
        let mut flipped = file;
        flipped[0] ^= 1;
        assert!(unframe(&flipped)
            .unwrap_err()
            .to_string()
            .contains("length checksum"));
    }
}
