//! The dashboard's page, script, styles and chart library, embedded in the
//! binary by `collector/build.rs` (from `collector/web/`), each with its
//! ETag, computed once.

use std::sync::OnceLock;

include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// A strong validator: a hash of the bytes and their length, so a
    /// rebuilt binary with other files never passes for the old ones.
    pub etag: &'static str,
}

/// A strong ETag for `bytes` (FNV-1a, 64 bits, and the length).
fn etag(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("\"{h:016x}-{}\"", bytes.len())
}

/// The ETags of [`ASSETS`], in their order, hashed at the first request.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| ASSETS.iter().map(|(_, _, bytes)| etag(bytes)).collect())
}

/// The embedded file called `name`.
pub fn find(name: &str) -> Option<Asset> {
    let at = ASSETS.iter().position(|(n, _, _)| *n == name)?;
    let (name, content_type, bytes) = ASSETS[at];
    Some(Asset {
        name,
        content_type,
        bytes,
        etag: &etags()[at],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_always_embedded() {
        let index = find("index.html").expect("build.rs always embeds a page");
        assert_eq!(index.content_type, "text/html; charset=utf-8");
        assert_eq!(index.etag, etag(index.bytes));
        assert!(find("nope.js").is_none());
    }

    #[test]
    fn etags_are_quoted_hashes_and_lengths() {
        assert_eq!(etag(b""), "\"cbf29ce484222325-0\"");
        assert_eq!(etag(b"a"), "\"af63dc4c8601ec8c-1\"");
        // Computed once: the same string each time.
        let index = find("index.html").unwrap();
        assert!(std::ptr::eq(index.etag, find("index.html").unwrap().etag));
    }
}
