//! Alert values in JSON (engine snapshots, the alert outbox): a rule may
//! answer NaN or an infinity (an error rate over no requests), which JSON
//! numbers cannot hold and `serde_json` would write as `null`, then refuse
//! to read back. Finite values stay numbers; the others are written as the
//! strings `"NaN"`, `"inf"` and `"-inf"`, and read back as themselves.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Repr<'a> {
    Number(f64),
    Text(std::borrow::Cow<'a, str>),
}

fn to_repr(v: f64) -> Repr<'static> {
    if v.is_finite() {
        Repr::Number(v)
    } else if v.is_nan() {
        Repr::Text("NaN".into())
    } else if v > 0.0 {
        Repr::Text("inf".into())
    } else {
        Repr::Text("-inf".into())
    }
}

fn from_repr<E: serde::de::Error>(r: Repr<'_>) -> Result<f64, E> {
    match r {
        Repr::Number(v) => Ok(v),
        Repr::Text(t) => match t.as_ref() {
            "NaN" => Ok(f64::NAN),
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            other => Err(E::custom(format!(
                "an alert value is a number, \"NaN\", \"inf\" or \"-inf\", not {other:?}"
            ))),
        },
    }
}

pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    to_repr(*v).serialize(s)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    from_repr(Repr::deserialize(d)?)
}

/// The same for a key's recovery while `keep_firing_for` runs: `(second,
/// value, message)`.
pub mod quiet {
    use super::{Repr, from_repr, to_repr};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[allow(clippy::ref_option)] // serde's `with` hands the field by reference
    pub fn serialize<S: Serializer>(
        v: &Option<(i64, f64, String)>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.as_ref()
            .map(|(at, value, message)| (*at, to_repr(*value), message))
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<(i64, f64, String)>, D::Error> {
        match Option::<(i64, Repr<'de>, String)>::deserialize(d)? {
            None => Ok(None),
            Some((at, value, message)) => Ok(Some((at, from_repr(value)?, message))),
        }
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct V(#[serde(with = "super")] f64);

    #[test]
    fn every_value_reads_back_as_itself() {
        for v in [
            0.0,
            -1.5,
            1e300,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let text = serde_json::to_string(&V(v)).unwrap();
            assert_eq!(serde_json::from_str::<V>(&text).unwrap().0, v, "{text}");
        }
        let text = serde_json::to_string(&V(f64::NAN)).unwrap();
        assert_eq!(text, "\"NaN\"");
        assert!(serde_json::from_str::<V>(&text).unwrap().0.is_nan());
        assert_eq!(serde_json::to_string(&V(2.5)).unwrap(), "2.5");
        let wrong = serde_json::from_str::<V>("\"nan\"")
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("not \"nan\""), "{wrong}");
    }
}
