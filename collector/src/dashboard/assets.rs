//! The dashboard's page, script, styles and chart library, embedded in the
//! binary by `collector/build.rs` (from `collector/web/`), with the headers
//! they are served with.

include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

impl Asset {
    /// A strong validator: a hash of the bytes, so a rebuilt binary with
    /// other files never passes for the old ones.
    pub fn etag(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in self.bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("\"{h:016x}-{}\"", self.bytes.len())
    }

    /// The page and our own files are revalidated on every load (cheap with
    /// the ETag), so a new collector serves its new page at once; the chart
    /// library changes only with the binary and is kept a day.
    pub fn cache_control(&self) -> &'static str {
        if self.name.starts_with("uPlot") {
            "public, max-age=86400"
        } else {
            "no-cache"
        }
    }
}

/// The embedded file called `name`.
pub fn find(name: &str) -> Option<Asset> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(name, content_type, bytes)| Asset {
            name,
            content_type,
            bytes,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_always_embedded() {
        let index = find("index.html").expect("build.rs always embeds a page");
        assert_eq!(index.content_type, "text/html; charset=utf-8");
        assert_eq!(index.cache_control(), "no-cache");
        assert!(index.etag().starts_with('"') && index.etag().ends_with('"'));
        assert!(find("nope.js").is_none());
    }
}
