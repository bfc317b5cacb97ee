//! The end a person or a service manager asks for: SIGINT (Ctrl-C) or
//! SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Resolves at the first SIGINT or SIGTERM (SIGINT only where there is no
/// SIGTERM).
pub async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// For synchronous programs: a flag that turns true at the first SIGINT or
/// SIGTERM, watched by a thread of its own. From then on those signals no
/// longer kill the process; the program is expected to look at the flag
/// often and end cleanly.
pub fn flag() -> std::io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The handlers are installed before this returns, so a signal that
    // comes right after is not missed.
    let (ready, installed) = std::sync::mpsc::channel();
    let set = Arc::clone(&flag);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                let wait = terminated();
                tokio::pin!(wait);
                // Poll once so both handlers are registered.
                tokio::select! {
                    biased;
                    () = &mut wait => {}
                    () = std::future::ready(()) => {}
                }
                let _ = ready.send(());
                wait.await;
                set.store(true, Ordering::SeqCst);
            });
        })?;
    let _ = installed.recv();
    Ok(flag)
}
