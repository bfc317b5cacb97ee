//! Alert transitions after the rules: the durable outbox every delivery
//! reads from ([`outbox`]), and the notifiers — webhook, Slack,
//! Alertmanager ([`notify`]).

pub mod notify;
pub mod outbox;
