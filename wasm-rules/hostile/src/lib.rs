//! `hostile`: a rule that misbehaves on purpose, for the host's sandbox tests.
//! It is built with the others but never shipped in the collector binary.
//!
//! `mode`: `spin` loops forever, `hog` allocates without bound, `trap` panics,
//! `flood` returns an enormous result, `calm` behaves. `after`: the number of
//! good evaluations before it misbehaves.

use logmon_rule::{Alert, Params, Rule, RuleInfo, Second};

#[derive(Debug, Default)]
pub struct Hostile {
    mode: String,
    after: u64,
    seen: u64,
}

impl Rule for Hostile {
    fn describe() -> RuleInfo {
        RuleInfo {
            name: "hostile".into(),
            description: "Misbehaves on purpose (sandbox tests)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            params: vec![
                logmon_rule::param("mode", "spin | hog | trap | flood | calm", "calm"),
                logmon_rule::param("after", "good evaluations before misbehaving", 0),
            ],
        }
    }

    fn configure(&mut self, params: &Params) -> Result<(), String> {
        self.mode = params.get("mode", "calm".to_owned())?;
        self.after = params.get("after", 0)?;
        Ok(())
    }

    fn evaluate(&mut self, second: &Second) -> Vec<Alert> {
        self.seen += 1;
        if self.seen <= self.after {
            return Vec::new();
        }
        match self.mode.as_str() {
            "spin" => {
                let mut x = second.hits;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
                }
            }
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("hostile rule trapping at second {}", second.time),
            // Fits in the sandbox's memory, but is far more than a rule may
            // return in one evaluation.
            "flood" => (0..50_000)
                .map(|i| Alert::firing(format!("key-{i}"), f64::from(i), "flood"))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn save(&self) -> Vec<u8> {
        self.seen.to_le_bytes().to_vec()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = state.try_into().map_err(|_| "bad state".to_owned())?;
        self.seen = u64::from_le_bytes(bytes);
        Ok(())
    }
}

logmon_rule::export_rule!(Hostile);
