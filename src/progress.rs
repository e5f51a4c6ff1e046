//! Progress on stderr: phases update atomics, a ticker thread draws them with indicatif.
//!
//! Nothing is drawn unless stderr is a terminal and the run is not quiet, so cron output and
//! captured output stay clean. The phases never see indicatif: they only bump counters.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Ticker {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    /// A spinner whose message `update` recomputes ten times a second, or nothing at all when
    /// `enabled` is false.
    pub fn spinner(enabled: bool, update: impl Fn(&ProgressBar) + Send + 'static) -> Ticker {
        let bar = if enabled {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        Ticker::start(enabled, bar, update)
    }

    /// A bar towards `total`, whose position `update` sets.
    pub fn bar(
        enabled: bool,
        total: u64,
        update: impl Fn(&ProgressBar) + Send + 'static,
    ) -> Ticker {
        Ticker::towards(
            enabled,
            total,
            "{msg} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)",
            update,
        )
    }

    /// A bar of bytes towards `total`, with the rate and the time left.
    pub fn bytes(
        enabled: bool,
        total: u64,
        update: impl Fn(&ProgressBar) + Send + 'static,
    ) -> Ticker {
        let template = "verifying [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)";
        Ticker::towards(enabled, total, template, update)
    }

    fn towards(
        enabled: bool,
        total: u64,
        template: &str,
        update: impl Fn(&ProgressBar) + Send + 'static,
    ) -> Ticker {
        let bar = if enabled {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        Ticker::start(enabled, bar, update)
    }

    fn start(
        enabled: bool,
        bar: ProgressBar,
        update: impl Fn(&ProgressBar) + Send + 'static,
    ) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = enabled.then(|| {
            let (bar, stop) = (bar.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    update(&bar);
                    bar.tick();
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        });
        Ticker { bar, stop, handle }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.bar.finish_and_clear();
    }
}
