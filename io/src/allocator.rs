//! The agent's allocator, and the one call that makes it give freed memory back.
//!
//! mimalloc rather than glibc's malloc: with 10,000 checks glibc kept from 38 to 92 MiB
//! resident by chance, mimalloc a steady 37 MiB (`benches/checks_load.sh`). Its arenas are
//! committed on use, not when reserved (`.cargo/config.toml`): 10 MB less for an idle agent.
//!
//! mimalloc frees lazily. A block freed on another thread than the one that allocated it (a
//! connection's task that moved between tokio's workers) waits on its page until the owning
//! thread allocates from that page again, and an emptied page goes back to the system only on a
//! later arena operation. After 10,000 blocking queries closed, an agent left idle kept 120 MB
//! of the 125 MB they had taken, for as long as it stayed idle (`benches/watchers.sh`).
//! [`release_freed_memory`] runs on each runtime thread as it goes idle, at most once per
//! [`RELEASE_INTERVAL`], and collects that thread's freed pages.

use std::cell::Cell;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The least time between two collections on one thread. A collection walks the thread's
/// pages (microseconds for an idle agent's heap, about a millisecond for one holding 10,000
/// connections); an emptied page waits mimalloc's purge delay (1 s) before it is returned, so
/// collecting more often would return nothing sooner.
pub const RELEASE_INTERVAL: Duration = Duration::from_secs(1);

thread_local! {
    static LAST_RELEASE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Hands the pages this thread's frees have emptied back to the allocator, and the allocator's
/// emptied memory whose purge delay has passed back to the system; at most once per
/// [`RELEASE_INTERVAL`] per thread. For tokio's `on_thread_park`: a thread about to sleep has
/// nothing better to do.
pub fn release_freed_memory() {
    let now = Instant::now();
    let due = LAST_RELEASE.with(|last| match last.get() {
        Some(at) if now.duration_since(at) < RELEASE_INTERVAL => false,
        _ => {
            last.set(Some(now));
            true
        }
    });
    if due {
        collect();
    }
}

/// The one unsafe call in the binary: `mi_collect` takes a flag, reads and writes only the
/// allocator's own state for the calling thread, and has no precondition to break.
#[allow(unsafe_code)]
fn collect() {
    // SAFETY: see above; mimalloc is this process's global allocator, so its thread state is
    // initialised on every thread that has allocated, and mi_collect initialises it otherwise.
    unsafe { libmimalloc_sys::mi_collect(false) }
}
