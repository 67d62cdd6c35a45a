//! Reads a ZIP archive's central directory (entry names and declared sizes) without
//! inflating anything, so that uploads can be bounded before they are parsed. The `zip`
//! crate (the one calamine reads the workbook with) parses it.

use std::io::Cursor;

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

/// The entries of the archive in `bytes`, or why it is not a readable archive.
pub fn entries(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let damaged = |e: zip::result::ZipError| format!("damaged ZIP archive ({e})");
    let archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(damaged)?;
    (0..archive.len())
        .map(|i| {
            let entry = archive.by_index_data(i).map_err(damaged)?;
            Ok(Entry {
                name: String::from_utf8_lossy(entry.name_raw()).into_owned(),
                compressed: entry.compressed_size(),
                uncompressed: entry.size(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, body) in files {
            out.start_file(*name, options).unwrap();
            out.write_all(body).unwrap();
        }
        out.finish().unwrap().into_inner()
    }

    #[test]
    fn lists_names_and_declared_sizes_without_inflating() {
        let zeros = vec![0u8; 1 << 20];
        let bytes = archive(&[("xl/workbook.xml", b"<workbook/>"), ("xl/worksheets/sheet1.xml", &zeros)]);
        let found = entries(&bytes).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].name, "xl/workbook.xml");
        assert_eq!(found[1].uncompressed, 1 << 20);
        assert!(found[1].compressed < 10_000, "a megabyte of zeros deflates to little: {:?}", found[1]);
    }

    #[test]
    fn a_damaged_archive_is_named_so() {
        let bytes = archive(&[("a.xml", b"<a/>")]);
        for broken in [&bytes[..bytes.len() - 10], &b"PK\x03\x04 not a zip"[..], &[][..]] {
            let err = entries(broken).unwrap_err();
            assert!(err.starts_with("damaged ZIP archive ("), "{err}");
        }
    }
}
