//! Reads a ZIP archive's central directory (entry names and declared sizes) without
//! inflating anything, so that uploads can be bounded before they are parsed.

/// One archive entry as the central directory declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Entry name.
    pub name: String,
    /// Compressed size.
    pub compressed: u64,
    /// Uncompressed size.
    pub uncompressed: u64,
}

// Offsets come from the archive itself, so every sum is checked: an offset near `usize::MAX`
// is a damaged archive, not an overflow (fuzzing found one in the ZIP64 record's offset).

fn u16_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at.checked_add(2)?).map(|s| u64::from(u16::from_le_bytes([s[0], s[1]])))
}

fn u32_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at.checked_add(4)?).map(|s| u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]])))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at.checked_add(8)?).map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
}

/// The entries of the archive in `bytes`.
pub fn entries(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    const EOCD: u64 = 0x0605_4b50;
    const CDH: u64 = 0x0201_4b50;
    let damaged = |what: &str| format!("damaged ZIP archive ({what})");
    let search_from = bytes.len().saturating_sub(22 + 65_535);
    let eocd = (search_from..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(bytes, i) == Some(EOCD))
        .ok_or_else(|| damaged("no end of central directory"))?;
    let mut count = u16_at(bytes, eocd + 10).ok_or_else(|| damaged("truncated"))?;
    let mut offset = u32_at(bytes, eocd + 16).ok_or_else(|| damaged("truncated"))?;
    if count == 0xFFFF || offset == 0xFFFF_FFFF {
        // ZIP64: the locator sits just before the end record.
        let locator = eocd.checked_sub(20).ok_or_else(|| damaged("no ZIP64 locator"))?;
        let zip64_eocd = u64_at(bytes, locator + 8).ok_or_else(|| damaged("truncated ZIP64 locator"))?;
        let zip64_eocd = usize::try_from(zip64_eocd).map_err(|_| damaged("ZIP64 record offset"))?;
        let record = |off: usize| zip64_eocd.checked_add(off).and_then(|at| u64_at(bytes, at));
        count = record(32).ok_or_else(|| damaged("truncated ZIP64 record"))?;
        offset = record(48).ok_or_else(|| damaged("truncated ZIP64 record"))?;
    }
    if count > 1_000_000 {
        return Err(damaged("too many entries"));
    }
    let mut at = usize::try_from(offset).map_err(|_| damaged("offset"))?;
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        if u32_at(bytes, at) != Some(CDH) {
            return Err(damaged("bad central directory header"));
        }
        let mut compressed = u32_at(bytes, at + 20).ok_or_else(|| damaged("truncated"))?;
        let mut uncompressed = u32_at(bytes, at + 24).ok_or_else(|| damaged("truncated"))?;
        let name_len = u16_at(bytes, at + 28).ok_or_else(|| damaged("truncated"))? as usize;
        let extra_len = u16_at(bytes, at + 30).ok_or_else(|| damaged("truncated"))? as usize;
        let comment_len = u16_at(bytes, at + 32).ok_or_else(|| damaged("truncated"))? as usize;
        let name = bytes.get(at + 46..at + 46 + name_len).ok_or_else(|| damaged("truncated name"))?;
        let name = String::from_utf8_lossy(name).into_owned();
        // ZIP64 extra field: 64-bit sizes replace the 0xFFFFFFFF placeholders, in order.
        let extra = bytes.get(at + 46 + name_len..at + 46 + name_len + extra_len).unwrap_or(&[]);
        let mut e = 0;
        while e + 4 <= extra.len() {
            let id = u16_at(extra, e).unwrap_or(0);
            let len = u16_at(extra, e + 2).unwrap_or(0) as usize;
            if id == 0x0001 {
                let mut field = e + 4;
                if uncompressed == 0xFFFF_FFFF {
                    uncompressed = u64_at(extra, field).unwrap_or(u64::MAX);
                    field += 8;
                }
                if compressed == 0xFFFF_FFFF {
                    compressed = u64_at(extra, field).unwrap_or(0);
                }
            }
            e += 4 + len;
        }
        out.push(Entry { name, compressed, uncompressed });
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(out)
}
