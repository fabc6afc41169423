//! Who may hold a connection on the RPC socket: at most `server.max_connections` at once,
//! and at most `server.max_connections_per_uid` per caller uid (from `SO_PEERCRED`). Over a
//! cap, a new connection is closed at once and counted in
//! `tether_rpc_connections_refused_total{reason}` (docs/rpc.md, "HTTP connections"). Both
//! caps stay below the process's open-files limit, so a flood of local callers cannot make
//! tether run out of descriptors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::IntGauge;

/// Descriptors kept out of the connection cap: SSH connections, the admin port, logs.
const RESERVED_FDS: u64 = 256;

/// The caps and the connections open now.
pub struct Admission {
    max_total: usize,
    max_per_uid: usize,
    open: Mutex<Open>,
    gauge: IntGauge,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_uid: HashMap<u32, usize>,
}

/// Which cap a refused connection hit: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerUid,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Total => "total",
            Refused::PerUid => "per_uid",
        }
    }
}

/// One admitted connection; its place is given back when it is dropped.
pub struct Admitted {
    admission: Arc<Admission>,
    uid: u32,
}

impl Admission {
    /// `max_total` is lowered below the open-files limit `fd_limit` when it does not fit.
    pub fn new(
        max_total: usize,
        max_per_uid: usize,
        fd_limit: Option<u64>,
        gauge: IntGauge,
    ) -> Arc<Admission> {
        let fits = fd_limit.map_or(usize::MAX, |limit| {
            usize::try_from(limit.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX)
        });
        if max_total > fits {
            tracing::warn!(
                configured = max_total,
                used = fits,
                open_files_limit = fd_limit,
                "server.max_connections does not fit the open-files limit; using less \
                 (raise the hard limit, e.g. `ulimit -Hn` or the container's nofile)"
            );
        }
        Arc::new(Admission {
            max_total: max_total.min(fits),
            max_per_uid,
            open: Mutex::new(Open::default()),
            gauge,
        })
    }

    /// A place for a connection of `uid`, or the cap that is full.
    pub fn admit(self: &Arc<Self>, uid: u32) -> Result<Admitted, Refused> {
        let mut open = self.open.lock().expect("poisoned");
        if open.total >= self.max_total {
            return Err(Refused::Total);
        }
        let of_uid = open.by_uid.entry(uid).or_default();
        if *of_uid >= self.max_per_uid {
            return Err(Refused::PerUid);
        }
        *of_uid += 1;
        open.total += 1;
        self.gauge.set(open.total as i64);
        Ok(Admitted {
            admission: self.clone(),
            uid,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock().expect("poisoned");
        open.total -= 1;
        if let Some(n) = open.by_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                open.by_uid.remove(&self.uid);
            }
        }
        self.admission.gauge.set(open.total as i64);
    }
}

/// The soft open-files limit of this process, if it can be read.
pub fn open_files_limit() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge() -> IntGauge {
        IntGauge::new("open", "open connections").unwrap()
    }

    #[test]
    fn each_uid_and_all_together_are_capped_and_places_come_back() {
        let admission = Admission::new(3, 2, None, gauge());
        let a1 = admission.admit(1).unwrap();
        let _a2 = admission.admit(1).unwrap();
        assert_eq!(admission.admit(1).err(), Some(Refused::PerUid));
        let _b1 = admission.admit(2).unwrap();
        assert_eq!(admission.admit(3).err(), Some(Refused::Total));
        assert_eq!(admission.gauge.get(), 3);
        drop(a1);
        assert!(
            admission.admit(1).is_ok(),
            "a closed connection gives its place back"
        );
    }

    #[test]
    fn the_total_stays_below_the_open_files_limit() {
        let admission = Admission::new(100_000, 100_000, Some(1024), gauge());
        assert_eq!(admission.max_total, 1024 - RESERVED_FDS as usize);
    }
}
