//! What language a rule component was written in, told from the marks its
//! toolchain leaves: the kind only chooses defaults (the memory cap), so a
//! component that hides its origin runs as [`ComponentKind::Other`], with the
//! compiled languages' cap.

use memchr::memmem;

/// The language behind a component, as far as its bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// wit-bindgen's Rust bindings (the `logmon-rule` SDK).
    Rust,
    /// componentize-py: CPython (`libpython3.*.so`) linked into the component.
    Python,
    /// componentize-js: SpiderMonkey (StarlingMonkey); its producers
    /// section names `ComponentizeJS`.
    #[serde(rename = "js")]
    JavaScript,
    Other,
}

impl ComponentKind {
    /// Read the marks: componentize-js and componentize-py components also
    /// carry Rust code (their runtimes, the WASI adapter), so they are looked
    /// for first.
    pub fn detect(bytes: &[u8]) -> ComponentKind {
        let has = |needle: &[u8]| memmem::find(bytes, needle).is_some();
        if has(b"ComponentizeJS") {
            ComponentKind::JavaScript
        } else if has(b"libpython3.") && has(b"componentize_py") {
            ComponentKind::Python
        } else if has(b"wit-bindgen-rust") {
            ComponentKind::Rust
        } else {
            ComponentKind::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Rust => "rust",
            ComponentKind::Python => "python",
            ComponentKind::JavaScript => "js",
            ComponentKind::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_rules_are_rust() {
        for (name, bytes) in crate::rules::shipped::SHIPPED {
            assert_eq!(ComponentKind::detect(bytes), ComponentKind::Rust, "{name}");
        }
        assert_eq!(ComponentKind::detect(b"\0asm"), ComponentKind::Other);
    }
}
