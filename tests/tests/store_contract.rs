//! One store contract, two adapters: every case runs against `MemoryStore` (which the simulator
//! and the unit tests trust) and against the DynamoDB adapter on DynamoDB Local, so the two
//! cannot drift apart. Conditional commits, record conflicts, idempotency records, stock and
//! pagination.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use loyalty_core::idempotency::{IdempotencyRecord, IdempotencyScope, Operation};
use loyalty_core::ids::{IdempotencyKey, MemberId, ReferralCode, RewardId};
use loyalty_core::ledger::{EntryType, LedgerEntry, Source};
use loyalty_core::member::{Balance, Member, MemberStatus};
use loyalty_core::ports::{
    shard_of, Commit, CommitError, Expect, Record, RecordWrite, StockClaim, Store,
};
use serde_json::json;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 3, 1, 12, 0, 0)
        .single()
        .expect("date")
}

fn id(raw: &str) -> MemberId {
    MemberId::parse(raw).expect("member id")
}

fn fresh(member: &str, code: &str) -> Member {
    Member {
        member_id: id(member),
        status: MemberStatus::Active,
        tier: "bronze".into(),
        email: None,
        name: None,
        referral_code: ReferralCode::parse(code).expect("code"),
        referred_by: None,
        enrolled_at: at(),
        balance: Balance::default(),
        version: 1,
        last_seq: 0,
        action_counts: Default::default(),
        reward_counts: Default::default(),
        promotion_uses: Default::default(),
        tier_state: Default::default(),
        qualifying: Default::default(),
        plan: None,
        referral_purchase: None,
        referral_counts: Default::default(),
        expiry: Default::default(),
        pending_lots: Default::default(),
    }
}

/// Points dated by a fixed 12-month expiry policy, so the member carries a lot and a due day.
fn dating() -> loyalty_core::expiry::Dating {
    loyalty_core::expiry::ExpiryPolicy {
        mode: loyalty_core::expiry::ExpiryMode::Fixed { months: 12 },
        warn_days: vec![30],
        campaign_months: None,
    }
    .dating(at())
}

/// `member` after an entry of `points` with id `entry_id`.
fn earn(member: &Member, entry_id: &str, points: i64) -> (Member, LedgerEntry) {
    let next = member
        .with_entry(EntryType::Earn, points, &dating())
        .expect("fits");
    let entry = LedgerEntry {
        entry_id: entry_id.into(),
        seq: next.last_seq,
        member_id: member.member_id.clone(),
        entry_type: EntryType::Earn,
        points,
        balance_after: next.balance.available,
        reason: "contract".into(),
        breakdown: vec![],
        source: Source::Enrolment,
        program_version: 1,
        occurred_at: at(),
        recorded_at: at(),
        lots: Vec::new(),
        pending: None,
    };
    (next, entry)
}

fn commit(member: Member, expected: Option<u64>, entry: Option<LedgerEntry>) -> Commit {
    Commit {
        member,
        expected_version: expected,
        entry,
        idempotency: None,
        claim_referral_code: expected.is_none(),
        stock: None,
        tier_change: None,
    }
}

fn keyed(key: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        operation: Operation::Accrual,
        key: key.into(),
        fingerprint: "f".into(),
        status: 201,
        response: json!({ "ok": key }),
        entry_id: "e".into(),
        created_at: at(),
    }
}

fn record(kind: &str, id: &str, owner: &str, version: u64, due: Option<NaiveDate>) -> Record {
    Record {
        kind: kind.into(),
        id: id.into(),
        owner: Some(owner.into()),
        version,
        due,
        body: json!({ "id": id, "version": version }),
    }
}

async fn create<S: Store>(store: &S, member: &str, code: &str) -> Member {
    let member = fresh(member, code);
    store
        .commit(commit(member.clone(), None, None))
        .await
        .expect("created");
    member
}

async fn member_writes_are_conditional<S: Store>(store: &S) {
    let first = create(store, "c-alice", "AAAAAAAA").await;
    let again = store
        .commit(commit(fresh("c-alice", "BBBBBBBB"), None, None))
        .await;
    assert!(matches!(again, Err(CommitError::MemberExists)), "{again:?}");

    let (next, entry) = earn(&first, "order:o-1", 10);
    let stale = store
        .commit(commit(
            next.clone(),
            Some(first.version + 7),
            Some(entry.clone()),
        ))
        .await;
    assert!(matches!(stale, Err(CommitError::StaleMember)), "{stale:?}");
    let mut applied = commit(next.clone(), Some(first.version), Some(entry));
    applied.idempotency = Some(keyed("k-1"));
    store.commit(applied).await.expect("applied");

    let (twice, entry) = earn(&next, "order:o-1", 10);
    let duplicate = store
        .commit(commit(twice.clone(), Some(next.version), Some(entry)))
        .await;
    assert!(
        matches!(duplicate, Err(CommitError::DuplicateEntry)),
        "{duplicate:?}"
    );
    let (other, entry) = earn(&next, "order:o-2", 10);
    let mut reused = commit(other, Some(next.version), Some(entry));
    reused.idempotency = Some(keyed("k-1"));
    let reused = store.commit(reused).await;
    assert!(
        matches!(reused, Err(CommitError::IdempotencyKeyTaken)),
        "{reused:?}"
    );

    let code_taken = store
        .commit(commit(fresh("c-bob", "AAAAAAAA"), None, None))
        .await;
    assert!(
        matches!(code_taken, Err(CommitError::ReferralCodeTaken)),
        "{code_taken:?}"
    );
    let stored = store
        .member(&id("c-alice"))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored, next, "refused writes changed nothing");
    assert_eq!(
        store
            .member_by_referral_code(&first.referral_code)
            .await
            .expect("read"),
        Some(id("c-alice"))
    );
}

async fn a_failed_condition_writes_nothing<S: Store>(store: &S) {
    let failing = RecordWrite {
        record: record("referral", "c-r-1", "c-carol", 2, None),
        expect: Expect::Version(1),
    };
    let result = store
        .transact(
            vec![commit(fresh("c-carol", "CCCCCCCC"), None, None)],
            vec![failing],
        )
        .await;
    assert!(
        matches!(&result, Err(CommitError::RecordConflict { kind, id }) if kind == "referral" && id == "c-r-1"),
        "{result:?}"
    );
    assert_eq!(store.member(&id("c-carol")).await.expect("read"), None);
    assert_eq!(store.record("referral", "c-r-1").await.expect("read"), None);
}

async fn record_versions_are_conditional<S: Store>(store: &S) {
    let write = |version, expect| RecordWrite {
        record: record("campaign", "c-cmp", "program", version, None),
        expect,
    };
    store
        .transact(vec![], vec![write(1, Expect::Absent)])
        .await
        .expect("created");
    let twice = store.transact(vec![], vec![write(1, Expect::Absent)]).await;
    assert!(
        matches!(twice, Err(CommitError::RecordConflict { .. })),
        "{twice:?}"
    );
    store
        .transact(vec![], vec![write(2, Expect::Version(1))])
        .await
        .expect("updated");
    let stale = store
        .transact(vec![], vec![write(3, Expect::Version(1))])
        .await;
    assert!(
        matches!(stale, Err(CommitError::RecordConflict { .. })),
        "{stale:?}"
    );
    let stored = store
        .record("campaign", "c-cmp")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored.version, 2);
}

async fn idempotency_records_are_read_with_the_member<S: Store>(store: &S) {
    let member = create(store, "c-dave", "DDDDDDDD").await;
    let (next, entry) = earn(&member, "order:o-9", 5);
    let mut applied = commit(next, Some(member.version), Some(entry));
    applied.idempotency = Some(keyed("k-9"));
    store.commit(applied).await.expect("applied");
    let scope = IdempotencyScope {
        operation: Operation::Accrual,
        key: IdempotencyKey::parse("k-9").expect("key"),
    };
    let snapshot = store
        .snapshot(&id("c-dave"), Some(&scope))
        .await
        .expect("read");
    assert_eq!(snapshot.replay, Some(keyed("k-9")));
    assert_eq!(snapshot.member.map(|m| m.version), Some(member.version + 1));
    let other = IdempotencyScope {
        operation: Operation::Redemption,
        key: IdempotencyKey::parse("k-9").expect("key"),
    };
    assert_eq!(
        store
            .idempotency_record(&id("c-dave"), &other)
            .await
            .expect("read"),
        None,
        "keys are scoped by operation"
    );
}

async fn limited_stock_is_never_oversold_and_a_released_unit_is_claimed_again<S: Store>(store: &S) {
    let reward = RewardId::parse("c-tote").expect("reward");
    for (i, (name, code)) in [
        ("c-erin", "EEEEEEEE"),
        ("c-finn", "FFFFFFFF"),
        ("c-gus", "GGGGGGGG"),
    ]
    .into_iter()
    .enumerate()
    {
        let member = create(store, name, code).await;
        let (next, entry) = earn(&member, "redemption:r", -0);
        let mut claim = commit(next, Some(member.version), Some(entry));
        claim.stock = Some(StockClaim {
            release: false,
            reward_id: reward.clone(),
            stock: 2,
        });
        let result = store.commit(claim).await;
        if i < 2 {
            result.expect("in stock");
        } else {
            assert!(matches!(result, Err(CommitError::OutOfStock)), "{result:?}");
        }
    }
    let used = store
        .stock_used(std::slice::from_ref(&reward))
        .await
        .expect("read");
    assert_eq!(used.get(&reward).copied(), Some(2));

    // A canceled redemption gives its unit back, and the next claim gets it.
    let erin = store
        .member(&MemberId::parse("c-erin").expect("id"))
        .await
        .expect("read")
        .expect("erin");
    let (next, entry) = earn(&erin, "redemption_cancel:r", 0);
    let mut release = commit(next, Some(erin.version), Some(entry));
    release.stock = Some(StockClaim {
        release: true,
        reward_id: reward.clone(),
        stock: 0,
    });
    store.commit(release).await.expect("released");
    let gus = store
        .member(&MemberId::parse("c-gus").expect("id"))
        .await
        .expect("read")
        .expect("gus");
    let (next, entry) = earn(&gus, "redemption:r", 0);
    let mut claim = commit(next, Some(gus.version), Some(entry));
    claim.stock = Some(StockClaim {
        release: false,
        reward_id: reward.clone(),
        stock: 2,
    });
    store.commit(claim).await.expect("the released unit");
    let used = store
        .stock_used(std::slice::from_ref(&reward))
        .await
        .expect("read");
    assert_eq!(used.get(&reward).copied(), Some(2));
}

async fn ledgers_page_newest_first<S: Store>(store: &S) {
    let mut member = create(store, "c-hana", "HHHHHHHH").await;
    for n in 1..=5 {
        let (next, entry) = earn(&member, &format!("order:p-{n}"), n);
        store
            .commit(commit(next.clone(), Some(member.version), Some(entry)))
            .await
            .expect("applied");
        member = next;
    }
    let mut seen = Vec::new();
    let mut before = u64::MAX;
    loop {
        let page = store
            .entries_before(&id("c-hana"), before, 2)
            .await
            .expect("page");
        if page.is_empty() {
            break;
        }
        seen.extend(page.iter().map(|e| e.seq));
        before = page.last().map_or(0, |e| e.seq);
    }
    assert_eq!(seen, vec![5, 4, 3, 2, 1]);
}

/// An entry is found by the id its business key gave it (what a return reads of its order),
/// and only in its own member's ledger.
async fn an_entry_is_read_by_its_id<S: Store>(store: &S) {
    let member = create(store, "c-ines", "JJJJJJJJ").await;
    let other = create(store, "c-jon", "KKKKKKKK").await;
    let mut current = member.clone();
    for n in 1..=3 {
        let (next, entry) = earn(&current, &format!("order:e-{n}"), n * 10);
        store
            .commit(commit(next.clone(), Some(current.version), Some(entry)))
            .await
            .expect("applied");
        current = next;
    }
    let found = store
        .entry(&id("c-ines"), "order:e-2")
        .await
        .expect("read")
        .expect("the entry exists");
    assert_eq!((found.seq, found.points), (2, 20));
    assert!(store
        .entry(&id("c-ines"), "order:e-9")
        .await
        .expect("read")
        .is_none());
    assert!(store
        .entry(&other.member_id, "order:e-2")
        .await
        .expect("read")
        .is_none());
}

async fn records_list_newest_first_and_come_due_by_shard<S: Store>(store: &S) {
    let day = NaiveDate::from_ymd_opt(2027, 3, 2).expect("date");
    let writes: Vec<RecordWrite> = ["c-s-1", "c-s-3", "c-s-2"]
        .into_iter()
        .map(|r| RecordWrite {
            record: record("subscription", r, "c-owner", 1, Some(day)),
            expect: Expect::Absent,
        })
        .collect();
    store.transact(vec![], writes).await.expect("written");
    let listed: Vec<String> = store
        .records_of("subscription", "c-owner", 2)
        .await
        .expect("listed")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, vec!["c-s-3", "c-s-2"]);
    for wanted in ["c-s-1", "c-s-2", "c-s-3"] {
        let mut found = false;
        let mut cursor = None;
        loop {
            let (ids, next) = store
                .records_due("subscription", day, shard_of(wanted), cursor)
                .await
                .expect("due");
            found |= ids.iter().any(|i| i == wanted);
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert!(found, "{wanted} is due on its day in its shard");
    }
    let (other_day, _) = store
        .records_due(
            "subscription",
            day.succ_opt().expect("day"),
            shard_of("c-s-1"),
            None,
        )
        .await
        .expect("due");
    assert!(!other_day.iter().any(|i| i.starts_with("c-s-")));
}

async fn members_come_due_for_expiry_on_their_day_in_their_shard<S: Store>(store: &S) {
    let member = create(store, "c-lotte", "MMMMMMMM").await;
    let (next, entry) = earn(&member, "order:o-lot", 40);
    store
        .commit(commit(next, Some(member.version), Some(entry)))
        .await
        .expect("earned");
    let stored = store
        .member(&id("c-lotte"))
        .await
        .expect("read")
        .expect("exists");
    // Earned 2027-03: expires 2028-03-31, warned 30 days before.
    let due = NaiveDate::from_ymd_opt(2028, 3, 1).expect("date");
    assert_eq!(stored.expiry.due, Some(due));
    assert_eq!(stored.expiry.total(), 40);
    let shard = shard_of("c-lotte");
    let (ids, _) = store
        .members_expiry_due(due, shard, None)
        .await
        .expect("due");
    assert!(ids.contains(&id("c-lotte")), "{ids:?}");
    let (other, _) = store
        .members_expiry_due(due.succ_opt().expect("day"), shard, None)
        .await
        .expect("due");
    assert!(!other.contains(&id("c-lotte")));
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&loyalty_core::memory::MemoryStore::new()).await
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&loyalty_tests::dynamo_store().await).await
                }
            )*
        }
    };
}

contract!(
    member_writes_are_conditional,
    a_failed_condition_writes_nothing,
    record_versions_are_conditional,
    idempotency_records_are_read_with_the_member,
    limited_stock_is_never_oversold_and_a_released_unit_is_claimed_again,
    ledgers_page_newest_first,
    an_entry_is_read_by_its_id,
    records_list_newest_first_and_come_due_by_shard,
    members_come_due_for_expiry_on_their_day_in_their_shard,
);
