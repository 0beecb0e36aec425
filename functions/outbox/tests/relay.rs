//! The outbox end to end over the in-memory store's change feed and through the Lambda handler:
//! what a commit announces, that redelivery repeats ids instead of inventing facts, that a
//! failure stops the batch at the failing record (order kept) and a restart loses nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use loyalty_core::clock::ManualClock;
use loyalty_core::commands::EnrolRequest;
use loyalty_core::events::catalog::{derive, Change};
use loyalty_core::events::MemoryQueue;
use loyalty_core::ids::{IdempotencyKey, MemberId, OrderId};
use loyalty_core::ledger::{EntryType, LedgerEntry, Source};
use loyalty_core::memory::MemoryStore;
use loyalty_core::money::Money;
use loyalty_core::ports::{MessageQueue, StoreError};
use loyalty_core::service::AppConfig;
use loyalty_core::App;
use serde_json::{json, Value};

fn app(events: Arc<dyn MessageQueue>) -> App<MemoryStore> {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap(),
    ));
    App::new(MemoryStore::with_change_feed(), clock, AppConfig::default()).with_events(events)
}

fn bodies(queue: &MemoryQueue) -> Vec<Value> {
    queue
        .sent()
        .iter()
        .map(|b| serde_json::from_str(b).expect("an event is JSON"))
        .collect()
}

#[tokio::test]
async fn an_enrolment_and_a_purchase_announce_member_enrolled_and_points_earned_with_the_balance() {
    let events = Arc::new(MemoryQueue::default());
    let app = app(events.clone());
    let member = MemberId::parse("ada").unwrap();
    app.enrol(EnrolRequest {
        member_id: Some(member.clone()),
        email: None,
        name: None,
        referral_code: None,
    })
    .await
    .expect("enrolled");
    let body = json!({ "kind": "purchase", "order_id": "o-1",
                       "amount": { "minor": 2500, "currency": "USD" } });
    app.accrue(
        &member,
        Some(IdempotencyKey::parse("k1").unwrap()),
        &body,
        false,
    )
    .await
    .expect("accrued");
    let relayed = app
        .relay_all(app.store().take_changes())
        .await
        .expect("relayed");
    let sent = bodies(&events);
    assert_eq!(relayed.events, sent.len());
    let types: Vec<&str> = sent.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(types.contains(&"member.enrolled"), "{types:?}");
    let earned = sent
        .iter()
        .find(|e| e["type"] == "points.earned" && e["data"]["source"]["kind"] == "order")
        .expect("points.earned for the order");
    assert_eq!(earned["member_id"], "ada");
    assert_eq!(earned["version"], 1);
    assert!(earned["data"]["points"].as_i64().unwrap() > 0);
    assert!(
        earned["data"]["balance"].as_i64().unwrap() >= earned["data"]["points"].as_i64().unwrap()
    );
    assert!(earned["data"]["breakdown"].is_array());
    assert_eq!(earned["event_id"], "entry:ada:order:o-1");
    // Nothing new committed: nothing new announced.
    assert_eq!(
        app.relay_all(app.store().take_changes())
            .await
            .unwrap()
            .events,
        0
    );
}

fn entry(member: &str, seq: u64) -> LedgerEntry {
    let at = Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap();
    LedgerEntry {
        entry_id: format!("order:{member}-{seq}"),
        seq,
        member_id: MemberId::parse(member).unwrap(),
        entry_type: EntryType::Earn,
        points: 10,
        balance_after: 10 * seq as i64,
        reason: "purchase".into(),
        breakdown: Vec::new(),
        source: Source::Order {
            order_id: OrderId::parse(&format!("{member}-{seq}")).unwrap(),
            amount: serde_json::from_value::<Money>(json!({ "minor": 1000, "currency": "USD" }))
                .unwrap(),
            qualifying_minor: None,
        },
        program_version: 1,
        occurred_at: at,
        recorded_at: at,
        lots: Vec::new(),
        pending: None,
    }
}

#[test]
fn every_ledger_entry_kind_maps_to_its_points_event() {
    let cases = [
        (EntryType::Earn, "points.earned"),
        (EntryType::Bonus, "points.earned"),
        (EntryType::Redeem, "points.redeemed"),
        (EntryType::Reverse, "points.reversed"),
        (EntryType::Adjust, "points.adjusted"),
        (EntryType::Expire, "points.expired"),
        (EntryType::Transfer, "points.transferred"),
        (EntryType::Release, "points.released"),
    ];
    for (kind, expected) in cases {
        let mut e = entry("m", 1);
        e.entry_type = kind;
        let derived = derive(&Change::Entry(Box::new(e))).unwrap();
        assert_eq!(derived.events[0].event_type, expected);
    }
}

/// A queue that fails the `fail_on`-th send once (a consumer killed mid-batch), counting every
/// body it accepted.
#[derive(Default)]
struct Receiver {
    sends: AtomicUsize,
    fail_on: Vec<usize>,
    got: std::sync::Mutex<Vec<Value>>,
}

#[async_trait]
impl MessageQueue for Receiver {
    async fn send(&self, bodies: Vec<String>) -> Result<(), StoreError> {
        let n = self.sends.fetch_add(1, Ordering::SeqCst);
        if self.fail_on.contains(&n) {
            return Err(StoreError("killed mid-batch".into()));
        }
        let mut got = self.got.lock().unwrap();
        got.extend(
            bodies
                .iter()
                .map(|b| serde_json::from_str::<Value>(b).unwrap()),
        );
        Ok(())
    }
}

/// A stream record as Lambda delivers it, made from the item the adapter wrote.
fn stream_record(entry: &LedgerEntry, sequence: usize) -> Value {
    let mut item: serde_dynamo::Item = serde_dynamo::to_item(entry).unwrap();
    item.insert(
        "pk".into(),
        serde_dynamo::AttributeValue::S(format!("MEMBER#{}", entry.member_id)),
    );
    item.insert(
        "sk".into(),
        serde_dynamo::AttributeValue::S(format!("LEDGER#{:020}", entry.seq)),
    );
    json!({
        "eventID": format!("e{sequence}"),
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "Keys": { "pk": item["pk"], "sk": item["sk"] },
            "NewImage": item,
            "SequenceNumber": format!("{sequence:021}"),
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        }
    })
}

#[tokio::test]
async fn ten_thousand_changes_across_500_members_survive_kills_with_zero_lost_and_order_kept() {
    // 500 members × 20 entries, interleaved as a shard would carry them.
    let mut entries = Vec::new();
    for seq in 1..=20 {
        for m in 0..500 {
            entries.push(entry(&format!("m{m:03}"), seq));
        }
    }
    let records: Vec<Value> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| stream_record(e, i))
        .collect();
    // Killed on every 97th send: the batch stops there and is delivered again from it.
    let receiver = Arc::new(Receiver {
        fail_on: (1..10_500).filter(|n| n % 97 == 0).collect(),
        ..Receiver::default()
    });
    let app = app(receiver.clone());
    let mut position = 0;
    let mut invocations = 0;
    while position < records.len() {
        invocations += 1;
        assert!(invocations < 1_000, "the mapping made no progress");
        let batch: Vec<Value> = records[position..(position + 100).min(records.len())].to_vec();
        let response = outbox::handle(&app, json!({ "Records": batch }))
            .await
            .expect("handled");
        match response["batchItemFailures"]
            .as_array()
            .and_then(|f| f.first())
        {
            None => position += batch.len(),
            Some(failure) => {
                let sequence = failure["itemIdentifier"].as_str().unwrap();
                let failed_at: usize = sequence.parse().unwrap();
                assert!(failed_at >= position, "a checkpoint never moves back");
                position = failed_at;
            }
        }
    }
    let got = receiver.got.lock().unwrap().clone();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut per_member: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for event in &got {
        *seen
            .entry(event["event_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
        per_member
            .entry(event["member_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(event["data"]["seq"].as_u64().unwrap());
    }
    let lost = entries.len() - seen.len();
    let duplicates = got.len() - seen.len();
    println!("10,000 changes: {lost} lost, {duplicates} duplicates, {invocations} invocations");
    assert_eq!(lost, 0);
    assert_eq!(seen.len(), 10_000);
    assert!(
        duplicates == 0,
        "a failed send delivered nothing, so a retry duplicates nothing here"
    );
    for (member, seqs) in per_member {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{member}'s events out of order: {seqs:?}"
        );
        assert_eq!(seqs.len(), 20);
    }
}

#[tokio::test]
async fn a_consumer_killed_after_sending_part_of_a_batch_redelivers_with_the_same_event_ids() {
    let receiver = Arc::new(Receiver {
        fail_on: vec![3],
        ..Receiver::default()
    });
    let app = app(receiver.clone());
    let records: Vec<Value> = (1..=6)
        .map(|seq| stream_record(&entry("kim", seq), seq as usize))
        .collect();
    let first = outbox::handle(&app, json!({ "Records": records }))
        .await
        .unwrap();
    let failed = first["batchItemFailures"][0]["itemIdentifier"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        failed,
        format!("{:021}", 4),
        "the fourth record failed and stops the batch"
    );
    // Lambda retries the whole batch from the start of the failed range (here: everything, as
    // a restarted consumer without a checkpoint would).
    let second = outbox::handle(&app, json!({ "Records": records }))
        .await
        .unwrap();
    assert_eq!(second["batchItemFailures"], json!([]));
    let got = receiver.got.lock().unwrap().clone();
    let ids: Vec<&str> = got
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        6,
        "every change announced at least once: {ids:?}"
    );
    assert_eq!(ids.len(), 9, "three announced twice, with the same ids");
}

#[tokio::test]
async fn an_item_that_does_not_parse_is_reported_so_it_ends_in_the_on_failure_destination() {
    let app = app(Arc::new(MemoryQueue::default()));
    let mut bad = stream_record(&entry("zed", 1), 1);
    bad["dynamodb"]["NewImage"]["points"] = json!({ "S": "not a number" });
    let good = stream_record(&entry("zed", 2), 2);
    let response = outbox::handle(&app, json!({ "Records": [bad, good] }))
        .await
        .unwrap();
    assert_eq!(
        response["batchItemFailures"],
        json!([{ "itemIdentifier": format!("{:021}", 1) }])
    );
}

#[tokio::test]
async fn a_season_promotion_whose_writer_died_after_the_commit_is_still_announced() {
    // Simulator seed 588: the hourly run committed the season's promotion and lost the reply, so
    // it never republished the program; a later run finds the record and does nothing. The stream
    // carries the committed record anyway, and the outbox announces it.
    use loyalty_core::ports::{
        Expect, MemberStore, ProgramStore, Record, RecordStore, RecordWrite,
    };
    let events = Arc::new(MemoryQueue::default());
    let app = app(events.clone());
    let before = app.program().await.expect("program").version;
    app.store().take_changes();
    let at = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
    let body = json!({
        "promotion_id": "season-bf-2026", "name": "Black Friday double points",
        "reward": serde_json::to_value(loyalty_core::promotions::PromotionReward::Multiplier { percent: 200 }).unwrap(),
        "starts_at": at, "ends_at": at + chrono::Duration::days(3),
        "status": "active",
        "source": serde_json::to_value(loyalty_core::promotions::PromotionSource::Season { season_id: "bf".into(), year: 2026 }).unwrap(),
        "created_at": at
    });
    let record = Record {
        kind: loyalty_core::promotions::RECORD_KIND.into(),
        id: "season-bf-2026".into(),
        owner: None,
        version: 1,
        due: None,
        body,
    };
    app.store()
        .transact(
            Vec::new(),
            vec![RecordWrite {
                record,
                expect: Expect::Absent,
            }],
        )
        .await
        .expect("committed; the writer dies here");
    assert!(app
        .store()
        .record("promotion", "season-bf-2026")
        .await
        .unwrap()
        .is_some());
    app.relay_all(app.store().take_changes())
        .await
        .expect("relayed");
    let after = app
        .store()
        .active_program()
        .await
        .unwrap()
        .expect("program")
        .version;
    assert!(
        after > before,
        "the catalog change was announced: version {before} → {after}"
    );
    let sent = bodies(&events);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["type"], "promotion.opened");
    assert_eq!(
        sent[0]["event_id"],
        "promotion.opened:promotion:season-bf-2026:v1"
    );
}

#[tokio::test]
async fn a_referees_first_qualifying_purchase_hands_the_referral_to_the_worker_once() {
    let events = Arc::new(MemoryQueue::default());
    let referrals = Arc::new(MemoryQueue::default());
    let app = app(events.clone()).with_referral_queue(referrals.clone());
    let enrol = |id: &str, code: Option<loyalty_core::ids::ReferralCode>| EnrolRequest {
        member_id: Some(MemberId::parse(id).unwrap()),
        email: Some(format!("{id}@example.com")),
        name: None,
        referral_code: code,
    };
    let ada = app.enrol(enrol("ada", None)).await.expect("referrer");
    app.enrol(enrol("bob", Some(ada.referral_code.clone())))
        .await
        .expect("referee");
    let bob = MemberId::parse("bob").unwrap();
    for (order, key) in [("o-1", "k1"), ("o-2", "k2")] {
        let body = json!({ "kind": "purchase", "order_id": order,
                           "amount": { "minor": 50_000, "currency": "USD" } });
        app.accrue(
            &bob,
            Some(IdempotencyKey::parse(key).unwrap()),
            &body,
            false,
        )
        .await
        .expect("accrued");
    }
    // The accrual sends nothing after its commit: a writer that died right after it loses
    // nothing, because the message comes from the committed member.
    assert!(referrals.sent().is_empty());
    let changes = app.store().take_changes();
    app.relay_all(changes.clone()).await.expect("relayed");
    let sent = referrals.take();
    assert_eq!(
        sent.len(),
        1,
        "only the first purchase marks the referral: {sent:?}"
    );
    let message: Value = serde_json::from_str(&sent[0]).unwrap();
    assert!(message["referral_id"].as_str().unwrap().ends_with("-bob"));
    // The stream delivering the same records again sends the same message again (the worker
    // decides a referral once), never a different one.
    app.relay_all(changes).await.expect("relayed again");
    assert_eq!(referrals.take(), sent);
}

#[tokio::test]
async fn a_subscription_and_its_tier_change_whose_writer_died_after_the_commit_are_announced_once()
{
    // The crash the simulator used to inject between a commit and its send: the request that
    // started the subscription (and lifted the member to the plan's tier floor) sent nothing, as
    // if it died right after its commit. The stream carries the committed items anyway.
    let events = Arc::new(MemoryQueue::default());
    let app = app(events.clone()).with_payments(Arc::new(
        loyalty_core::subscriptions::payments::MemoryPayments::default(),
    ));
    let member = MemberId::parse("cleo").unwrap();
    app.enrol(EnrolRequest {
        member_id: Some(member.clone()),
        email: None,
        name: None,
        referral_code: None,
    })
    .await
    .expect("enrolled");
    app.start_subscription(
        &member,
        Some(IdempotencyKey::parse("sub-1").unwrap()),
        &json!({ "plan_id": "plus", "payment_method": "pm_card_visa" }),
    )
    .await
    .expect("subscribed");
    assert!(events.sent().is_empty(), "the writer sends nothing itself");
    let changes = app.store().take_changes();
    app.relay_all(changes.clone()).await.expect("relayed");
    let first = bodies(&events);
    let of_type = |sent: &[Value], kind: &str| {
        sent.iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e["event_id"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of_type(&first, "subscription.started").len(),
        1,
        "{first:?}"
    );
    let tier = of_type(&first, "tier.changed");
    assert_eq!(tier.len(), 1, "the plan's tier floor: {first:?}");
    // Delivered again: the same events under the same ids, nothing new.
    events.take();
    app.relay_all(changes).await.expect("relayed again");
    let again = bodies(&events);
    assert_eq!(of_type(&again, "tier.changed"), tier);
    assert_eq!(again.len(), first.len());
}
