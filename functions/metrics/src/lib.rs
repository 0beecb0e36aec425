//! Business and reliability metrics as CloudWatch Embedded Metric Format (EMF) lines: one JSON
//! object per line on stdout, which Lambda sends to CloudWatch Logs and CloudWatch turns into
//! metrics. No API call and no client: a metric costs one log line, and a failure to emit one
//! can never fail a request.
//!
//! Metrics are emitted at the edges — the HTTP response mapping, the workers' outcomes, the
//! DynamoDB adapter's commit — never inside the service rules, so a rule never depends on them.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// The CloudWatch namespace every metric goes to.
pub const NAMESPACE: &str = "Loyalty";

/// Every metric the engine emits, each with the one dimension it is broken down by (if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric<'a> {
    /// Points credited by committed ledger entries, by the entry's source kind (`order`,
    /// `action`, `referral`, …).
    PointsIssued { source: &'a str },
    /// Points debited by committed ledger entries, by the entry's source kind (`redemption`, …).
    PointsRedeemed { source: &'a str },
    /// A redemption answered with an error, by its error code (`insufficient_points`, …).
    RedemptionRefused { code: &'a str },
    /// A keyed write answered from its stored response, by operation (`accrue`, `redeem`, …).
    IdempotentReplay { operation: &'a str },
    /// A transaction that lost a race (stale member, conflict, record taken); the service retries it.
    TransactionRetry,
    /// A transaction DynamoDB cancelled for a conflicting transaction or throttling.
    TransactionConflict,
    /// Members granted a campaign's points (committed campaign entries).
    CampaignMembersGranted,
    /// What billing one subscription did, by outcome (`renewed`, `past_due`, …).
    BillingOutcome { outcome: &'a str },
}

impl<'a> Metric<'a> {
    pub fn name(&self) -> &'static str {
        match self {
            Self::PointsIssued { .. } => "PointsIssued",
            Self::PointsRedeemed { .. } => "PointsRedeemed",
            Self::RedemptionRefused { .. } => "RedemptionsRefused",
            Self::IdempotentReplay { .. } => "IdempotentReplays",
            Self::TransactionRetry => "TransactionRetries",
            Self::TransactionConflict => "TransactionConflicts",
            Self::CampaignMembersGranted => "CampaignMembersGranted",
            Self::BillingOutcome { .. } => "BillingOutcomes",
        }
    }

    /// The dimension's name and this point's value of it.
    pub fn dimension(&self) -> Option<(&'static str, &'a str)> {
        match *self {
            Self::PointsIssued { source } | Self::PointsRedeemed { source } => {
                Some(("Source", source))
            }
            Self::RedemptionRefused { code } => Some(("Code", code)),
            Self::IdempotentReplay { operation } => Some(("Operation", operation)),
            Self::BillingOutcome { outcome } => Some(("Outcome", outcome)),
            Self::TransactionRetry | Self::TransactionConflict | Self::CampaignMembersGranted => {
                None
            }
        }
    }
}

/// The EMF line for `value` of `metric` observed at `at`. Every metric is a count (points are
/// counted too: CloudWatch has no currency unit, and points are integers).
pub fn line(metric: Metric<'_>, value: u64, at: SystemTime) -> String {
    let millis = at
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0);
    let dimensions: Vec<&str> = metric
        .dimension()
        .map(|(name, _)| name)
        .into_iter()
        .collect();
    let mut object = Map::new();
    object.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": millis,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions],
                "Metrics": [{ "Name": metric.name(), "Unit": "Count" }],
            }],
        }),
    );
    if let Some((name, value)) = metric.dimension() {
        object.insert(name.to_owned(), Value::from(value));
    }
    object.insert(metric.name().to_owned(), Value::from(value));
    Value::Object(object).to_string()
}

/// Writes one EMF line for `value` of `metric` to stdout, where Lambda's log capture (and the
/// local runner's output) picks it up. A zero is not written: it adds a log line and no
/// information (CloudWatch treats a missing point as no data, which the alarms allow for).
pub fn emit(metric: Metric<'_>, value: u64) {
    if value == 0 {
        return;
    }
    // The wall clock, not the app's injected clock: this stamps when the line was written, for
    // CloudWatch, and never enters a business decision.
    println!("{}", line(metric, value, SystemTime::now()));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parsed(metric: Metric<'_>, value: u64) -> Value {
        let at = UNIX_EPOCH + Duration::from_millis(1_764_450_000_123);
        let text = line(metric, value, at);
        assert!(!text.contains('\n'), "an EMF record is one log line");
        serde_json::from_str(&text).expect("an EMF line is a JSON object")
    }

    #[test]
    fn a_line_declares_its_metric_in_the_loyalty_namespace_with_its_dimension() {
        let line = parsed(Metric::PointsIssued { source: "order" }, 120);
        assert_eq!(
            line,
            json!({
                "_aws": {
                    "Timestamp": 1_764_450_000_123u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "Loyalty",
                        "Dimensions": [["Source"]],
                        "Metrics": [{ "Name": "PointsIssued", "Unit": "Count" }],
                    }],
                },
                "Source": "order",
                "PointsIssued": 120,
            })
        );
    }

    #[test]
    fn a_metric_without_a_dimension_declares_one_empty_dimension_set() {
        let line = parsed(Metric::TransactionConflict, 1);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Dimensions"], json!([[]]));
        assert_eq!(line["TransactionConflicts"], json!(1));
        assert_eq!(line.as_object().map(|o| o.len()), Some(2));
    }

    #[test]
    fn every_dimension_a_line_declares_is_a_member_of_the_line() {
        let metrics = [
            Metric::PointsIssued { source: "referral" },
            Metric::PointsRedeemed {
                source: "redemption",
            },
            Metric::RedemptionRefused {
                code: "insufficient_points",
            },
            Metric::IdempotentReplay {
                operation: "redeem",
            },
            Metric::TransactionRetry,
            Metric::TransactionConflict,
            Metric::CampaignMembersGranted,
            Metric::BillingOutcome { outcome: "renewed" },
        ];
        for metric in metrics {
            let line = parsed(metric, 3);
            let directive = &line["_aws"]["CloudWatchMetrics"][0];
            for set in directive["Dimensions"].as_array().into_iter().flatten() {
                for name in set.as_array().into_iter().flatten() {
                    let name = name.as_str().expect("a dimension name is a string");
                    assert!(line[name].is_string(), "{name} missing from {line}");
                }
            }
            for declared in directive["Metrics"].as_array().into_iter().flatten() {
                let name = declared["Name"].as_str().expect("a metric name");
                assert_eq!(line[name], json!(3), "{name} has no value in {line}");
            }
        }
    }

    #[test]
    fn a_dimension_value_with_quotes_stays_valid_json() {
        let line = parsed(
            Metric::RedemptionRefused {
                code: "odd\"code\n",
            },
            1,
        );
        assert_eq!(line["Code"], json!("odd\"code\n"));
    }
}
