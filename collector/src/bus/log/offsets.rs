//! Consumer offsets: one small JSON file, replaced atomically on every change
//! (write a temporary file, fsync it, rename it over the old one, fsync the
//! directory), so a crash leaves either the old map or the new one.

use super::BusError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self};
use std::path::Path;

pub(super) const FILE_NAME: &str = "consumers.json";
pub(super) const TEMP_NAME: &str = "consumers.json.tmp";
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OffsetsFile {
    version: u32,
    /// Consumer name → the next offset it will read.
    consumers: BTreeMap<String, u64>,
}

/// Reads the committed offsets; no file means no consumers yet.
pub(super) fn load(dir: &Path) -> Result<BTreeMap<String, u64>, BusError> {
    let path = dir.join(FILE_NAME);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(BusError::Io {
                action: "reading",
                path,
                source,
            });
        }
    };
    let file: OffsetsFile = serde_json::from_slice(&text).map_err(|e| BusError::Offsets {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if file.version != VERSION {
        return Err(BusError::Offsets {
            path,
            reason: format!("unsupported version {}", file.version),
        });
    }
    Ok(file.consumers)
}

pub(super) fn store(
    dir: &Path,
    consumers: BTreeMap<String, u64>,
    fsync: bool,
) -> Result<(), BusError> {
    let temp = dir.join(TEMP_NAME);
    let file = OffsetsFile {
        version: VERSION,
        consumers,
    };
    let text = serde_json::to_vec_pretty(&file).expect("a map of strings to integers serializes");
    let options = crate::durable::Options {
        fsync,
        pause_halfway: None,
    };
    crate::durable::replace(&dir.join(FILE_NAME), &temp, &text, options).map_err(|e| BusError::Io {
        action: e.action,
        path: e.path,
        source: e.source,
    })
}
