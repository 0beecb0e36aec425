//! Number and text formats shared by the sections, and what the run knows about its machine
//! and the criterion results.

use serde_json::Value;

use crate::ops;
use crate::process::Window;

/// The criterion benches in `functions/core/benches/core.rs`, by their ids.
pub(super) const CRITERION: [(&str, &str); 6] = [
    (
        "earning/evaluate_purchase_20_items",
        "earning rules: `evaluate_purchase`, 20-item order",
    ),
    (
        "earning/evaluate_action",
        "earning rules: `evaluate_action` (capped action)",
    ),
    (
        "tiers/evaluate_member_400_days",
        "tier evaluation: `tiers::evaluate`, 400 days of qualifying activity",
    ),
    (
        "parse/accrual_request_json",
        "request parsing: JSON text → `AccrualRequest` (20 items)",
    ),
    (
        "parse/program_document",
        "`ProgramDocument::parse` of infra/program.default.json (parse + validate)",
    ),
    (
        "accrue/memory_store",
        "whole `App::accrue` path on `MemoryStore` (no I/O)",
    ),
];

pub(super) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cores} cores ({model}), {:.0} GiB RAM, Linux {} {}, {rustc}, bench built {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim(),
        std::env::consts::ARCH,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    )
}

pub(super) fn criterion_estimate(id: &str) -> Option<(f64, f64, f64)> {
    let path = ops::repo_root()
        .join("target/criterion")
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let mean = &v["mean"];
    Some((
        mean["point_estimate"].as_f64()?,
        mean["confidence_interval"]["lower_bound"].as_f64()?,
        mean["confidence_interval"]["upper_bound"].as_f64()?,
    ))
}

pub(super) fn ns(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} ms", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.2} µs", x / 1e3)
    } else {
        format!("{x:.0} ns")
    }
}

pub(super) fn size(bytes: Option<u64>) -> String {
    bytes.map_or("—".into(), |b| {
        format!("{:.2} MiB", b as f64 / 1024.0 / 1024.0)
    })
}

pub(super) fn dollars(x: f64) -> String {
    if x < 0.01 {
        format!("{x:.4}")
    } else {
        format!("{x:.3}")
    }
}

/// "measured → billed" write units.
pub(super) fn both(wru: f64) -> String {
    format!("{} → {}", fmt_units(wru), fmt_units(ops::billed_wru(wru)))
}

pub(super) fn fmt_units(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// Median and range of `xs`, as "median (min–max)".
pub(super) fn median_range(mut xs: Vec<f64>) -> Option<(f64, f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    Some((xs[xs.len() / 2], xs[0], xs[xs.len() - 1]))
}

pub(super) fn cpu_cell(w: Option<&Result<Window, String>>) -> String {
    match w {
        Some(Ok(w)) if w.unexpected == 0 => format!("{:.3}", w.cpu_ms_per_op()),
        Some(Ok(w)) => format!("{:.3} ({} failed)", w.cpu_ms_per_op(), w.unexpected),
        Some(Err(e)) => format!("— ({})", e.replace('|', "\\|")),
        None => "—".to_owned(),
    }
}
