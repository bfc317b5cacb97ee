//! One lake file: the Parquet schema of an event and the encoder that turns
//! the rows of one partition into a whole file, zstd-compressed, sorted by
//! time (ties keep bus order), in row groups of a bounded number of rows.
//!
//! Written with the `parquet` crate's low-level column writers, without its
//! `arrow` feature (see docs/dependencies.md for the build times measured).
//! Every file carries its bus range in its footer (`logmon.bus_range`), so a
//! file copied out of its directory still says where it came from.

use super::layout::Range;
use logmon_protocol::Event;
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, DataType, Int32Type, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use std::sync::Arc;

/// The schema of every lake file (`time` first: the sort column).
pub const SCHEMA: &str = "
message event {
  required int64 time (TIMESTAMP(NANOS,true));
  required binary host (STRING);
  required binary agent (STRING);
  required binary stream (STRING);
  required int64 stream_fingerprint (INTEGER(64,false));
  required binary section (STRING);
  required binary method (STRING);
  required binary path (STRING);
  required binary protocol (STRING);
  required int32 status (INTEGER(16,false));
  required int64 bytes (INTEGER(64,false));
  required binary client (STRING);
  required binary user (STRING);
  optional binary referer (STRING);
  optional binary user_agent (STRING);
  optional int64 duration_us (INTEGER(64,false));
  required group labels (MAP) {
    repeated group key_value {
      required binary key (STRING);
      required binary value (STRING);
    }
  }
}
";

/// Footer key of a file's bus range (`FIRST-END`).
pub const RANGE_KEY: &str = "logmon.bus_range";

/// What every event of one wire batch shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub host: String,
    pub agent: String,
    pub stream: String,
    pub fingerprint: u64,
    pub labels: Vec<(String, String)>,
}

/// One event waiting in a partition.
#[derive(Debug, Clone)]
pub struct Row {
    pub source: Arc<Source>,
    pub event: Event,
}

/// zstd level of the files: 3, zstd's own default, is where its speed and
/// ratio curve bends.
const ZSTD_LEVEL: i32 = 3;

/// The file of `rows` (sorted here) covering bus `range`, in row groups of
/// at most `row_group_rows` rows.
pub fn encode(
    rows: &mut [Row],
    range: Range,
    row_group_rows: usize,
) -> Result<Vec<u8>, ParquetError> {
    rows.sort_by_key(|r| r.event.timestamp);
    let schema = Arc::new(parquet::schema::parser::parse_message_type(SCHEMA)?);
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            RANGE_KEY.to_owned(),
            format!("{}-{}", range.first, range.end),
        )]))
        .set_created_by(format!("logmon {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut out = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut out, schema, Arc::new(properties))?;
    for group in rows.chunks(row_group_rows.max(1)) {
        let mut row_group = writer.next_row_group()?;
        let mut index = 0;
        while let Some(mut column) = row_group.next_column()? {
            write_column(&mut column, index, group)?;
            column.close()?;
            index += 1;
        }
        row_group.close()?;
    }
    writer.close()?;
    Ok(out)
}

fn text(s: &str) -> ByteArray {
    ByteArray::from(s)
}

/// Writes one leaf column: `value` of each row, `None` for a null (only in
/// an `optional` column).
fn put<T: DataType>(
    column: &mut SerializedColumnWriter<'_>,
    rows: &[Row],
    optional: bool,
    value: impl Fn(&Row) -> Option<T::T>,
) -> Result<(), ParquetError> {
    let present: Vec<Option<T::T>> = rows.iter().map(value).collect();
    let defined: Vec<i16> = present.iter().map(|v| i16::from(v.is_some())).collect();
    let values: Vec<T::T> = present.into_iter().flatten().collect();
    column
        .typed::<T>()
        .write_batch(&values, optional.then_some(&defined[..]), None)?;
    Ok(())
}

/// The key (`key`) or value column of the labels map: every label of a row
/// (its batch's, then its event's own) is an entry; a row without labels is
/// an empty map.
fn labels(
    column: &mut SerializedColumnWriter<'_>,
    rows: &[Row],
    key: bool,
) -> Result<(), ParquetError> {
    let (mut values, mut defined, mut repeated) = (Vec::new(), Vec::new(), Vec::new());
    for row in rows {
        if row.source.labels.is_empty() && row.event.labels.is_empty() {
            // The (required) map with no entry: definition level 0.
            defined.push(0);
            repeated.push(0);
        }
        // The batch's labels, then the event's own (a format's unknown
        // variables, an edge filter's labels).
        let all = row.source.labels.iter().chain(&row.event.labels);
        for (i, (k, v)) in all.enumerate() {
            values.push(text(if key { k } else { v }));
            defined.push(1);
            repeated.push(i16::from(i > 0));
        }
    }
    column
        .typed::<ByteArrayType>()
        .write_batch(&values, Some(&defined), Some(&repeated))?;
    Ok(())
}

/// Writes leaf column `index` of [`SCHEMA`] for `rows`.
fn write_column(
    column: &mut SerializedColumnWriter<'_>,
    index: usize,
    rows: &[Row],
) -> Result<(), ParquetError> {
    type Text = ByteArrayType;
    match index {
        0 => put::<Int64Type>(column, rows, false, |r| Some(r.event.timestamp)),
        1 => put::<Text>(column, rows, false, |r| Some(text(&r.source.host))),
        2 => put::<Text>(column, rows, false, |r| Some(text(&r.source.agent))),
        3 => put::<Text>(column, rows, false, |r| Some(text(&r.source.stream))),
        // The unsigned value's bits; the column's logical type says unsigned.
        4 => put::<Int64Type>(column, rows, false, |r| Some(r.source.fingerprint as i64)),
        5 => put::<Text>(column, rows, false, |r| Some(text(r.event.section()))),
        6 => put::<Text>(column, rows, false, |r| Some(text(&r.event.method))),
        7 => put::<Text>(column, rows, false, |r| Some(text(&r.event.path))),
        8 => put::<Text>(column, rows, false, |r| Some(text(&r.event.protocol))),
        9 => put::<Int32Type>(column, rows, false, |r| Some(i32::from(r.event.status))),
        10 => put::<Int64Type>(column, rows, false, |r| Some(r.event.bytes as i64)),
        11 => put::<Text>(column, rows, false, |r| Some(text(&r.event.client))),
        12 => put::<Text>(column, rows, false, |r| Some(text(&r.event.user))),
        13 => put::<Text>(column, rows, true, |r| r.event.referer.as_deref().map(text)),
        14 => put::<Text>(column, rows, true, |r| {
            r.event.user_agent.as_deref().map(text)
        }),
        15 => put::<Int64Type>(column, rows, true, |r| {
            r.event.duration_us.map(|d| d as i64)
        }),
        16 => labels(column, rows, true),
        17 => labels(column, rows, false),
        other => Err(ParquetError::General(format!(
            "the lake schema has no leaf column {other}"
        ))),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    /// (time, path, host, labels as `k=v` joined by `,`) of every row of a
    /// file, in file order, read back with the crate's own record reader.
    pub(crate) fn read_back(bytes: Vec<u8>) -> Vec<(i64, String, String, String)> {
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let mut out = Vec::new();
        for row in reader.get_row_iter(None).unwrap() {
            let row = row.unwrap();
            let (mut time, mut path, mut host) = (0, String::new(), String::new());
            let mut pairs = String::new();
            for (name, field) in row.get_column_iter() {
                match (name.as_str(), field) {
                    ("time", Field::Long(t)) => time = *t,
                    ("path", Field::Str(s)) => path.clone_from(s),
                    ("host", Field::Str(s)) => host.clone_from(s),
                    ("labels", Field::MapInternal(map)) => {
                        let entries: Vec<String> = map
                            .entries()
                            .iter()
                            .map(|(k, v)| format!("{k}={v}").replace('"', ""))
                            .collect();
                        pairs = entries.join(",");
                    }
                    _ => {}
                }
            }
            out.push((time, path, host, pairs));
        }
        out
    }

    pub(crate) fn row(source: &Arc<Source>, timestamp: i64, path: &str) -> Row {
        Row {
            source: Arc::clone(source),
            event: Event {
                timestamp,
                client: "10.0.0.1".into(),
                method: "GET".into(),
                path: path.into(),
                protocol: "HTTP/1.1".into(),
                status: 200,
                bytes: 512,
                referer: Some("https://example.com/".into()),
                ..Event::default()
            },
        }
    }

    pub(crate) fn source(host: &str, labels: &[(&str, &str)]) -> Arc<Source> {
        Arc::new(Source {
            host: host.into(),
            agent: "agent-1".into(),
            stream: "/var/log/access.log".into(),
            fingerprint: u64::MAX - 1,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        })
    }

    #[test]
    fn rows_come_back_sorted_by_time_with_their_labels() {
        let plain = source("web-1", &[]);
        let labelled = source("web-2", &[("env", "prod"), ("dc", "eu-1")]);
        let mut rows = vec![
            row(&plain, 30, "/c"),
            row(&labelled, 10, "/a"),
            row(&plain, 20, "/b"),
            row(&labelled, 10, "/a2"),
            row(&plain, 5, "/first"),
        ];
        let bytes = encode(&mut rows, Range { first: 3, end: 9 }, 2).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes.clone())).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.num_row_groups(), 3);
        let footer = meta.file_metadata().key_value_metadata().unwrap();
        assert!(
            footer
                .iter()
                .any(|kv| kv.key == RANGE_KEY && kv.value.as_deref() == Some("3-9"))
        );
        let back = read_back(bytes);
        let times: Vec<i64> = back.iter().map(|r| r.0).collect();
        assert_eq!(times, [5, 10, 10, 20, 30]);
        // Equal times keep the order they came in.
        assert_eq!(back[1].1, "/a");
        assert_eq!(back[2].1, "/a2");
        assert_eq!(back[1].3, "env=prod,dc=eu-1");
        assert_eq!(back[0].3, "");
        assert_eq!(back[0].2, "web-1");
    }
}
