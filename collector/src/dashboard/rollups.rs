//! The part of a `/api/series` range that memory does not hold, from the
//! per-second rollups in InfluxDB (`http_traffic` in the rollup retention
//! policy, one point per second, host and section; see
//! [`crate::influx::schema`]), summed per bucket with InfluxQL over the v1
//! `/query` API.
//!
//! Two round trips: the bucket totals together with each section's total
//! over the range (which picks the busiest sections, with memory's), then the
//! busiest sections' buckets. Queries fail fast (one retry, a short timeout):
//! a dashboard waiting minutes for a server that is down helps nobody, and
//! the caller falls back to memory.

use super::series::{Grid, SectionBuckets, Sums};
use crate::influx::schema::HTTP_TRAFFIC;
use crate::influx::{InfluxApi, InfluxClient, InfluxConfig, QueryError};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Where the rollups are, and a client to ask.
#[derive(Debug, Clone)]
pub struct RollupSource {
    client: InfluxClient,
    database: String,
    /// `"db"."rp"."http_traffic"`.
    measurement: String,
}

/// Bucket totals of the rollups, and each section's total over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupTotals {
    pub sums: Sums,
    pub sections: HashMap<Box<str>, u64>,
    /// InfluxDB cut an answer short (its `max-row-limit`).
    pub partial: bool,
}

impl RollupSource {
    /// A source for the v1 API's database and rollup policy; `None` for the
    /// v2 API, whose buckets InfluxQL does not name.
    pub fn new(config: &InfluxConfig) -> Option<Result<RollupSource, crate::influx::ConfigError>> {
        let InfluxApi::V1(v1) = &config.api else {
            return None;
        };
        let config = InfluxConfig {
            max_retries: 1,
            request_timeout_ms: config.request_timeout_ms.min(10_000),
            connect_timeout_ms: config.connect_timeout_ms.min(2_000),
            ..config.clone()
        };
        let measurement = format!(
            "{}.{}.{}",
            ident(&v1.database),
            ident(&v1.rollup_policy),
            ident(HTTP_TRAFFIC)
        );
        let database = v1.database.clone();
        Some(InfluxClient::new(config).map(|client| RollupSource {
            client,
            database,
            measurement,
        }))
    }

    /// Totals of `grid`'s buckets `0..upto`.
    pub async fn totals(&self, grid: &Grid, upto: usize) -> Result<RollupTotals, QueryError> {
        let q = totals_query(&self.measurement, grid, upto);
        let json = self.client.query(Some(&self.database), &q).await?;
        parse_totals(&json, grid)
    }

    /// The buckets `0..upto` of `sections`.
    pub async fn sections(
        &self,
        grid: &Grid,
        upto: usize,
        sections: &[Box<str>],
    ) -> Result<(SectionBuckets, bool), QueryError> {
        if sections.is_empty() || upto == 0 {
            return Ok((HashMap::new(), false));
        }
        let q = sections_query(&self.measurement, grid, upto, sections);
        let json = self.client.query(Some(&self.database), &q).await?;
        parse_sections(&json, grid)
    }
}

/// An InfluxQL identifier, double-quoted.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An InfluxQL string literal, single-quoted.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `time >= a AND time < b` over buckets `0..upto`, in epoch seconds.
fn time_range(grid: &Grid, upto: usize) -> String {
    let end = grid.bucket_start(upto).min(grid.last + 1);
    format!("time >= {}s AND time < {}s", grid.start, end)
}

pub(crate) fn totals_query(measurement: &str, grid: &Grid, upto: usize) -> String {
    let when = time_range(grid, upto);
    format!(
        "SELECT sum(\"hits\") AS \"hits\", sum(\"bytes\") AS \"bytes\", \
         sum(\"status_2xx\") AS \"s2\", sum(\"status_3xx\") AS \"s3\", \
         sum(\"status_4xx\") AS \"s4\", sum(\"status_5xx\") AS \"s5\" \
         FROM {measurement} WHERE {when} GROUP BY time({res}s); \
         SELECT sum(\"hits\") AS \"hits\" FROM {measurement} WHERE {when} GROUP BY \"section\"",
        res = grid.res
    )
}

pub(crate) fn sections_query(
    measurement: &str,
    grid: &Grid,
    upto: usize,
    sections: &[Box<str>],
) -> String {
    let mut which = String::new();
    for (i, s) in sections.iter().enumerate() {
        if i > 0 {
            which.push_str(" OR ");
        }
        let _ = write!(which, "\"section\" = {}", literal(s));
    }
    format!(
        "SELECT sum(\"hits\") AS \"hits\" FROM {measurement} WHERE {} AND ({which}) \
         GROUP BY time({}s), \"section\"",
        time_range(grid, upto),
        grid.res
    )
}

/// The series of statement `statement` in a `/query` answer.
fn series(json: &Value, statement: usize) -> impl Iterator<Item = &Value> {
    json["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |r| r["statement_id"].as_u64() == Some(statement as u64))
        .flat_map(|r| r["series"].as_array().into_iter().flatten())
}

fn partial(json: &Value) -> bool {
    json["results"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["partial"] == Value::Bool(true))
        || series(json, 0)
            .chain(series(json, 1))
            .any(|s| s["partial"] == Value::Bool(true))
}

/// The rows of a series as (column values by name, bucket index).
fn rows<'a>(
    s: &'a Value,
    grid: &'a Grid,
) -> impl Iterator<Item = Result<(usize, HashMap<&'a str, u64>), QueryError>> + 'a {
    let columns: Vec<&str> = s["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    s["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(move |row| {
            let row = row.as_array()?;
            let mut fields = HashMap::new();
            let mut at = None;
            for (name, v) in columns.iter().zip(row) {
                if *name == "time" {
                    at = Some(bucket_time(v));
                } else if let Some(n) = number(v) {
                    fields.insert(*name, n);
                }
            }
            match at? {
                Ok(t) => grid.index(t).map(|i| Ok((i, fields))),
                Err(e) => Some(Err(e)),
            }
        })
}

/// A count InfluxDB returned (an integer, or a float from a sum).
fn number(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f.round() as u64))
}

/// A bucket's time: RFC 3339 (the default) or epoch seconds.
fn bucket_time(v: &Value) -> Result<i64, QueryError> {
    if let Some(n) = v.as_i64() {
        return Ok(n);
    }
    let text = v
        .as_str()
        .ok_or_else(|| QueryError::Json(format!("a row's time is {v}")))?;
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| QueryError::Json(format!("a row's time `{text}`: {e}")))
}

pub(crate) fn parse_totals(json: &Value, grid: &Grid) -> Result<RollupTotals, QueryError> {
    let mut sums = Sums::new(grid.len, &[]);
    for s in series(json, 0) {
        for row in rows(s, grid) {
            let (i, fields) = row?;
            let get = |name: &str| fields.get(name).copied().unwrap_or(0);
            sums.total[i] += get("hits");
            sums.bytes[i] += get("bytes");
            for (class, name) in sums.status.iter_mut().zip(["s2", "s3", "s4", "s5"]) {
                class[i] += get(name);
            }
        }
    }
    let mut sections = HashMap::new();
    for s in series(json, 1) {
        let Some(name) = s["tags"]["section"].as_str() else {
            continue;
        };
        let hits: u64 = s["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|row| number(row.get(1)?))
            .sum();
        if hits > 0 {
            sections.insert(name.into(), hits);
        }
    }
    Ok(RollupTotals {
        sums,
        sections,
        partial: partial(json),
    })
}

pub(crate) fn parse_sections(
    json: &Value,
    grid: &Grid,
) -> Result<(SectionBuckets, bool), QueryError> {
    let mut out = SectionBuckets::new();
    for s in series(json, 0) {
        let Some(name) = s["tags"]["section"].as_str() else {
            continue;
        };
        let v = out.entry(name.into()).or_insert_with(|| vec![0; grid.len]);
        for row in rows(s, grid) {
            let (i, fields) = row?;
            v[i] += fields.get("hits").copied().unwrap_or(0);
        }
    }
    Ok((out, partial(json)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queries_name_the_rollup_measurement_and_the_bucket_range() {
        let grid = Grid::new(21600, 10, 100_007);
        let m = "\"logmon\".\"logmon_rollups\".\"http_traffic\"";
        let q = totals_query(m, &grid, 3);
        assert_eq!(
            q,
            "SELECT sum(\"hits\") AS \"hits\", sum(\"bytes\") AS \"bytes\", sum(\"status_2xx\") AS \"s2\", \
             sum(\"status_3xx\") AS \"s3\", sum(\"status_4xx\") AS \"s4\", sum(\"status_5xx\") AS \"s5\" \
             FROM \"logmon\".\"logmon_rollups\".\"http_traffic\" WHERE time >= 78410s AND time < 78440s \
             GROUP BY time(10s); SELECT sum(\"hits\") AS \"hits\" FROM \"logmon\".\"logmon_rollups\".\"http_traffic\" \
             WHERE time >= 78410s AND time < 78440s GROUP BY \"section\""
        );
        let q = sections_query(m, &grid, grid.len, &["/a".into(), "/it's".into()]);
        assert!(
            q.ends_with(
                "WHERE time >= 78410s AND time < 100008s AND (\"section\" = '/a' OR \"section\" = '/it\\'s') \
                 GROUP BY time(10s), \"section\""
            ),
            "{q}"
        );
        assert_eq!(ident("we\"ird"), "\"we\\\"ird\"");
    }

    #[test]
    fn answers_fill_the_buckets_they_name() {
        let grid = Grid::new(21600, 10, 100_007);
        let at = |t: i64| {
            time::OffsetDateTime::from_unix_timestamp(t)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        let answer = json!({"results": [
            {"statement_id": 0, "series": [{"name": "http_traffic",
                "columns": ["time", "hits", "bytes", "s2", "s3", "s4", "s5"],
                "values": [
                    [at(78410), 30, 3000, 20, 5, 4, 1],
                    [at(78420), null, null, null, null, null, null],
                    [at(78430), 7, 70, 7, 0, 0, 0],
                    [at(1), 99, 0, 0, 0, 0, 0]
                ]}]},
            {"statement_id": 1, "series": [
                {"name": "http_traffic", "tags": {"section": "/a"}, "columns": ["time", "hits"], "values": [["1970-01-01T00:00:00Z", 25]]},
                {"name": "http_traffic", "tags": {"section": "/b"}, "columns": ["time", "hits"], "values": [["1970-01-01T00:00:00Z", 12]]}
            ]}
        ]});
        let totals = parse_totals(&answer, &grid).unwrap();
        assert_eq!(&totals.sums.total[..4], &[30, 0, 7, 0]);
        assert_eq!(&totals.sums.bytes[..3], &[3000, 0, 70]);
        assert_eq!(totals.sums.status[0][0], 20);
        assert_eq!(totals.sums.status[3][0], 1);
        assert_eq!(
            totals.sums.total.iter().sum::<u64>(),
            37,
            "a row off the grid is left out"
        );
        assert_eq!(totals.sections.len(), 2);
        assert_eq!(totals.sections["/a"], 25);
        assert!(!totals.partial);

        let answer = json!({"results": [{"statement_id": 0, "series": [
            {"name": "http_traffic", "tags": {"section": "/a"}, "columns": ["time", "hits"],
             "values": [[at(78410), 20], [at(78430), 5]]}
        ], "partial": true}]});
        let (sections, partial) = parse_sections(&answer, &grid).unwrap();
        assert_eq!(&sections["/a"][..3], &[20, 0, 5]);
        assert!(partial);

        let bad = json!({"results": [{"statement_id": 0, "series": [
            {"columns": ["time", "hits"], "values": [["yesterday", 1]], "tags": {"section": "/a"}}
        ]}]});
        assert!(matches!(
            parse_sections(&bad, &grid),
            Err(QueryError::Json(_))
        ));
    }
}
