//! A progress bar for long imports and exports, on a terminal only.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use l3_store::{Progress, Store};

/// Shows `total` bytes of work on stderr while it lasts; dropped, it clears itself.
pub struct Bar {
    bar: Option<ProgressBar>,
    store: Store,
}

impl Bar {
    /// A bar for work of `total` bytes; none when stderr is not a terminal or the work is
    /// small enough to finish before a bar would help.
    pub fn new(store: &Store, total: u64, verb: &'static str) -> Bar {
        // Known limitation: only imports and exports of 64 MiB or more show a bar.
        let wanted = std::io::stderr().is_terminal() && total >= 64 << 20;
        if !wanted {
            return Bar {
                bar: None,
                store: store.clone(),
            };
        }
        let bar = ProgressBar::new(total);
        let plain = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let template = if plain {
            "{msg} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})"
        } else {
            "{msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})"
        };
        bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
        bar.set_message(verb);
        bar.enable_steady_tick(Duration::from_millis(200));
        let written = Arc::new(AtomicU64::new(0));
        let known = Arc::new(AtomicU64::new(0));
        let b = bar.clone();
        store.set_progress(Some(Arc::new(move |event| {
            match event {
                Progress::Hashed(n) | Progress::Read(n) => return b.inc(n),
                Progress::Known(n) => known.fetch_add(n, Ordering::Relaxed),
                Progress::Written(n) => written.fetch_add(n, Ordering::Relaxed),
            };
            b.set_message(format!(
                "{verb}: {} new, dedup saved {}",
                indicatif::HumanBytes(written.load(Ordering::Relaxed)),
                indicatif::HumanBytes(known.load(Ordering::Relaxed))
            ));
        })));
        Bar {
            bar: Some(bar),
            store: store.clone(),
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.store.set_progress(None);
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
