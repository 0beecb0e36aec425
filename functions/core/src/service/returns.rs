//! Returns: goods of an order brought back take back what the order earned on them, line by line
//! at the rates it earned them, pro rata to the money returned. Each order keeps one small record
//! of what its returns took back so far (read by key, written under its version in the return's
//! transaction), so the returns of one order together take back exactly what it earned, never
//! more, however the money is split between them.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::accrue::purchase_lines;
use super::{missing_key, parse_body, to_json, App, Movement, Outcome, Read};
use crate::commands::ItemRequest;
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::Operation;
use crate::ids::{IdempotencyKey, MemberId, OrderId, ReturnId};
use crate::ledger::{BreakdownLine, EntryType, LedgerEntry, Source};
use crate::member::Balance;
use crate::member::Member;
use crate::money::Money;
use crate::pending::{PendingLot, PendingTierActivity};
use crate::ports::{Commit, Expect, Record, RecordWrite, Store};
use crate::program::ReturnPolicy;
use crate::referrals::{
    referral_id, OnFullReturn, Referral, ReferralStatus, KIND as REFERRAL_KIND,
};
use crate::tiers::{take_back, Measure};
use crate::Points;

/// The record kind of an order's returns so far.
pub const ORDER_RETURNS_KIND: &str = "order_returns";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnRequest {
    pub order_id: OrderId,
    /// The merchant's id of this return; a return is recorded once per order and return id.
    pub return_id: ReturnId,
    #[serde(default)]
    pub amount: Option<Money>,
    #[serde(default)]
    pub items: Option<Vec<ItemRequest>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReturnReceipt {
    pub entry_id: String,
    /// What was taken back: zero or less.
    pub points: Points,
    pub breakdown: Vec<BreakdownLine>,
    pub balance: Balance,
}

/// What an order's returns have taken back so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderReturns {
    pub member_id: String,
    pub order_id: String,
    /// Money returned so far, in minor units of the order's currency.
    pub returned_minor: i64,
    /// Per line of the order's earning entry (same order), the points taken back so far.
    pub taken_back: Vec<Points>,
    /// Qualifying activity (spend or points, as the tiers measure it) taken back so far.
    #[serde(default)]
    pub qualifying_taken: i64,
}

fn returns_record_id(member: &MemberId, order: &OrderId) -> String {
    format!("{member}/{order}")
}

/// Each earned line's share of everything returned so far, less what earlier returns took: the
/// cumulative share is truncated towards zero, so it never exceeds the line, and once the whole
/// order is back it is the line exactly.
pub fn reversal(
    earned: &[Points],
    taken_before: &[Points],
    returned_total: i64,
    order_minor: i64,
) -> Vec<Points> {
    earned
        .iter()
        .enumerate()
        .map(|(i, &line)| {
            let share = if order_minor <= 0 || returned_total >= order_minor {
                line
            } else {
                // i128: points × minor units cannot overflow here.
                (i128::from(line) * i128::from(returned_total) / i128::from(order_minor)) as Points
            };
            share - taken_before.get(i).copied().unwrap_or(0)
        })
        .collect()
}

/// Lines that measure activity (not the promotion, tier or plan extras on top of it).
fn is_activity(rule: &str) -> bool {
    rule == "base_rate" || rule.starts_with("category_multiplier:")
}

fn order_not_found(order: &OrderId) -> ApiError {
    ApiError::new(
        ErrorCode::OrderNotFound,
        format!("this member has no order '{order}' that earned points"),
    )
    .with_details(json!({ "order_id": order }))
}

impl<S: Store> App<S> {
    /// `POST /v1/members/{id}/returns`.
    pub async fn return_order(
        &self,
        member_id: &MemberId,
        key: Option<IdempotencyKey>,
        body: &Value,
    ) -> Result<Outcome, ApiError> {
        let request: ReturnRequest = parse_body(body)?;
        if request.amount.is_some() && request.items.is_some() {
            return Err(ApiError::invalid(
                "amount",
                "send amount or items, not both",
            ));
        }
        let key = key.ok_or_else(|| missing_key("returns need"))?;
        let order_entry = Source::order_entry_id(&request.order_id);
        self.keyed_request(member_id, Operation::Return, key, body, |read| {
            self.return_rules(read, &request, &order_entry)
        })
        .await
    }

    async fn return_rules(
        &self,
        read: Read,
        request: &ReturnRequest,
        order_entry: &str,
    ) -> Result<Movement<()>, ApiError> {
        let Read {
            member,
            program_stamp,
        } = read;
        let member_id = &member.member_id;
        let record_id = returns_record_id(member_id, &request.order_id);
        let (earned, returns, program) = tokio::join!(
            self.store().entry(member_id, order_entry),
            self.store().record(ORDER_RETURNS_KIND, &record_id),
            self.program_at_least(program_stamp),
        );
        let (earned, returns, program) = (earned?, returns?, program?);
        let earned = earned.ok_or_else(|| order_not_found(&request.order_id))?;
        let Source::Order {
            amount: paid,
            qualifying_minor,
            ..
        } = &earned.source
        else {
            return Err(order_not_found(&request.order_id));
        };
        let (so_far, version) = match &returns {
            Some(record) => (record.parse::<OrderReturns>()?, Some(record.version)),
            None => (OrderReturns::default(), None),
        };
        let left = paid.minor - so_far.returned_minor;
        let returned_now = match (&request.amount, &request.items) {
            (Some(amount), _) => {
                amount
                    .positive("amount")?
                    .in_currency(paid.currency, "amount")?
                    .minor
            }
            (None, Some(items)) => purchase_lines(&program, items)?
                .iter()
                .map(|l| l.line_minor)
                .sum::<i64>(),
            (None, None) => left,
        };
        if returned_now <= 0 || returned_now > left {
            return Err(ApiError::new(
                ErrorCode::ReturnExceedsOrder,
                format!(
                    "the order was {} minor units and {} are already returned",
                    paid.minor, so_far.returned_minor
                ),
            )
            .with_details(json!({
                "order_id": request.order_id,
                "order_amount": paid,
                "returned_minor": so_far.returned_minor,
            })));
        }
        let returned_total = so_far.returned_minor + returned_now;
        let earned_points: Vec<Points> = earned.breakdown.iter().map(|l| l.points).collect();
        let reversed = reversal(
            &earned_points,
            &so_far.taken_back,
            returned_total,
            paid.minor,
        );
        let mut breakdown: Vec<BreakdownLine> = earned
            .breakdown
            .iter()
            .zip(&reversed)
            .filter(|(_, points)| **points != 0)
            .map(|(line, points)| BreakdownLine {
                rule: line.rule.clone(),
                description: format!("Returned: {}", line.description),
                points: -points,
            })
            .collect();
        let mut wanted: Points = -reversed.iter().sum::<Points>();
        // An order still inside its return window gives back from its pending lot first: those
        // points were never spendable, so no policy is needed for them.
        let pending_lot = earned
            .pending
            .filter(|moved| moved.points > 0)
            .and_then(|moved| Some((moved.release_on, member.pending_lots.lot(moved.release_on)?)));
        let from_pending = pending_lot.map_or(0, |(_, lot)| lot.points.min(-wanted));
        wanted += from_pending;
        let policy = program.document.return_policy;
        let now = self.now();
        let dating = program.document.expiry.dating(now);
        // A referral the order qualified follows the program's policy once all of it is back.
        let clawback = if returned_total == paid.minor
            && program.document.referrals.on_full_return == OnFullReturn::ClawBack
        {
            self.referral_clawback(
                &member,
                &request.order_id,
                policy,
                program.version,
                now,
                &dating,
            )
            .await?
        } else {
            None
        };
        if let Some(clawback) = &clawback {
            wanted += clawback.referee_line.points;
            breakdown.push(clawback.referee_line.clone());
        }
        let available = member.balance.available;
        let from_available = policy.take_back(wanted, available).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InsufficientPoints,
                format!(
                    "the return takes back {} points; {available} available and the program's return policy is reject",
                    -wanted
                ),
            )
            .with_details(json!({ "available": available, "required": -wanted }))
        })?;
        if from_available != wanted {
            breakdown.push(BreakdownLine {
                rule: "return_policy:cap_at_balance".into(),
                description: "Points already spent are not taken back".into(),
                points: from_available - wanted,
            });
        }
        debug_assert!(matches!(policy, ReturnPolicy::CapAtBalance) || from_available == wanted);
        let points = from_available - from_pending;
        // The order's qualifying activity is taken back, pro rata like its points, on the day
        // it counted, so a returned order cannot keep the tier it bought; a downgrade still
        // waits for the review.
        let counted = match program.document.tiers.measure {
            Measure::Spend => qualifying_minor.unwrap_or(paid.minor),
            Measure::Points => earned
                .breakdown
                .iter()
                .filter(|line| is_activity(&line.rule))
                .map(|line| line.points)
                .sum(),
        };
        let qualifying = reversal(
            &[counted],
            &[so_far.qualifying_taken],
            returned_total,
            paid.minor,
        )[0];
        // Activity that counts on release is still in the pending lot (taken from there) or was
        // recorded on the day it was released.
        let counts_on_release = earned.pending.is_some()
            && program.document.earning.pending_tier_activity == PendingTierActivity::OnRelease;
        let taken_from_lot = pending_lot.map(|(day, lot)| {
            let qualifying = if counts_on_release {
                lot.qualifying.min(qualifying)
            } else {
                0
            };
            (
                day,
                PendingLot {
                    points: from_pending,
                    qualifying,
                },
            )
        });
        let (mut next, pending) =
            member.with_reversed_from_pending(points, taken_from_lot, &dating)?;
        let counted_on = match (counts_on_release, earned.pending) {
            (true, Some(moved)) => moved.release_on,
            _ => earned.occurred_at.min(earned.recorded_at).date_naive(),
        };
        take_back(
            &mut next.qualifying,
            counted_on,
            qualifying - taken_from_lot.map_or(0, |(_, lot)| lot.qualifying),
        );
        let source = Source::Return {
            order_id: request.order_id.clone(),
            return_id: request.return_id.as_str().to_owned(),
            amount: Money {
                minor: returned_now,
                currency: paid.currency,
            },
        };
        let entry = LedgerEntry {
            entry_id: source.entry_id(),
            seq: next.last_seq,
            member_id: member_id.clone(),
            entry_type: EntryType::Reverse,
            points,
            balance_after: next.balance.available,
            reason: format!("Return {} of order {}", request.return_id, request.order_id),
            breakdown,
            source,
            program_version: program.version,
            occurred_at: now,
            recorded_at: now,
            lots: next.lots_taken(&member),
            pending,
        };
        let response = to_json(&ReturnReceipt {
            entry_id: entry.entry_id.clone(),
            points,
            breakdown: entry.breakdown.clone(),
            balance: next.balance,
        })?;
        let taken_back = earned_points
            .iter()
            .enumerate()
            .map(|(i, _)| so_far.taken_back.get(i).copied().unwrap_or(0) + reversed[i])
            .collect();
        let after = OrderReturns {
            member_id: member_id.as_str().to_owned(),
            order_id: request.order_id.as_str().to_owned(),
            returned_minor: returned_total,
            taken_back,
            qualifying_taken: so_far.qualifying_taken + qualifying,
        };
        let record = RecordWrite {
            record: Record {
                kind: ORDER_RETURNS_KIND.to_owned(),
                id: record_id,
                owner: Some(member_id.as_str().to_owned()),
                version: version.map_or(1, |v| v + 1),
                due: None,
                body: to_json(&after)?,
            },
            expect: version.map_or(Expect::Absent, Expect::Version),
        };
        let (others, mut records) = match clawback {
            Some(clawback) => (vec![clawback.referrer], vec![clawback.referral]),
            None => (Vec::new(), Vec::new()),
        };
        records.push(record);
        Ok(Movement {
            member: next,
            entry,
            stock: None,
            tier_change: None,
            records,
            others,
            response,
            status: 201,
            duplicate: ApiError::new(
                ErrorCode::DuplicateReturn,
                format!(
                    "return '{}' of order '{}' is already recorded",
                    request.return_id, request.order_id
                ),
            )
            .with_details(json!({ "order_id": request.order_id, "return_id": request.return_id })),
            effects: (),
        })
    }
}

/// A referral's bonuses taken back because its qualifying order came back in full.
struct Clawback {
    /// The referee's share, a line of the return's own entry.
    referee_line: BreakdownLine,
    /// The referrer's `reverse` entry.
    referrer: Commit,
    /// The referral, marked clawed back under its version: it happens once.
    referral: RecordWrite,
}

impl<S: Store> App<S> {
    /// The claw-back of the referral `order` qualified for `referee`, if it was rewarded on that
    /// order and not clawed back yet. The referrer did nothing wrong: under `reject` their share
    /// is capped at their balance rather than refusing the referee's return.
    async fn referral_clawback(
        &self,
        referee: &Member,
        order: &OrderId,
        policy: ReturnPolicy,
        program_version: u64,
        now: chrono::DateTime<chrono::Utc>,
        dating: &crate::expiry::Dating,
    ) -> Result<Option<Clawback>, ApiError> {
        let id = referral_id(&referee.member_id, referee.enrolled_at);
        let Some(record) = self.store().record(REFERRAL_KIND, &id).await? else {
            return Ok(None);
        };
        let mut referral: Referral = record.parse()?;
        if referral.status != ReferralStatus::Rewarded
            || referral.order_id.as_ref() != Some(order)
            || referral.clawed_back_at.is_some()
            || referral.referrer_id == referee.member_id
        {
            return Ok(None);
        }
        let Some(referrer) = self.store().member(&referral.referrer_id).await? else {
            return Ok(None);
        };
        let referrer_policy = match policy {
            ReturnPolicy::Reject => ReturnPolicy::CapAtBalance,
            other => other,
        };
        let taken = referrer_policy
            .take_back(-referral.referrer_points, referrer.balance.available)
            .unwrap_or(0);
        let next = referrer.with_entry(EntryType::Reverse, taken, dating)?;
        let source = Source::Referral {
            referral_id: id.clone(),
            role: "referrer_returned".into(),
        };
        let reason = format!("Referral bonus taken back: order {order} was returned");
        let entry = LedgerEntry {
            entry_id: source.entry_id(),
            seq: next.last_seq,
            member_id: referrer.member_id.clone(),
            entry_type: EntryType::Reverse,
            points: taken,
            balance_after: next.balance.available,
            reason: reason.clone(),
            breakdown: vec![BreakdownLine {
                rule: format!("referral:{id}:referrer"),
                description: reason,
                points: taken,
            }],
            source,
            program_version,
            occurred_at: now,
            recorded_at: now,
            lots: next.lots_taken(&referrer),
            pending: None,
        };
        let referrer_commit = Commit {
            member: next,
            expected_version: Some(referrer.version),
            entry: Some(entry),
            idempotency: None,
            claim_referral_code: false,
            stock: None,
            tier_change: None,
        };
        referral.clawed_back_at = Some(now);
        let write = RecordWrite {
            record: Record {
                version: record.version + 1,
                body: to_json(&referral)?,
                ..record.clone()
            },
            expect: Expect::Version(record.version),
        };
        Ok(Some(Clawback {
            referee_line: BreakdownLine {
                rule: format!("referral:{id}:referee"),
                description: format!("Referral bonus: order {order} was returned"),
                points: -referral.referee_points,
            },
            referrer: referrer_commit,
            referral: write,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(earned: &[Points], splits: &[i64], order: i64) -> Vec<Points> {
        let mut taken = vec![0; earned.len()];
        let mut returned = 0;
        for split in splits {
            returned += split;
            let now = reversal(earned, &taken, returned, order);
            for (t, n) in taken.iter_mut().zip(now) {
                assert!(n >= 0, "a return never gives points");
                *t += n;
            }
            for (t, e) in taken.iter().zip(earned) {
                assert!(t <= e, "never more than the line earned");
            }
        }
        taken
    }

    #[test]
    fn returns_of_one_order_together_take_back_exactly_what_it_earned() {
        let earned = [333, 77, 41];
        assert_eq!(apply(&earned, &[1, 1, 1], 3), earned.to_vec());
        assert_eq!(apply(&earned, &[999, 1], 1000), earned.to_vec());
        assert_eq!(apply(&earned, &[7; 13], 91), earned.to_vec());
    }

    #[test]
    fn a_partial_return_takes_back_its_share_rounded_down() {
        assert_eq!(apply(&[100, 25], &[50], 200), vec![25, 6]);
        assert_eq!(apply(&[3], &[1], 3), vec![1]);
    }

    #[test]
    fn policies_take_back_what_they_allow() {
        assert_eq!(ReturnPolicy::AllowNegative.take_back(-50, 20), Some(-50));
        assert_eq!(ReturnPolicy::CapAtBalance.take_back(-50, 20), Some(-20));
        assert_eq!(ReturnPolicy::CapAtBalance.take_back(-50, -5), Some(0));
        assert_eq!(ReturnPolicy::Reject.take_back(-50, 20), None);
        assert_eq!(ReturnPolicy::Reject.take_back(-20, 20), Some(-20));
    }
}
