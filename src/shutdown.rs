//! Signals: the first SIGTERM or SIGINT starts a drain; a second one exits at once.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Resolves on the first SIGTERM or SIGINT, and arms the second-signal exit.
pub async fn first_signal() {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    either(&mut term, &mut int).await;
    tracing::info!("signal received: draining (a second signal exits at once)");
    tokio::spawn(async move {
        either(&mut term, &mut int).await;
        eprintln!("tether: second signal: exiting now");
        std::process::exit(1);
    });
}

async fn either(term: &mut Signal, int: &mut Signal) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
