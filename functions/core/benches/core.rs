//! Handler CPU excluding I/O: earning-rule evaluation, tier evaluation, request parsing and
//! validation, and the whole accrue path on the in-memory store. `cargo bench -p loyalty_core --bench core`;
//! BENCHMARKS.md quotes the results (via `loyalty-bench`, which reads target/criterion).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use loyalty_core::clock::SystemClock;
use loyalty_core::commands::{AccrualRequest, EnrolRequest};
use loyalty_core::ids::{Category, IdempotencyKey, MemberId, Sku};
use loyalty_core::memory::MemoryStore;
use loyalty_core::program::{evaluate_action, evaluate_purchase, ProgramDocument, PurchaseLine};
use loyalty_core::service::AppConfig;
use loyalty_core::tiers::{evaluate, QualifyingDays, TierState};
use loyalty_core::App;
use serde_json::{json, Value};

const PROGRAM: &str = include_str!("../../../infra/program.default.json");
const CATEGORIES: [&str; 5] = ["coffee", "bakery", "merch", "grocery", "gift_card"];

fn program() -> ProgramDocument {
    ProgramDocument::parse(PROGRAM.as_bytes()).expect("default program parses")
}

fn order_json(order: &str, items: usize) -> Value {
    let items: Vec<Value> = (0..items)
        .map(|i| {
            json!({
                "sku": format!("SKU-{i}"),
                "category": CATEGORIES[i % CATEGORIES.len()],
                "amount": { "minor": 199 + 37 * i as i64, "currency": "USD" },
                "quantity": 1 + (i as u32 % 3),
            })
        })
        .collect();
    json!({
        "kind": "purchase",
        "order_id": order,
        "amount": { "minor": 100_000, "currency": "USD" },
        "items": items,
    })
}

fn earning(c: &mut Criterion) {
    let document = program();
    let lines: Vec<PurchaseLine> = (0..20)
        .map(|i| PurchaseLine {
            sku: Sku::parse(&format!("SKU-{i}")).expect("sku"),
            category: Category::parse(CATEGORIES[i % CATEGORIES.len()]).expect("category"),
            line_minor: (199 + 37 * i as i64) * (1 + (i as i64 % 3)),
        })
        .collect();
    let mut group = c.benchmark_group("earning");
    group.bench_function("evaluate_purchase_20_items", |b| {
        b.iter(|| {
            evaluate_purchase(
                black_box(&document.earning),
                document.currency,
                black_box(100_000),
                black_box(&lines),
            )
            .expect("evaluates")
        })
    });
    let rule = document
        .actions
        .iter()
        .find(|a| a.cap.is_some())
        .expect("a capped action")
        .clone();
    let counts = loyalty_core::program::ActionCounts::new();
    let at = Utc.with_ymd_and_hms(2025, 3, 14, 12, 0, 0).unwrap();
    group.bench_function("evaluate_action", |b| {
        b.iter(|| evaluate_action(black_box(&rule), black_box(&counts), at).expect("evaluates"))
    });
    group.finish();
}

/// `tiers::evaluate` for a member with a full year of daily qualifying activity (366 days in
/// the window map, the most a member keeps within the rolling window), as the nightly review and
/// the accrual's instant upgrade run it.
fn tiers(c: &mut Criterion) {
    let document = program();
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap();
    let today = now.date_naive();
    let mut days = QualifyingDays::new();
    for back in 0..400 {
        days.insert(today - chrono::Days::new(back), 3 + (back as i64 % 7));
    }
    let enrolled = today - chrono::Days::new(800);
    let state = TierState::default();
    let mut group = c.benchmark_group("tiers");
    group.bench_function("evaluate_member_400_days", |b| {
        b.iter(|| {
            evaluate(
                black_box(&document.tiers),
                black_box("bronze"),
                black_box(&state),
                black_box(&days),
                enrolled,
                now,
                true,
            )
        })
    });
    group.finish();
}

fn parsing(c: &mut Criterion) {
    let text = order_json("pos-1001", 20).to_string();
    let mut group = c.benchmark_group("parse");
    group.bench_function("accrual_request_json", |b| {
        b.iter(|| {
            let value: Value = serde_json::from_str(black_box(&text)).expect("json");
            let request: AccrualRequest = serde_json::from_value(value).expect("request");
            request
        })
    });
    group.bench_function("program_document", |b| {
        b.iter(|| ProgramDocument::parse(black_box(PROGRAM.as_bytes())).expect("parses"))
    });
    group.finish();
}

/// A fresh app and member every 1,000 accruals (untimed), so the in-memory ledger stays small
/// however many iterations criterion asks for.
fn accrue_in_memory(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let member = MemberId::parse("bench-member").expect("id");
    let fresh_app = || {
        let app = App::new(
            MemoryStore::new(),
            Arc::new(SystemClock),
            AppConfig::default(),
        );
        runtime.block_on(async {
            app.enrol(EnrolRequest {
                member_id: Some(member.clone()),
                email: None,
                name: None,
                referral_code: None,
            })
            .await
            .expect("enrolled");
        });
        app
    };
    let mut group = c.benchmark_group("accrue");
    group.bench_function("memory_store", |b| {
        b.iter_custom(|iters| {
            let mut app = fresh_app();
            let mut total = Duration::ZERO;
            for i in 0..iters {
                if i > 0 && i % 1000 == 0 {
                    app = fresh_app();
                }
                let order = format!("o-{i}");
                let body = order_json(&order, 2);
                let key = IdempotencyKey::parse(&order).ok();
                let started = Instant::now();
                let outcome = runtime
                    .block_on(app.accrue(&member, key, &body, false))
                    .expect("accrued");
                total += started.elapsed();
                black_box(outcome);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, earning, tiers, parsing, accrue_in_memory);
criterion_main!(benches);
