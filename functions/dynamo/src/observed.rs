//! What a transaction's outcome adds to the metrics (CloudWatch EMF lines, see
//! `loyalty_metrics`): the adapter is where a movement is known to be committed, whatever use
//! case or worker asked for it, so points are counted here rather than in each service rule.

use std::collections::BTreeMap;

use loyalty_core::ledger::Source;
use loyalty_core::ports::{Commit, CommitError};
use loyalty_core::Points;
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

/// The source kind of an entry (`order`, `redemption`, …), as the entry serialises it: a new
/// kind of source is counted under its own name without this module knowing it.
fn source_kind(source: &Source) -> String {
    serde_json::to_value(source)
        .ok()
        .and_then(|value| value.get("kind")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn tally(commits: &[Commit]) -> Tally {
    tally_movements(
        commits
            .iter()
            .filter_map(|commit| commit.entry.as_ref())
            .map(|entry| (source_kind(&entry.source), entry.points)),
    )
}

/// Credits and debits by source kind; a campaign entry is one member granted.
fn tally_movements(movements: impl IntoIterator<Item = (String, Points)>) -> Tally {
    let mut tally = Tally::default();
    for (kind, points) in movements {
        if kind == "campaign" {
            tally.campaign_members += 1;
        }
        let side = if points >= 0 {
            &mut tally.issued
        } else {
            &mut tally.redeemed
        };
        *side.entry(kind).or_default() += points.unsigned_abs();
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_and_debits_are_summed_by_source_kind() {
        let tally = tally_movements([
            ("order".to_owned(), 120),
            ("redemption".to_owned(), -50),
            ("order".to_owned(), 30),
            ("campaign".to_owned(), 10),
            ("campaign".to_owned(), 10),
        ]);
        assert_eq!(
            tally.issued,
            BTreeMap::from([("campaign".to_owned(), 20), ("order".to_owned(), 150)])
        );
        assert_eq!(
            tally.redeemed,
            BTreeMap::from([("redemption".to_owned(), 50)])
        );
        assert_eq!(tally.campaign_members, 2);
    }

    #[test]
    fn a_source_is_counted_under_the_kind_it_serialises_as() {
        let campaign = Source::Campaign {
            campaign_id: "spring".to_owned(),
        };
        assert_eq!(source_kind(&campaign), "campaign");
        assert_eq!(source_kind(&Source::Enrolment), "enrolment");
    }
}
