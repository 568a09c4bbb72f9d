//! Fault injection for tests: make the next pack write, pack sync or metadata commit fail as
//! a full disk or a failing device would. Costs one atomic load when nothing is armed.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

/// Where a fault strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    None = 0,
    /// A chunk append writes half its bytes, then fails with "no space left on device".
    PackWriteHalf = 1,
    /// fsync of a pack fails.
    PackSync = 2,
    /// The metadata transaction fails before it commits.
    MetaCommit = 3,
}

static ARMED: AtomicU8 = AtomicU8::new(0);

/// Arms `fault` for the next time its point is reached (process-wide, fires once).
pub fn inject(fault: Fault) {
    ARMED.store(fault as u8, Ordering::SeqCst);
}

/// Disarms any pending fault.
pub fn clear() {
    ARMED.store(0, Ordering::SeqCst);
}

/// Whether `fault` is armed; disarms it if so.
pub(crate) fn fires(fault: Fault) -> bool {
    ARMED.load(Ordering::Relaxed) == fault as u8
        && ARMED
            .compare_exchange(fault as u8, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
}

pub(crate) fn storage_full() -> io::Error {
    io::Error::new(
        io::ErrorKind::StorageFull,
        "no space left on device (injected fault)",
    )
}

pub(crate) fn device_error() -> io::Error {
    io::Error::other("input/output error (injected fault)")
}
