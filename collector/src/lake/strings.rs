//! A string column of one row group as its dictionary and each row's index
//! into it, read from the column's pages directly.
//!
//! The lake's string columns are dictionary-encoded (the writer's default):
//! a row group's section, method or client is one of a few distinct values,
//! stored once in the dictionary page, and each row is a small integer. The
//! crate's typed column readers turn every row back into a `ByteArray`
//! (a reference-counted slice of the dictionary); a backtest only needs to
//! know which value each row has, so the indices are decoded here and the
//! values turned into text once per row group, not once per row. The
//! encodings handled are those of the Parquet format for a required,
//! non-nested byte array column: the dictionary page (PLAIN), dictionary
//! indices (RLE / bit-packed hybrid) in v1 and v2 data pages, and PLAIN data
//! pages, which a writer falls back to when a dictionary grows too large
//! (each of their values is a dictionary entry of its own here). A column
//! chunk with any other encoding (a v2 writer's delta encodings, say) is
//! read through the crate's typed reader instead.

use parquet::basic::{Encoding, Type};
use parquet::column::page::Page;
use parquet::data_type::ByteArrayType;
use parquet::file::reader::RowGroupReader;

/// One row group's values of a string column.
#[derive(Debug, Default)]
pub(super) struct Strings {
    /// The distinct values (from a PLAIN data page, not necessarily
    /// distinct), each as text or why it is not.
    pub values: Vec<Result<Box<str>, std::str::Utf8Error>>,
    /// Each row's index into `values`.
    pub ids: Vec<u32>,
}

impl Strings {
    /// Column `i` of a row group of `n` rows.
    pub fn read(group: &dyn RowGroupReader, i: usize, n: usize) -> Result<Strings, String> {
        let descr = group.metadata().column(i).column_descr();
        if descr.physical_type() != Type::BYTE_ARRAY
            || descr.max_def_level() != 0
            || descr.max_rep_level() != 0
        {
            return Err(format!(
                "column `{}` is not a required string column",
                descr.path()
            ));
        }
        let decoded_here = group.metadata().column(i).encodings().all(|e| {
            matches!(
                e,
                Encoding::PLAIN
                    | Encoding::PLAIN_DICTIONARY
                    | Encoding::RLE_DICTIONARY
                    | Encoding::RLE
            )
        });
        if !decoded_here {
            // Another writer's encodings (the lake's own never has them):
            // the crate's reader, every row a value of its own.
            let values = super::read::column::<ByteArrayType>(group, i, n)?;
            return Ok(Strings {
                values: values
                    .iter()
                    .map(|v| std::str::from_utf8(v.data()).map(Box::from))
                    .collect(),
                ids: (0..u32::try_from(n).map_err(|e| e.to_string())?).collect(),
            });
        }
        let mut pages = group.get_column_page_reader(i).map_err(|e| e.to_string())?;
        let mut out = Strings {
            values: Vec::new(),
            ids: Vec::with_capacity(n),
        };
        while let Some(page) = pages.get_next_page().map_err(|e| e.to_string())? {
            match page {
                Page::DictionaryPage {
                    buf, num_values, ..
                } => {
                    out.values.clear();
                    plain(&buf, num_values as usize, &mut out.values)?;
                }
                Page::DataPage {
                    buf,
                    num_values,
                    encoding,
                    ..
                } => out.data(&buf, num_values as usize, encoding)?,
                Page::DataPageV2 {
                    buf,
                    num_values,
                    encoding,
                    def_levels_byte_len,
                    rep_levels_byte_len,
                    ..
                } => {
                    // The levels come first (none for a required column,
                    // but skipped by their stated length all the same).
                    let levels = (def_levels_byte_len + rep_levels_byte_len) as usize;
                    let values = buf
                        .get(levels..)
                        .ok_or("a data page shorter than its levels")?;
                    out.data(values, num_values as usize, encoding)?;
                }
            }
        }
        if out.ids.len() != n {
            return Err(format!(
                "column {i} has {} values for {n} rows",
                out.ids.len()
            ));
        }
        Ok(out)
    }

    /// The `count` values of one data page.
    fn data(&mut self, buf: &[u8], count: usize, encoding: Encoding) -> Result<(), String> {
        match encoding {
            Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY => {
                let from = self.ids.len();
                dictionary_ids(buf, count, &mut self.ids)?;
                let len = self.values.len();
                if self.ids[from..].iter().any(|&id| id as usize >= len) {
                    return Err(format!("a dictionary index beyond its {len} values"));
                }
                Ok(())
            }
            Encoding::PLAIN => {
                let first = self.values.len();
                plain(buf, count, &mut self.values)?;
                let ids = u32::try_from(first)
                    .ok()
                    .zip(u32::try_from(self.values.len()).ok())
                    .ok_or("too many values in a row group")?;
                self.ids.extend(ids.0..ids.1);
                Ok(())
            }
            other => Err(format!("a string column encoded as {other}")),
        }
    }
}

/// `count` PLAIN byte arrays (each a 4-byte little-endian length and its
/// bytes) onto `to`.
fn plain(
    mut buf: &[u8],
    count: usize,
    to: &mut Vec<Result<Box<str>, std::str::Utf8Error>>,
) -> Result<(), String> {
    const TRUNCATED: &str = "a truncated string page";
    for _ in 0..count {
        let (len, rest) = buf.split_first_chunk::<4>().ok_or(TRUNCATED)?;
        let (bytes, rest) = rest
            .split_at_checked(u32::from_le_bytes(*len) as usize)
            .ok_or(TRUNCATED)?;
        to.push(std::str::from_utf8(bytes).map(Box::from));
        buf = rest;
    }
    Ok(())
}

/// An unsigned LEB128 number off the front of `buf`.
fn uleb128(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or("a truncated run header")?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a run header longer than 64 bits".into())
}

/// `count` dictionary indices of a data page (a bit width byte, then runs of
/// the RLE / bit-packed hybrid encoding) onto `ids`.
fn dictionary_ids(buf: &[u8], count: usize, ids: &mut Vec<u32>) -> Result<(), String> {
    let (&width, mut buf) = buf.split_first().ok_or("an empty dictionary index page")?;
    let width = u32::from(width);
    if width > 32 {
        return Err(format!("dictionary indices of {width} bits"));
    }
    let mask = u32::MAX.checked_shr(32 - width).unwrap_or(0);
    let target = ids.len() + count;
    while ids.len() < target {
        let header = uleb128(&mut buf)?;
        let left = target - ids.len();
        if header & 1 == 0 {
            // A run of one value, in the fewest whole bytes its width needs.
            let run = usize::try_from(header >> 1).unwrap_or(usize::MAX);
            let (value, rest) = buf
                .split_at_checked(width.div_ceil(8) as usize)
                .ok_or("a truncated run")?;
            buf = rest;
            let value = value
                .iter()
                .rev()
                .fold(0u32, |v, &b| (v << 8) | u32::from(b));
            if run == 0 {
                return Err("an empty run".into());
            }
            ids.extend(std::iter::repeat_n(value, run.min(left)));
        } else {
            // Groups of eight values, `width` bits each, least significant
            // bit first; the last group may be padded past `count`.
            let groups = usize::try_from(header >> 1).unwrap_or(usize::MAX);
            let len = groups.saturating_mul(width as usize).min(buf.len());
            let (packed, rest) = buf.split_at(len);
            buf = rest;
            let values = groups.saturating_mul(8).min(left);
            if values as u64 * u64::from(width) > packed.len() as u64 * 8 || groups == 0 {
                return Err("a truncated bit-packed run".into());
            }
            let (mut acc, mut bits) = (0u64, 0u32);
            let mut bytes = packed.iter();
            for _ in 0..values {
                while bits < width {
                    acc |= u64::from(bytes.next().copied().unwrap_or(0)) << bits;
                    bits += 8;
                }
                ids.push(acc as u32 & mask);
                acc >>= width;
                bits -= width;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::data_type::ByteArray;
    use parquet::file::properties::{WriterProperties, WriterVersion};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;

    #[test]
    fn hybrid_runs_decode() {
        // Width 3: an RLE run of five 6s, then one bit-packed group of
        // 0..8 (the last two values padding past the count).
        let mut buf = vec![3u8, 5 << 1, 6, (1 << 1) | 1];
        let mut bits = 0u32;
        let mut packed = Vec::new();
        let mut acc = 0u32;
        for v in 0..8u32 {
            acc |= v << bits;
            bits += 3;
            while bits >= 8 {
                packed.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
        buf.extend(packed);
        let mut ids = Vec::new();
        dictionary_ids(&buf, 11, &mut ids).unwrap();
        assert_eq!(ids, [6, 6, 6, 6, 6, 0, 1, 2, 3, 4, 5]);
        // Width 0: a single-value dictionary.
        let mut ids = Vec::new();
        dictionary_ids(&[0, 4 << 1], 4, &mut ids).unwrap();
        assert_eq!(ids, [0; 4]);
        assert!(dictionary_ids(&[3, 1 << 1], 2, &mut Vec::new()).is_err());
    }

    /// `values` written as a one-column file with `properties`, read back.
    fn round_trip(values: &[String], properties: WriterProperties) -> Vec<String> {
        let schema = Arc::new(
            parquet::schema::parser::parse_message_type(
                "message m { required binary s (STRING); }",
            )
            .unwrap(),
        );
        let mut out = Vec::new();
        let mut writer = SerializedFileWriter::new(&mut out, schema, Arc::new(properties)).unwrap();
        let mut group = writer.next_row_group().unwrap();
        let mut column = group.next_column().unwrap().unwrap();
        let bytes: Vec<ByteArray> = values.iter().map(|v| ByteArray::from(v.as_str())).collect();
        column
            .typed::<ByteArrayType>()
            .write_batch(&bytes, None, None)
            .unwrap();
        column.close().unwrap();
        group.close().unwrap();
        writer.close().unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(out)).unwrap();
        let group = reader.get_row_group(0).unwrap();
        let strings = Strings::read(&*group, 0, values.len()).unwrap();
        strings
            .ids
            .iter()
            .map(|&id| strings.values[id as usize].as_deref().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn every_encoding_a_writer_picks_reads_back() {
        // Few distinct values, then many (past a small dictionary limit, so
        // the column falls back to PLAIN pages after the dictionary ones).
        let values: Vec<String> = (0..5000)
            .map(|i| match i < 3000 {
                true => format!("10.0.0.{}", i % 7),
                false => format!("client-{i}"),
            })
            .collect();
        let builder = || {
            WriterProperties::builder()
                .set_data_page_row_count_limit(500)
                .set_write_batch_size(100)
        };
        for properties in [
            builder().build(),
            builder().set_dictionary_enabled(false).build(),
            builder().set_dictionary_page_size_limit(256).build(),
            // v2 data pages: dictionary indices after the (empty) levels.
            builder()
                .set_writer_version(WriterVersion::PARQUET_2_0)
                .build(),
            // v2 falls back to DELTA_BYTE_ARRAY: the crate's reader.
            builder()
                .set_writer_version(WriterVersion::PARQUET_2_0)
                .set_dictionary_page_size_limit(256)
                .build(),
        ] {
            assert_eq!(round_trip(&values, properties), values);
        }
    }

    #[test]
    fn plain_values_decode() {
        let mut buf = Vec::new();
        for s in [&b"GET"[..], b"", b"\xff"] {
            buf.extend((s.len() as u32).to_le_bytes());
            buf.extend(s);
        }
        let mut values = Vec::new();
        plain(&buf, 3, &mut values).unwrap();
        assert_eq!(values[0].as_deref(), Ok("GET"));
        assert_eq!(values[1].as_deref(), Ok(""));
        assert!(values[2].is_err());
        assert!(plain(&buf[..5], 2, &mut values).is_err());
    }
}
