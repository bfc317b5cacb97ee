//! The SDK for logmon alert rules.
//!
//! A rule is a type implementing [`Rule`]; [`export_rule!`] turns it into the
//! exports of the `logmon:rules/rule` WebAssembly component world
//! (`wasm-rules/wit/rule.wit`). The host calls the rule once per closed second
//! of event time, in order, and the rule answers with every alert firing after
//! that second; the host derives fired/resolved transitions from consecutive
//! answers. Rules are plain Rust, so their logic is unit-tested natively.
//!
//! ```ignore
//! #[derive(Default)]
//! struct Quiet;
//! impl logmon_rule::Rule for Quiet { /* … */ }
//! logmon_rule::export_rule!(Quiet);
//! ```

mod keyed;
mod params;
mod state;
mod window;

pub use keyed::KeyedWindow;
pub use params::Params;
pub use state::{StateReader, StateWriter};
pub use window::Window;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "rule",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "logmon_rule::bindings",
        additional_derives: [PartialEq],
    });
}

pub use bindings::logmon::rules::types::{
    Alert, ClientCount, MethodCount, Param, RuleInfo, Second, SectionStats, StatusClasses,
    StatusCount,
};

/// An alert rule. One value lives per rule instance, in its own sandbox.
pub trait Rule: Default + 'static {
    /// Name, description, version and parameters (with defaults as text).
    fn describe() -> RuleInfo;
    /// Apply parameters; absent ones keep their defaults. Unknown names are
    /// already refused by [`Params::check`] when the rule calls it.
    fn configure(&mut self, params: &Params) -> Result<(), String>;
    /// Evaluate one closed second; return every alert firing after it.
    fn evaluate(&mut self, second: &Second) -> Vec<Alert>;
    /// Serialize the state needed to continue after a restart.
    fn save(&self) -> Vec<u8>;
    /// Restore what [`Rule::save`] wrote; an error makes the host start fresh.
    fn restore(&mut self, state: &[u8]) -> Result<(), String>;
}

/// Build a [`Param`] description.
pub fn param(name: &str, description: &str, default_value: impl ToString) -> Param {
    Param {
        name: name.to_owned(),
        description: description.to_owned(),
        default_value: default_value.to_string(),
    }
}

impl StatusClasses {
    /// All zero.
    pub const ZERO: StatusClasses = StatusClasses {
        informational: 0,
        success: 0,
        redirection: 0,
        client_error: 0,
        server_error: 0,
        other: 0,
    };
}

impl Second {
    /// A second with no traffic, as the host delivers during silence.
    pub fn empty(time: i64) -> Second {
        Second {
            time,
            hits: 0,
            bytes: 0,
            statuses: StatusClasses::ZERO,
            sections: Vec::new(),
            status_codes: Vec::new(),
            methods: Vec::new(),
            top_clients: Vec::new(),
        }
    }
}

/// Format unix seconds as `2019-02-07T21:11:00Z` without a date library.
pub fn utc(time: i64) -> String {
    let days = time.div_euclid(86_400);
    let secs = time.rem_euclid(86_400);
    // Civil-from-days (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Export a [`Rule`] implementation as this component's rule.
#[macro_export]
macro_rules! export_rule {
    ($rule:ty) => {
        const _: () = {
            use ::std::cell::RefCell;
            use $crate::Rule as _;

            ::std::thread_local! {
                static RULE: RefCell<$rule> = RefCell::new(<$rule>::default());
            }

            struct Export;

            impl $crate::bindings::Guest for Export {
                fn describe() -> $crate::RuleInfo {
                    <$rule>::describe()
                }
                fn configure(params: Vec<(String, String)>) -> Result<(), String> {
                    let params = $crate::Params::new(params);
                    params.check(&<$rule>::describe())?;
                    RULE.with_borrow_mut(|rule| rule.configure(&params))
                }
                fn evaluate(second: $crate::Second) -> Vec<$crate::Alert> {
                    RULE.with_borrow_mut(|rule| rule.evaluate(&second))
                }
                fn save() -> Vec<u8> {
                    RULE.with_borrow(|rule| rule.save())
                }
                fn restore(state: Vec<u8>) -> Result<(), String> {
                    RULE.with_borrow_mut(|rule| rule.restore(&state))
                }
            }

            $crate::bindings::export_bindings!(Export);
        };
    };
}

/// Format unix seconds for alert messages: `2019-02-07 21:11:00 UTC (1549573860)`.
pub fn when(time: i64) -> String {
    let iso = utc(time);
    format!("{} {} UTC ({time})", &iso[..10], &iso[11..19])
}

/// A measured value as messages print it: at most two decimals, trailing
/// zeros dropped (`10.05`, `9.9`, `3`).
pub fn decimal(value: f64) -> String {
    let s = format!("{value:.2}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

impl Alert {
    pub fn firing(key: impl Into<String>, value: f64, message: impl Into<String>) -> Alert {
        Alert {
            key: key.into(),
            firing: true,
            value,
            message: message.into(),
        }
    }
    pub fn resolved(key: impl Into<String>, value: f64, message: impl Into<String>) -> Alert {
        Alert {
            key: key.into(),
            firing: false,
            value,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_549_573_860), "2019-02-07T21:11:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn decimal_drops_trailing_zeros() {
        assert_eq!(decimal(10.05), "10.05");
        assert_eq!(decimal(9.9), "9.9");
        assert_eq!(decimal(3.0), "3");
        assert_eq!(decimal(0.004), "0");
        assert_eq!(decimal(f64::INFINITY), "inf");
    }
}
