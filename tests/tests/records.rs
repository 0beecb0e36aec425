//! Domain records on DynamoDB Local: conditional writes, listing by owner, the due index, and
//! atomicity with member commits.

use chrono::NaiveDate;
use loyalty_core::ports::{
    shard_of, CommitError, Expect, MemberStore, Record, RecordStore, RecordWrite,
};
use loyalty_tests::*;
use serde_json::json;

fn record(id: &str, owner: &str, version: u64, due: Option<NaiveDate>) -> Record {
    Record {
        kind: "referral".into(),
        id: id.into(),
        owner: Some(owner.into()),
        version,
        due,
        body: json!({ "id": id, "v": version }),
    }
}

#[tokio::test]
async fn records_are_conditional_listable_and_due() {
    let store = dynamo_store().await;
    let day = NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
    let write = |r: Record, expect| RecordWrite { record: r, expect };
    store
        .transact(
            vec![],
            vec![
                write(record("r-1", "alice", 1, Some(day)), Expect::Absent),
                write(record("r-2", "alice", 1, None), Expect::Absent),
            ],
        )
        .await
        .expect("written");

    let again = store
        .transact(
            vec![],
            vec![write(record("r-1", "alice", 1, None), Expect::Absent)],
        )
        .await;
    assert!(
        matches!(again, Err(CommitError::RecordConflict { ref id, .. }) if id == "r-1"),
        "{again:?}"
    );
    let stale = store
        .transact(
            vec![],
            vec![write(record("r-2", "alice", 3, None), Expect::Version(2))],
        )
        .await;
    assert!(
        matches!(stale, Err(CommitError::RecordConflict { ref id, .. }) if id == "r-2"),
        "{stale:?}"
    );
    store
        .transact(
            vec![],
            vec![write(record("r-2", "alice", 2, None), Expect::Version(1))],
        )
        .await
        .expect("updated");

    let listed = store
        .records_of("referral", "alice", 10)
        .await
        .expect("listed");
    assert_eq!(
        listed
            .iter()
            .map(|r| (r.id.as_str(), r.version))
            .collect::<Vec<_>>(),
        vec![("r-2", 2), ("r-1", 1)]
    );
    let (due, _) = store
        .records_due("referral", day, shard_of("r-1"), None)
        .await
        .expect("due");
    assert_eq!(due, vec!["r-1".to_owned()]);
    assert_eq!(
        store
            .record("referral", "r-2")
            .await
            .expect("read")
            .map(|r| r.body["v"].clone()),
        Some(json!(2))
    );
}

#[tokio::test]
async fn a_failed_record_condition_rolls_back_the_member_commit() {
    let TestApp { app, store } = test_app().await;
    let member = enrol(&app, &unique("m")).await;
    let before = member_state(&app, &member).await;
    let mut after = before.clone();
    after.version += 1;
    after.balance.available += 500;
    store
        .transact(
            vec![],
            vec![RecordWrite {
                record: record("taken", "x", 1, None),
                expect: Expect::Absent,
            }],
        )
        .await
        .expect("seeded");
    let commit = loyalty_core::ports::Commit {
        member: after,
        expected_version: Some(before.version),
        entry: None,
        idempotency: None,
        claim_referral_code: false,
        stock: None,
        tier_change: None,
    };
    let result = store
        .transact(
            vec![commit],
            vec![RecordWrite {
                record: record("taken", "x", 1, None),
                expect: Expect::Absent,
            }],
        )
        .await;
    assert!(matches!(result, Err(CommitError::RecordConflict { .. })));
    assert_eq!(member_state(&app, &member).await, before, "nothing applied");
}
