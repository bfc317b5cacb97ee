//! A connection's place among the listener's `max_connections`, which a
//! long-lived stream can give back while it lives (see [`ConnectionSlot`]).

use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// A connection's place among the listener's `max_connections`: a permit
/// of [`run`]'s semaphore, taken before the connection is accepted.
///
/// A route that answers with a long-lived stream capped on its own (the
/// dashboard's event streams) takes the connection out of that budget with
/// [`ConnectionSlot::give_back`] while the stream lives, so open streams
/// never hold the places agents connect with: at most `max_connections`
/// other connections, plus at most one per open stream. When the connection's
/// last such stream ends and it is still open (HTTP/2, or HTTP/1 after a
/// stream ended early), it takes a place again, or closes gracefully if none
/// is free.
#[derive(Debug, Clone)]
pub struct ConnectionSlot(Arc<SlotShared>);

#[derive(Debug)]
struct SlotShared {
    limit: Arc<Semaphore>,
    state: Mutex<SlotState>,
    /// Cancelled when the connection must close: no place was free when
    /// its last stream ended.
    evicted: CancellationToken,
}

#[derive(Debug)]
struct SlotState {
    permit: Option<OwnedSemaphorePermit>,
    loans: usize,
}

/// While it lives, its connection does not count against
/// `max_connections`. See [`ConnectionSlot`].
#[derive(Debug)]
pub struct SlotLoan(Arc<SlotShared>);

impl ConnectionSlot {
    pub(super) fn new(limit: Arc<Semaphore>, permit: OwnedSemaphorePermit) -> ConnectionSlot {
        ConnectionSlot(Arc::new(SlotShared {
            limit,
            state: Mutex::new(SlotState {
                permit: Some(permit),
                loans: 0,
            }),
            evicted: CancellationToken::new(),
        }))
    }

    /// Gives the connection's place back to the listener until the loan
    /// drops.
    pub fn give_back(&self) -> SlotLoan {
        let released = {
            let mut state = self.0.lock();
            state.loans += 1;
            state.permit.take()
        };
        drop(released);
        SlotLoan(Arc::clone(&self.0))
    }

    /// Cancelled when the connection must close (see [`SlotLoan`]).
    pub(super) fn evicted(&self) -> CancellationToken {
        self.0.evicted.clone()
    }

    /// Whether the connection holds a place now.
    pub fn counted(&self) -> bool {
        self.0.lock().permit.is_some()
    }
}

impl SlotShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for SlotLoan {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.loans -= 1;
        if state.loans > 0 {
            return;
        }
        match Arc::clone(&self.0.limit).try_acquire_owned() {
            Ok(permit) => state.permit = Some(permit),
            Err(_) => self.0.evicted.cancel(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_gives_its_connections_place_back_while_it_lives() {
        let limit = Arc::new(Semaphore::new(1));
        let permit = Arc::clone(&limit).try_acquire_owned().unwrap();
        let slot = ConnectionSlot::new(Arc::clone(&limit), permit);
        assert_eq!(limit.available_permits(), 0);
        let first = slot.give_back();
        let second = slot.give_back();
        assert!(!slot.counted());
        assert_eq!(limit.available_permits(), 1);
        drop(first);
        assert_eq!(limit.available_permits(), 1, "a stream is still open");
        // The last stream ends: the connection takes a place again.
        drop(second);
        assert!(slot.counted());
        assert_eq!(limit.available_permits(), 0);
        assert!(!slot.0.evicted.is_cancelled());
        drop(slot);
        assert_eq!(limit.available_permits(), 1);
    }

    #[test]
    fn a_connection_whose_stream_ended_closes_when_no_place_is_free() {
        let limit = Arc::new(Semaphore::new(1));
        let permit = Arc::clone(&limit).try_acquire_owned().unwrap();
        let slot = ConnectionSlot::new(Arc::clone(&limit), permit);
        let loan = slot.give_back();
        // An agent connects in the place the stream gave back.
        let agent = Arc::clone(&limit).try_acquire_owned().unwrap();
        drop(loan);
        assert!(!slot.counted());
        assert!(slot.0.evicted.is_cancelled());
        drop(agent);
        assert_eq!(limit.available_permits(), 1);
    }
}
