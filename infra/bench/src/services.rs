//! Operations that run from queues and schedules, not HTTP: tier evaluation of one member, a
//! campaign grant message, a referral decision and the billing of one subscription. They are
//! measured by calling the `App` services directly (the worker binaries only decode the SQS or
//! EventBridge event and call the same function), on the benchmark's table and meter, each with
//! its own `App` where the service needs a queue, a payment provider or a clock it can move.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use loyalty_core::campaigns::GrantMessage;
use loyalty_core::clock::ManualClock;
use loyalty_core::commands::EnrolRequest;
use loyalty_core::events::catalog::Change;
use loyalty_core::events::MemoryQueue;
use loyalty_core::ids::{IdempotencyKey, MemberId};
use loyalty_core::ports::MemberStore;
use loyalty_core::referrals::ReferralStatus;
use loyalty_core::service::{AppConfig, BillingResult};
use loyalty_core::subscriptions::payments::MemoryPayments;
use loyalty_core::App;
use loyalty_dynamo::{Capacity, DynamoStore};
use serde_json::json;

use crate::ops::{self, Bench, Op, Sequential};

/// Members in one measured campaign grant message: one `TransactWriteItems`.
/// One full grant transaction: the most members the worker writes at once.
pub const GRANT_MEMBERS: usize = loyalty_core::campaigns::GRANTS_PER_WRITE;

fn config() -> AppConfig {
    AppConfig {
        program_cache_ttl: Duration::from_secs(400 * 24 * 3600),
        ..AppConfig::default()
    }
}

fn id(raw: &str) -> MemberId {
    MemberId::parse(raw).expect("member id")
}

async fn enrol(app: &App<DynamoStore>, member: &str, email: Option<String>, code: Option<String>) {
    let request: EnrolRequest = serde_json::from_value(json!({
        "member_id": member,
        "email": email,
        "referral_code": code,
    }))
    .expect("enrol request");
    app.enrol(request).await.expect("enrolled");
}

async fn accrue(app: &App<DynamoStore>, member: &str, order: &str, minor: i64) {
    app.accrue(
        &id(member),
        IdempotencyKey::parse(order).ok(),
        &ops::plain_purchase(order, minor),
        false,
    )
    .await
    .expect("accrued");
}

/// Times one call and meters it; `ok` says whether it answered as expected.
struct Meter<'a> {
    bench: &'a Bench,
    out: Sequential,
    first: Option<Capacity>,
}

impl<'a> Meter<'a> {
    fn new(bench: &'a Bench) -> Self {
        Self {
            bench,
            out: Sequential {
                constant: true,
                ..Sequential::default()
            },
            first: None,
        }
    }

    async fn call<F, T>(&mut self, f: F, ok: impl Fn(&T) -> bool)
    where
        F: std::future::Future<Output = T>,
        T: std::fmt::Debug,
    {
        let before = self.bench.meter();
        let cpu_before = crate::process::cpu_time(std::process::id());
        let started = Instant::now();
        let result = f.await;
        let elapsed = started.elapsed();
        if let (Some(b), Some(a)) = (cpu_before, crate::process::cpu_time(std::process::id())) {
            self.out.cpu += a.saturating_sub(b);
        }
        let used = self.bench.meter() - before;
        self.out.latencies.push(elapsed);
        self.out.capacity = ops::add(self.out.capacity, used);
        match self.first {
            None => self.first = Some(used),
            Some(f) if f != used => self.out.constant = false,
            _ => {}
        }
        if !ok(&result) {
            self.out.unexpected += 1;
            self.out
                .first_unexpected
                .get_or_insert_with(|| format!("{result:?}"));
        }
    }
}

/// Measures `op` `samples` times (for a campaign grant: `samples` messages of `GRANT_MEMBERS` members).
pub async fn measure(bench: &Bench, op: Op, samples: usize) -> Sequential {
    match op {
        Op::TierEvaluation => tier_evaluation(bench, samples).await,
        Op::CampaignGrant => campaign_grant(bench, samples).await,
        Op::ReferralReward => referral_reward(bench, samples).await,
        Op::Billing => billing(bench, samples).await,
        other => panic!("{} is measured through the handler", other.name()),
    }
}

/// `App::evaluate_tier` on members that each earned on the day before: a real evaluation (the
/// rolling window is read and the day's review is recorded), once per member, so no call is the
/// same-day no-op.
async fn tier_evaluation(bench: &Bench, samples: usize) -> Sequential {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let app = App::new(bench.store.clone(), clock.clone(), config());
    app.program().await.expect("program");
    for i in 0..samples {
        let member = format!("tier-{i}");
        enrol(&app, &member, None, None).await;
        accrue(&app, &member, &format!("tier-order-{i}"), 40_000).await;
    }
    clock.advance(TimeDelta::days(1));
    let mut meter = Meter::new(bench);
    for i in 0..samples {
        let member = id(&format!("tier-{i}"));
        meter.call(app.evaluate_tier(&member), Result::is_ok).await;
    }
    meter.out
}

/// `App::grant_campaign` with messages of `GRANT_MEMBERS` members: one transaction per message.
async fn campaign_grant(bench: &Bench, messages: usize) -> Sequential {
    let app = App::new(
        bench.store.clone(),
        Arc::new(loyalty_core::clock::SystemClock),
        config(),
    )
    .with_campaign_dispatch(Arc::new(MemoryQueue::default()));
    app.program().await.expect("program");
    let mut plan = Vec::new();
    for m in 0..messages {
        let members: Vec<String> = (0..GRANT_MEMBERS)
            .map(|i| format!("grant-{m}-{i}"))
            .collect();
        for member in &members {
            enrol(&app, member, None, None).await;
        }
        let key = IdempotencyKey::parse(&format!("bench-campaign-{m}")).expect("key");
        let created = app
            .create_campaign(
                "bench",
                Some(key),
                &json!({
                    "name": format!("bench campaign {m}"),
                    "points": 50,
                    "audience": { "member_ids": members },
                    "reason": "benchmark",
                }),
            )
            .await
            .expect("campaign created");
        let (loyalty_core::service::Outcome::Created(response)
        | loyalty_core::service::Outcome::Replayed(response)
        | loyalty_core::service::Outcome::Simulated(response)) = created;
        plan.push(GrantMessage {
            campaign_id: response["campaign_id"]
                .as_str()
                .expect("campaign id")
                .to_owned(),
            member_ids: members,
        });
    }
    let mut meter = Meter::new(bench);
    for message in &plan {
        meter
            .call(app.grant_campaign(message, false), Result::is_ok)
            .await;
    }
    // Each member holds the welcome bonus + the 50 granted points (checked, untimed).
    for message in &plan {
        for member in &message.member_ids {
            let view = app.member_view(&id(member)).await.expect("member");
            let available = serde_json::to_value(&view).expect("view")["balance"]["available"]
                .as_i64()
                .unwrap_or(-1);
            if available != 150 {
                meter.out.unexpected += 1;
                meter
                    .out
                    .first_unexpected
                    .get_or_insert_with(|| format!("{member}: balance {available}, not 150"));
            }
        }
    }
    meter.out
}

/// `App::handle_referral_message` (what the referral worker calls per SQS record) deciding a
/// qualifying referral: both bonus entries, both members and the referral record in one
/// transaction. Each referral has its own referrer, so no cap or velocity limit is reached.
async fn referral_reward(bench: &Bench, samples: usize) -> Sequential {
    let queue = Arc::new(MemoryQueue::default());
    let app = App::new(
        bench.store.clone(),
        Arc::new(loyalty_core::clock::SystemClock),
        config(),
    )
    .with_referral_queue(queue.clone());
    app.program().await.expect("program");
    let mut bodies = Vec::new();
    for i in 0..samples {
        let referrer = format!("referrer-{i}");
        enrol(
            &app,
            &referrer,
            Some(format!("referrer-{i}@example.com")),
            None,
        )
        .await;
        let code = bench
            .store
            .member(&id(&referrer))
            .await
            .expect("store")
            .expect("referrer")
            .referral_code
            .as_str()
            .to_owned();
        let referee = format!("referee-{i}");
        enrol(
            &app,
            &referee,
            Some(format!("referee-{i}@example.org")),
            Some(code),
        )
        .await;
        // A first purchase over the 25.00 USD minimum marks the referee; the outbox sends the
        // referral message from the stream's old and new images of the referee's item.
        let before = stored_member(bench, &referee).await;
        accrue(&app, &referee, &format!("referee-order-{i}"), 4_000).await;
        let after = stored_member(bench, &referee).await;
        app.relay_change(&Change::Member {
            before: Some(Box::new(before)),
            after: Box::new(after),
        })
        .await
        .expect("the outbox relays the referee's first purchase");
        let sent = queue.take();
        assert_eq!(sent.len(), 1, "one referral message per qualifying referee");
        bodies.extend(sent);
    }
    let mut meter = Meter::new(bench);
    for body in &bodies {
        meter
            .call(
                app.handle_referral_message(body),
                |r| matches!(r, Ok(o) if o.changed && o.status == ReferralStatus::Rewarded),
            )
            .await;
    }
    meter.out
}

async fn stored_member(bench: &Bench, raw: &str) -> loyalty_core::member::Member {
    bench
        .store
        .member(&id(raw))
        .await
        .expect("store")
        .expect("member")
}

/// `App::bill_subscription` renewing a monthly "plus" subscription on its billing date, with the
/// in-memory payment provider (its call is in the latency but costs no DynamoDB units; on AWS
/// it is a Stripe round trip, not priced here).
async fn billing(bench: &Bench, samples: usize) -> Sequential {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let app = App::new(bench.store.clone(), clock.clone(), config())
        .with_payments(Arc::new(MemoryPayments::default()));
    app.program().await.expect("program");
    for i in 0..samples {
        let member = format!("sub-{i}");
        enrol(&app, &member, None, None).await;
        app.start_subscription(
            &id(&member),
            IdempotencyKey::parse(&format!("sub-start-{i}")).ok(),
            &json!({ "plan_id": "plus", "payment_method": "pm_card_visa" }),
        )
        .await
        .expect("subscribed");
    }
    // Past the next billing date whatever the day of the month.
    clock.advance(TimeDelta::days(32));
    let mut meter = Meter::new(bench);
    for i in 0..samples {
        let member = id(&format!("sub-{i}"));
        meter
            .call(app.bill_subscription(&member), |r| {
                matches!(r, Ok(BillingResult::Renewed))
            })
            .await;
    }
    meter.out
}
