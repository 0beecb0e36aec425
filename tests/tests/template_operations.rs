//! The deployed stack runs with the least rights its code needs and tells a person when something
//! is wrong: every function's DynamoDB rights are exactly the ones listed below, every
//! dead-letter queue and every function has an alarm, every log group has a retention, and the
//! HTTP API throttles.

use std::collections::{BTreeMap, BTreeSet};

use loyalty_tests::repo_root;
use serde_yaml::Value;

/// What each function's code calls on the table, kept here so a change to the template or to a
/// function's use cases is a visible edit to this list. Item actions are on the table; `query`
/// names the table (`"table"`) or the indexes the function reads through.
///
/// Why each entry is there: every function reads the program (GetItem) and publishes the shipped
/// default on a fresh table (PutItem); points movements and record writes are transactions of
/// Puts and Updates; `snapshot` (member, program version stamp, idempotency record: accrue,
/// redeem, starting a subscription), the reward stock read and the campaign worker's member
/// reads are BatchGetItem; the ledger and tier history page the table; owner listings (referrals,
/// promotions) go through GSI1, due days (tier reviews, billing, referral expiry, reward codes) through GSI2,
/// campaign audiences through GSI1 (enrolment days) and GSI3 (tiers).
const RIGHTS: &[(&str, &[&str], &[&str])] = &[
    (
        "MembersFunction",
        &["GetItem", "BatchGetItem", "PutItem", "UpdateItem"],
        &["table", "GSI1"],
    ),
    (
        "AccrueFunction",
        &["GetItem", "BatchGetItem", "PutItem", "UpdateItem"],
        &["GSI1"],
    ),
    (
        "RedeemFunction",
        &["GetItem", "BatchGetItem", "PutItem", "UpdateItem"],
        &[],
    ),
    (
        "RewardsFunction",
        &["GetItem", "BatchGetItem", "PutItem", "UpdateItem"],
        &["GSI1"],
    ),
    (
        "TierEvaluateFunction",
        &["GetItem", "PutItem", "UpdateItem"],
        &["GSI2"],
    ),
    (
        "CodeSweepFunction",
        &["GetItem", "PutItem", "UpdateItem"],
        &["GSI2"],
    ),
    (
        "SubscriptionBillingFunction",
        &["GetItem", "PutItem", "UpdateItem"],
        &["GSI2"],
    ),
    (
        "ReferralWorkerFunction",
        &["GetItem", "PutItem", "UpdateItem"],
        &["GSI2"],
    ),
    (
        "PromotionsSchedulerFunction",
        &["GetItem", "PutItem", "UpdateItem"],
        &[],
    ),
    // The daily expiry run walks its due index (GSI4) and writes entries and warnings.
    (
        "PointsExpiryFunction",
        &["GetItem", "PutItem", "UpdateItem"],
        &["GSI4"],
    ),
    (
        "CampaignDispatchFunction",
        &["GetItem", "PutItem", "UpdateItem"],
        &["GSI1", "GSI3"],
    ),
    (
        "CampaignWorkerFunction",
        &["GetItem", "BatchGetItem", "PutItem", "UpdateItem"],
        &[],
    ),
    // The outbox reads the program and publishes it again unchanged when the promotion list
    // changed (the catalog-change follow-up).
    // ... and lists the active webhooks (by owner, GSI1) for the fan-out.
    (
        "OutboxFunction",
        &["GetItem", "BatchGetItem", "PutItem", "UpdateItem"],
        &["GSI1"],
    ),
    // A delivery and its webhook by key; the delivery record written under its condition.
    ("WebhookDeliveryFunction", &["GetItem", "PutItem"], &[]),
];

/// Functions that read the table's stream (the outbox), and the stream actions an event source
/// mapping needs, granted on the stream's ARN only.
const STREAM_READERS: &[&str] = &["OutboxFunction"];
const STREAM_ACTIONS: &[&str] = &[
    "DescribeStream",
    "GetRecords",
    "GetShardIterator",
    "ListStreams",
];

/// The DynamoDB calls the adapter makes, as the IAM actions they need (a transaction needs the
/// action of each item kind in it).
const ADAPTER_CALLS: &[(&str, &str)] = &[
    (".get_item()", "GetItem"),
    (".batch_get_item()", "BatchGetItem"),
    (".query()", "Query"),
    ("Put::builder()", "PutItem"),
    ("Update::builder()", "UpdateItem"),
    ("Delete::builder()", "DeleteItem"),
    ("ConditionCheck::builder()", "ConditionCheckItem"),
    (".put_item()", "PutItem"),
    (".update_item()", "UpdateItem"),
    (".delete_item()", "DeleteItem"),
    (".scan()", "Scan"),
    (".batch_write_item()", "BatchWriteItem"),
];

fn template() -> Value {
    let text = std::fs::read_to_string(repo_root().join("infra/template.yaml")).expect("template");
    serde_yaml::from_str(&text).expect("template parses as YAML")
}

fn resources(template: &Value) -> &serde_yaml::Mapping {
    template["Resources"].as_mapping().expect("Resources")
}

fn of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    resources(template)
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(id, r)| (id.as_str().expect("logical id"), r))
        .collect()
}

/// `!Ref X` / `!GetAtt X.Arn` / `!Sub "…"` as the text a reader would write.
fn intrinsic(value: &Value) -> String {
    match value {
        Value::Tagged(tagged) => format!(
            "{} {}",
            tagged.tag,
            tagged.value.as_str().unwrap_or("<not a string>")
        ),
        Value::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn one_or_many(value: &Value) -> Vec<&Value> {
    match value {
        Value::Sequence(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        single => vec![single],
    }
}

/// Where each DynamoDB action of a function applies: action → resources.
fn dynamodb_rights(function: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut rights: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for policy in one_or_many(&function["Properties"]["Policies"]) {
        let Some(statements) = policy.get("Statement") else {
            continue;
        };
        for statement in one_or_many(statements) {
            assert_eq!(statement["Effect"].as_str(), Some("Allow"));
            for action in one_or_many(&statement["Action"]) {
                let action = action.as_str().expect("an action is a string");
                let Some(action) = action.strip_prefix("dynamodb:") else {
                    continue;
                };
                let resources = one_or_many(&statement["Resource"])
                    .into_iter()
                    .map(intrinsic);
                rights
                    .entry(action.to_owned())
                    .or_default()
                    .extend(resources);
            }
        }
    }
    rights
}

fn expected_rights(items: &[&str], query: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let table = "!GetAtt LoyaltyTable.Arn".to_owned();
    let mut rights: BTreeMap<String, BTreeSet<String>> = items
        .iter()
        .map(|a| ((*a).to_owned(), BTreeSet::from([table.clone()])))
        .collect();
    if !query.is_empty() {
        let targets = query
            .iter()
            .map(|target| match *target {
                "table" => table.clone(),
                index => format!("!Sub ${{LoyaltyTable.Arn}}/index/{index}"),
            })
            .collect();
        rights.insert("Query".to_owned(), targets);
    }
    rights
}

#[test]
fn no_function_has_a_wildcard_action_or_a_broad_policy_template() {
    let template = template();
    for (id, function) in of_type(&template, "AWS::Serverless::Function") {
        for policy in one_or_many(&function["Properties"]["Policies"]) {
            if let Some(map) = policy.as_mapping() {
                for name in map.keys().filter_map(Value::as_str) {
                    assert!(
                        !name.starts_with("DynamoDB") && !name.ends_with("FullAccessPolicy"),
                        "{id} uses the broad policy template {name}"
                    );
                }
            }
            if let Some(statements) = policy.get("Statement") {
                for statement in one_or_many(statements) {
                    for action in one_or_many(&statement["Action"]) {
                        let action = action.as_str().unwrap_or_default();
                        assert!(!action.contains('*'), "{id} is granted {action}");
                    }
                    for resource in one_or_many(&statement["Resource"]) {
                        assert_ne!(resource.as_str(), Some("*"), "{id} is granted Resource *");
                    }
                }
            }
        }
    }
}

#[test]
fn each_function_has_exactly_the_dynamodb_rights_its_code_uses() {
    let template = template();
    let functions = of_type(&template, "AWS::Serverless::Function");
    let listed: BTreeSet<&str> = RIGHTS.iter().map(|(id, _, _)| *id).collect();
    let deployed: BTreeSet<&str> = functions.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        listed, deployed,
        "every function of the template is listed in RIGHTS, and only those"
    );
    for (id, items, query) in RIGHTS {
        let function = functions
            .iter()
            .find(|(name, _)| name == id)
            .map(|(_, f)| *f)
            .expect("listed function exists");
        let mut expected = expected_rights(items, query);
        if STREAM_READERS.contains(id) {
            for action in STREAM_ACTIONS {
                expected.insert(
                    (*action).to_owned(),
                    BTreeSet::from(["!GetAtt LoyaltyTable.StreamArn".to_owned()]),
                );
            }
        }
        assert_eq!(
            dynamodb_rights(function),
            expected,
            "{id}'s DynamoDB rights differ from what its code uses"
        );
    }
}

#[test]
fn every_listed_right_is_a_call_the_adapter_makes() {
    let adapter = repo_root().join("functions/dynamo/src");
    let mut source = String::new();
    for entry in std::fs::read_dir(&adapter).expect("adapter sources") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            source.push_str(&std::fs::read_to_string(&path).expect("source"));
        }
    }
    let called: BTreeSet<&str> = ADAPTER_CALLS
        .iter()
        .filter(|(call, _)| source.contains(call))
        .map(|(_, action)| *action)
        .collect();
    for forbidden in ["Scan", "DeleteItem", "BatchWriteItem"] {
        assert!(
            !called.contains(forbidden),
            "the adapter calls {forbidden}; no function may be granted it without a reason"
        );
    }
    for (id, items, query) in RIGHTS {
        for action in items.iter().chain(query.first().map(|_| &"Query")) {
            assert!(
                called.contains(action),
                "{id} is granted {action}, which the adapter never calls"
            );
        }
    }
}

#[test]
fn every_dead_letter_queue_and_every_function_has_an_alarm() {
    let template = template();
    let alarms = of_type(&template, "AWS::CloudWatch::Alarm");
    let watched = |metric: &str, dimension: &str| -> BTreeSet<String> {
        alarms
            .iter()
            .filter(|(_, a)| a["Properties"]["MetricName"].as_str() == Some(metric))
            .flat_map(|(_, a)| one_or_many(&a["Properties"]["Dimensions"]))
            .filter(|d| d["Name"].as_str() == Some(dimension))
            .map(|d| intrinsic(&d["Value"]))
            .collect()
    };
    let queues = of_type(&template, "AWS::SQS::Queue");
    let redrive_targets = queues
        .iter()
        .filter_map(|(_, q)| q["Properties"]["RedrivePolicy"].get("deadLetterTargetArn"))
        .map(|arn| {
            intrinsic(arn)
                .trim_start_matches("!GetAtt ")
                .trim_end_matches(".Arn")
                .to_owned()
        });
    let named_dead_letter = queues
        .iter()
        .filter(|(id, _)| id.ends_with("DLQ"))
        .map(|(id, _)| (*id).to_owned());
    let dead_letter_queues: BTreeSet<String> = redrive_targets
        .chain(named_dead_letter)
        .map(|queue| format!("!GetAtt {queue}.QueueName"))
        .collect();
    assert!(!dead_letter_queues.is_empty());
    let queue_alarms = watched("ApproximateNumberOfMessagesVisible", "QueueName");
    for queue in &dead_letter_queues {
        assert!(
            queue_alarms.contains(queue),
            "no alarm on {queue}: a parked message would go unnoticed"
        );
    }
    for metric in ["Errors", "Throttles"] {
        let functions = watched(metric, "FunctionName");
        for (id, _) in of_type(&template, "AWS::Serverless::Function") {
            assert!(
                functions.contains(&format!("!Ref {id}")),
                "{id} has no {metric} alarm"
            );
        }
    }
    for (id, alarm) in &alarms {
        assert!(
            alarm["Properties"].get("AlarmActions").is_some(),
            "{id} notifies no one even when AlarmTopicArn is set"
        );
    }
}

#[test]
fn every_function_log_group_has_a_retention() {
    let template = template();
    let groups: BTreeMap<String, &Value> = of_type(&template, "AWS::Logs::LogGroup")
        .into_iter()
        .map(|(_, g)| (intrinsic(&g["Properties"]["LogGroupName"]), g))
        .collect();
    for (id, _) in of_type(&template, "AWS::Serverless::Function") {
        let name = format!("!Sub /aws/lambda/${{{id}}}");
        let group = groups
            .get(&name)
            .unwrap_or_else(|| panic!("{id} has no log group of its own, so logs never expire"));
        assert_eq!(
            intrinsic(&group["Properties"]["RetentionInDays"]),
            "!Ref LogRetentionDays"
        );
    }
}

#[test]
fn the_http_api_throttles_and_the_campaign_worker_runs_two_at_most() {
    let template = template();
    let (_, api) = of_type(&template, "AWS::Serverless::HttpApi")
        .into_iter()
        .next()
        .expect("an HTTP API");
    let settings = &api["Properties"]["DefaultRouteSettings"];
    assert_eq!(
        intrinsic(&settings["ThrottlingBurstLimit"]),
        "!Ref ApiThrottlingBurstLimit"
    );
    assert_eq!(
        intrinsic(&settings["ThrottlingRateLimit"]),
        "!Ref ApiThrottlingRateLimit"
    );
    let worker = &resources(&template)["CampaignWorkerFunction"];
    let grants = &worker["Properties"]["Events"]["GrantBatches"]["Properties"];
    assert_eq!(
        grants["ScalingConfig"]["MaximumConcurrency"].as_u64(),
        Some(2),
        "parallel grant workers only add conflicts on the campaign's counter record"
    );
}
