//! Whether anyone still wants a request sent. A call waits for a channel and opens it while
//! watching its [`Interest`]: once its caller has left, nothing is sent (docs/rpc.md, "When
//! the caller hangs up"). After the exec request has left, only an operator's cancel
//! ([`Interest::cancelled_by`]) still matters: it closes the channel.

use std::future::Future;
use std::pin::Pin;

use tokio_util::sync::CancellationToken;

/// A future that resolves when the command's answer has nobody to go to; once it has, the
/// interest stays lost.
pub struct Interest {
    lost: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// An operator's cancel (DELETE /v1/calls): loses the interest before the send, and
    /// cuts the command after it.
    cancel: CancellationToken,
}

impl Interest {
    /// Interest that is lost when `gone` resolves (a caller's channel closing).
    pub fn until(gone: impl Future<Output = ()> + Send + 'static) -> Interest {
        Interest {
            lost: Some(Box::pin(gone)),
            cancel: CancellationToken::new(),
        }
    }

    /// The same interest, also lost (and the command cut once sent) when `cancel` fires.
    pub fn cancelled_by(self, cancel: CancellationToken) -> Interest {
        Interest { cancel, ..self }
    }

    /// Interest that is never lost: a probe's, or a cached verb's shared run, which callers
    /// may still join.
    pub fn lasting() -> Interest {
        Interest::until(std::future::pending())
    }

    /// Resolves once the interest is lost.
    pub async fn lost(&mut self) {
        let cancel = self.cancel.clone();
        if let Some(gone) = &mut self.lost {
            tokio::select! {
                _ = gone.as_mut() => {}
                _ = cancel.cancelled() => {}
            }
            self.lost = None;
        }
    }

    /// Resolves once an operator has cancelled the call.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + 'static {
        self.cancel.clone().cancelled_owned()
    }

    /// Whether the interest is lost by now, without waiting.
    pub async fn is_lost(&mut self) -> bool {
        tokio::select! {
            biased;
            _ = self.lost() => true,
            _ = std::future::ready(()) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn interest_is_lost_when_the_caller_goes_and_stays_lost() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut interest = Interest::until(async move {
            let _ = rx.await;
        });
        assert!(!interest.is_lost().await);
        drop(tx);
        interest.lost().await;
        assert!(interest.is_lost().await, "lost once, lost for good");
        assert!(!Interest::lasting().is_lost().await);
    }

    #[tokio::test]
    async fn an_operators_cancel_loses_the_interest_too() {
        let cancel = CancellationToken::new();
        let mut interest = Interest::lasting().cancelled_by(cancel.clone());
        assert!(!interest.is_lost().await);
        cancel.cancel();
        interest.lost().await;
        interest.cancelled().await;
    }
}
