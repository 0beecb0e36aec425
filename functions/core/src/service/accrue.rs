use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{missing_key, parse_body, to_json, App, Keyed, Movement, Outcome, Read};
use crate::commands::{AccrualRequest, ItemRequest, MAX_ITEMS, MAX_QUANTITY};
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::{fingerprint, IdempotencyScope, Operation};
use crate::ids::{IdempotencyKey, MemberId};
use crate::ledger::{BreakdownLine, EntryType, LedgerEntry, Source};
use crate::member::{Balance, Member};
use crate::money::MAX_MINOR;
use crate::pending::{release_day, PendingTierActivity};
use crate::ports::Store;
use crate::program::{
    evaluate_action, evaluate_purchase, forget_periods_before, ActiveProgram, PurchaseLine,
};
use crate::promotions::{best_promotion, record_use};
use crate::tiers::{multiplier_bonus, record, Measure};
use crate::Points;

/// Clocks disagree; an event stamped a little ahead of ours is not a lie.
const FUTURE_SKEW: Duration = Duration::minutes(5);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccrualReceipt {
    pub entry_id: String,
    pub member_id: MemberId,
    pub points: Points,
    pub breakdown: Vec<BreakdownLine>,
    pub balance: Balance,
    pub tier: String,
    pub program_version: u64,
    /// The day the points become spendable, when the program holds purchases' points pending
    /// for a return window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_until: Option<chrono::NaiveDate>,
}

/// What an accrual request earns, before it is applied to the member.
struct Priced {
    /// Eligible spend in minor units (zero for actions), for spend-based tiers.
    qualifying_spend: i64,
    /// The order's item lines (none for actions), for category-limited promotions.
    lines: Vec<PurchaseLine>,
    source: Source,
    reason: String,
    breakdown: Vec<BreakdownLine>,
    updated_counts: Option<(String, crate::program::ActionCounts)>,
}

pub(super) fn purchase_lines(
    program: &ActiveProgram,
    items: &[ItemRequest],
) -> Result<Vec<PurchaseLine>, ApiError> {
    if items.len() > MAX_ITEMS {
        return Err(ApiError::invalid(
            "items",
            format!("an order may carry at most {MAX_ITEMS} items"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = format!("items[{i}].amount");
            let unit = item
                .amount
                .positive(&field)?
                .in_currency(program.document.currency, &field)?;
            if !(1..=MAX_QUANTITY).contains(&item.quantity) {
                return Err(ApiError::invalid(
                    &format!("items[{i}].quantity"),
                    format!("quantity must be 1 to {MAX_QUANTITY}"),
                ));
            }
            let line_minor = unit
                .minor
                .checked_mul(i64::from(item.quantity))
                .filter(|line| *line <= MAX_MINOR)
                .ok_or_else(|| ApiError::invalid(&field, "amount × quantity is too large"))?;
            Ok(PurchaseLine {
                sku: item.sku.clone(),
                category: item.category.clone(),
                line_minor,
            })
        })
        .collect()
}

/// Refuses an `occurred_at` the program does not accept: older than its lateness window (the
/// counters that would judge it may be gone), or before the member enrolled, less the checkout
/// grace (a member earns for what they did as a member, including the order they enrolled on).
fn check_lateness(
    program: &ActiveProgram,
    member: &Member,
    occurred_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let document = &program.document;
    let oldest = now - document.late_window();
    let before_enrolment = member.enrolled_at - document.checkout_grace();
    if occurred_at >= oldest && occurred_at >= before_enrolment {
        return Ok(());
    }
    let message = if occurred_at < before_enrolment {
        "occurred_at is before the member enrolled".to_owned()
    } else {
        format!(
            "occurred_at is more than {} days ago",
            document.late_events_days
        )
    };
    Err(
        ApiError::new(ErrorCode::OccurredAtOutOfRange, message).with_details(serde_json::json!({
            "field": "occurred_at",
            "earliest_accepted": oldest.max(before_enrolment),
        })),
    )
}

fn price(
    program: &ActiveProgram,
    member: &Member,
    request: &AccrualRequest,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Priced, ApiError> {
    match request {
        AccrualRequest::Purchase {
            order_id,
            amount,
            items,
            ..
        } => {
            let amount = amount
                .positive("amount")?
                .in_currency(program.document.currency, "amount")?;
            let lines = purchase_lines(program, items)?;
            let breakdown = evaluate_purchase(
                &program.document.earning,
                program.document.currency,
                amount.minor,
                &lines,
            )?;
            let excluded: i64 = lines
                .iter()
                .filter(|l| {
                    program
                        .document
                        .earning
                        .excluded_categories
                        .contains(&l.category)
                })
                .map(|l| l.line_minor)
                .sum();
            Ok(Priced {
                qualifying_spend: amount.minor - excluded,
                lines,
                source: Source::Order {
                    order_id: order_id.clone(),
                    amount,
                    qualifying_minor: Some(amount.minor - excluded),
                },
                reason: format!("Purchase {order_id}"),
                breakdown,
                updated_counts: None,
            })
        }
        AccrualRequest::Action {
            action, reference, ..
        } => {
            let rule = program.action(action).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::UnknownAction,
                    format!("the program has no action '{action}'"),
                )
                .with_details(serde_json::json!({ "action": action }))
            })?;
            let counts = member
                .action_counts
                .get(action.as_str())
                .cloned()
                .unwrap_or_default();
            let (line, mut counts) = evaluate_action(rule, &counts, at)?;
            if let Some(cap) = rule.cap {
                forget_periods_before(&mut counts, cap.per, now - program.document.late_window());
            }
            Ok(Priced {
                qualifying_spend: 0,
                lines: Vec::new(),
                source: Source::Action {
                    action: action.clone(),
                    reference: reference.clone(),
                },
                reason: rule.description.clone(),
                breakdown: vec![line],
                updated_counts: Some((action.as_str().to_owned(), counts)),
            })
        }
    }
}

impl<S: Store> App<S> {
    /// Records a purchase or an action. Keyed by `Idempotency-Key` for retries and by the order
    /// id (or action reference) for the business rule "an order earns once".
    pub async fn accrue(
        &self,
        member_id: &MemberId,
        key: Option<IdempotencyKey>,
        body: &Value,
        dry_run: bool,
    ) -> Result<Outcome, ApiError> {
        let request: AccrualRequest = parse_body(body)?;
        let scope = match (key, dry_run) {
            (Some(key), _) => Some(IdempotencyScope {
                operation: Operation::Accrual,
                key,
            }),
            (None, true) => None,
            (None, false) => return Err(missing_key("accruals need")),
        };
        let now = self.now();
        let occurred_at = request.occurred_at().unwrap_or(now);
        if occurred_at > now + FUTURE_SKEW {
            return Err(ApiError::invalid(
                "occurred_at",
                "occurred_at is in the future",
            ));
        }
        let fingerprint = fingerprint(Operation::Accrual, body);
        let keyed = Keyed {
            member_id,
            scope: scope.as_ref().filter(|_| !dry_run),
            fingerprint: &fingerprint,
        };
        // The tier change and a referee's first qualifying purchase are written with the entry;
        // the stream consumer announces them (`tier.changed`, the referral message).
        let (outcome, _) = self
            .keyed_movement(keyed, |read| {
                self.accrual_rules(read, &request, occurred_at, now)
            })
            .await?;
        Ok(outcome)
    }

    /// An accrual's rules: what the request earns this member now (spend or action rules, the
    /// best live promotion, the tier and plan multipliers), and the member after it.
    async fn accrual_rules(
        &self,
        read: Read,
        request: &AccrualRequest,
        occurred_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Movement<()>, ApiError> {
        let Read {
            member,
            program_stamp,
        } = read;
        let member_id = &member.member_id;
        let program = self.program_at_least(program_stamp).await?;
        check_lateness(&program, &member, occurred_at, now)?;
        let priced = price(&program, &member, request, occurred_at, now)?;
        let tiers = &program.document.tiers;
        let mut breakdown = priced.breakdown;
        let activity: Points = breakdown.iter().map(|line| line.points).sum();
        // Promotions live at the purchase's own time apply, from this environment's copy
        // of the promotion list (no read per request); the single best one wins.
        let mut promotion_used = None;
        if let Source::Order { .. } = &priced.source {
            let known = program_stamp.unwrap_or(0).max(program.version);
            let promotions = self.promotions(known).await?;
            if let Some((promotion, line)) = best_promotion(
                &promotions,
                &program.document.earning,
                &priced.lines,
                activity,
                &member.tier,
                &member.promotion_uses,
                occurred_at,
            ) {
                breakdown.push(line);
                promotion_used = Some(promotion);
            }
        }
        // The tier multiplier rewards spend; actions earn their fixed amounts.
        if let (Source::Order { .. }, Some(level)) = (&priced.source, tiers.level(&member.tier)) {
            let bonus = multiplier_bonus(activity, level.earn_multiplier_percent);
            if bonus > 0 {
                breakdown.push(BreakdownLine {
                    rule: format!("tier_multiplier:{}", level.tier_id),
                    description: format!(
                        "{} members earn {}% on spend",
                        level.name, level.earn_multiplier_percent
                    ),
                    points: bonus,
                });
            }
        }
        // A paid plan's multiplier, like the tier's, rewards spend only.
        if let Source::Order { .. } = &priced.source {
            breakdown.extend(crate::subscriptions::plan_multiplier_line(
                &program,
                &member,
                activity,
                occurred_at,
            ));
        }
        let points: Points = breakdown.iter().map(|line| line.points).sum();

        let qualifying = match tiers.measure {
            Measure::Spend => priced.qualifying_spend,
            Measure::Points => activity,
        };
        // A purchase inside a return window earns pending points; actions earn at once, and so
        // does a purchase reported after its window has passed (a day already released must
        // not get a new lot).
        let earning = &program.document.earning;
        let release_on = match &priced.source {
            Source::Order { .. } if earning.pending_days > 0 => {
                Some(release_day(occurred_at, now, earning.pending_days))
                    .filter(|day| *day > now.date_naive())
            }
            _ => None,
        };
        let counts_on_release =
            release_on.is_some() && earning.pending_tier_activity == PendingTierActivity::OnRelease;
        let (mut next, pending) = match release_on {
            Some(day) => member.with_pending_earned(
                points,
                day,
                if counts_on_release { qualifying } else { 0 },
            )?,
            None => {
                let dating = program.document.expiry.dating(now);
                (member.with_entry(EntryType::Earn, points, &dating)?, None)
            }
        };
        if let Some((action, counts)) = priced.updated_counts {
            next.action_counts.insert(action, counts);
        }
        if let Some(promotion) = &promotion_used {
            record_use(
                &mut next.promotion_uses,
                promotion,
                now,
                program.document.late_window(),
            )?;
        }
        // An event stamped a little ahead of our clock counts today: a day that has not
        // begun here is outside every window the upgrade below looks at, and nothing
        // would look again for a member with no review date. Activity that counts on release
        // is recorded by the daily run that releases it.
        if !counts_on_release {
            record(
                &mut next.qualifying,
                occurred_at.min(now).date_naive(),
                qualifying,
                now.date_naive(),
            )?;
        }
        // A referee's first qualifying purchase is marked in this same write; the stream
        // consumer sees the mark appear and hands the referral to the referral worker.
        crate::referrals::mark_first_purchase(
            &mut next,
            &program.document.referrals,
            &priced.source,
            occurred_at,
            now,
            program.document.checkout_grace(),
        );
        let tier_change = next.upgrade_in_write(tiers, (&member.tier, &member.tier_state), now);
        let entry = LedgerEntry {
            entry_id: priced.source.entry_id(),
            seq: next.last_seq,
            member_id: member_id.clone(),
            entry_type: EntryType::Earn,
            points,
            balance_after: next.balance.available,
            reason: priced.reason,
            breakdown,
            source: priced.source,
            program_version: program.version,
            occurred_at,
            recorded_at: now,
            lots: Vec::new(),
            pending,
        };
        let response = to_json(&AccrualReceipt {
            entry_id: entry.entry_id.clone(),
            member_id: member_id.clone(),
            points,
            breakdown: entry.breakdown.clone(),
            balance: next.balance,
            tier: next.tier.clone(),
            program_version: program.version,
            pending_until: pending.map(|p| p.release_on),
        })?;
        let duplicate = match &entry.source {
            Source::Action { .. } => ApiError::new(
                ErrorCode::DuplicateAction,
                "this action reference has already earned",
            ),
            _ => ApiError::new(
                ErrorCode::DuplicateOrder,
                "this order has already earned points",
            ),
        }
        .with_details(serde_json::json!({ "entry_id": entry.entry_id }));
        Ok(Movement {
            member: next,
            entry,
            stock: None,
            tier_change,
            records: Vec::new(),
            others: Vec::new(),
            response,
            status: 201,
            duplicate,
            effects: (),
        })
    }
}
