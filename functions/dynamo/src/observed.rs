//! What a transaction's outcome adds to the metrics (CloudWatch EMF lines, see
//! `loyalty_metrics`): the adapter is where a movement is known to be committed, whatever use
//! case or worker asked for it, so points are counted here rather than in each service rule.

use std::collections::BTreeMap;

use loyalty_core::ports::{Commit, CommitError};
use loyalty_metrics::{self as metrics, Metric};

/// Points credited and debited by `commits`, by source kind, and the campaign members granted.
/// Only called once the transaction has committed: a refused or retried one moved nothing.
pub(crate) fn committed(commits: &[Commit]) {
    let tally = tally(commits);
    for (source, points) in &tally.issued {
        metrics::emit(Metric::PointsIssued { source }, *points);
    }
    for (source, points) in &tally.redeemed {
        metrics::emit(Metric::PointsRedeemed { source }, *points);
    }
    metrics::emit(Metric::CampaignMembersGranted, tally.campaign_members);
}

/// A transaction that lost a race; the service retries it (up to its attempt limit).
pub(crate) fn refused(error: &CommitError) {
    match error {
        CommitError::Conflict => {
            metrics::emit(Metric::TransactionConflict, 1);
            metrics::emit(Metric::TransactionRetry, 1);
        }
        CommitError::StaleMember => metrics::emit(Metric::TransactionRetry, 1),
        _ => {}
    }
}

#[derive(Debug, Default, PartialEq)]
struct Tally {
    issued: BTreeMap<String, u64>,
    redeemed: BTreeMap<String, u64>,
    campaign_members: u64,
}

fn tally(commits: &[Commit]) -> Tally {
    let mut tally = Tally::default();
    for entry in commits.iter().filter_map(|commit| commit.entry.as_ref()) {
        // The source's serialised `kind` (`order`, `redemption`, …): a new kind of source is
        // counted under its own name without this module knowing it.
        let kind = serde_json::to_value(&entry.source)
            .ok()
            .and_then(|source| source.get("kind")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned());
        if kind == "campaign" {
            tally.campaign_members += 1;
        }
        let side = if entry.points >= 0 {
            &mut tally.issued
        } else {
            &mut tally.redeemed
        };
        *side.entry(kind).or_default() += entry.points.unsigned_abs();
    }
    tally
}
