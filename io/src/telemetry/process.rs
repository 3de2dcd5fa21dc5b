//! The runtime gauges (`runtime.*`) and Prometheus' `process_*` collector, read from `/proc`.

use std::fmt::Write as _;

use super::registry::{global, now_ns};
use super::render::go_float_g;
use super::{set_gauge, CLOCK_TICKS_PER_SECOND, RUNTIME_POLL_INTERVAL};

/// The `runtime.*` gauges every second (go-metrics' `collectStats`), and expiry of idle series.
pub(super) async fn run_runtime_gauges() {
    let mut tick = tokio::time::interval(RUNTIME_POLL_INTERVAL);
    loop {
        tick.tick().await;
        emit_runtime_gauges();
        global().sweep(now_ns());
    }
}

fn emit_runtime_gauges() {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        set_gauge("runtime.num_goroutines", &[], handle.metrics().num_alive_tasks() as f32);
    }
    if let Some(memory) = ProcStatus::read() {
        set_gauge("runtime.alloc_bytes", &[], memory.rss_anon_bytes as f32);
        set_gauge("runtime.sys_bytes", &[], memory.rss_bytes as f32);
    }
    set_gauge("runtime.total_gc_pause_ns", &[], 0.0);
    set_gauge("runtime.total_gc_runs", &[], 0.0);
}

/// What `/proc/self/status` says of the process's memory (Linux; `None` elsewhere).
struct ProcStatus {
    rss_bytes: u64,
    rss_anon_bytes: u64,
    virtual_bytes: u64,
}

impl ProcStatus {
    pub(super) fn read() -> Option<ProcStatus> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kib = |field: &str| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(field)?.strip_prefix(':')?;
                rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|kib| kib * 1024)
            })
        };
        Some(ProcStatus {
            rss_bytes: kib("VmRSS")?,
            rss_anon_bytes: kib("RssAnon")?,
            virtual_bytes: kib("VmSize")?,
        })
    }
}

/// client_golang's process collector, from `/proc` (Linux only; nothing elsewhere).
pub(super) fn process_metrics(text: &mut String) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
    // Fields after the command name (which may hold spaces), from field 3 (state) on.
    let Some(fields) = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>())
    else {
        return;
    };
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let mut write_family = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", go_float_g(value));
    };
    if let (Some(user), Some(system)) = (field(14), field(15)) {
        write_family(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (user + system) as f64 / CLOCK_TICKS_PER_SECOND,
        );
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        let max_fds = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .and_then(|line| line.split_whitespace().nth(3))
            .and_then(|soft| soft.parse::<f64>().ok());
        if let Some(max_fds) = max_fds {
            write_family("process_max_fds", "gauge", "Maximum number of open file descriptors.", max_fds);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        write_family("process_open_fds", "gauge", "Number of open file descriptors.", entries.count() as f64);
    }
    if let Some(memory) = ProcStatus::read() {
        write_family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            memory.rss_bytes as f64,
        );
    }
    let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|stat| {
        stat.lines().find_map(|line| line.strip_prefix("btime ")?.trim().parse::<u64>().ok())
    });
    if let (Some(boot_time), Some(start_ticks)) = (boot_time, field(22)) {
        let start = boot_time as f64 + start_ticks as f64 / CLOCK_TICKS_PER_SECOND;
        write_family(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            start,
        );
    }
    if let Some(memory) = ProcStatus::read() {
        write_family(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            memory.virtual_bytes as f64,
        );
    }
}
