//! The workload: a list of steps drawn from one seeded PRNG before the run starts, so that a run
//! can be replayed, cut short and shrunk. Each abuse pattern of the edges issue has its own
//! switch.

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::faults::QueueName;
use crate::ops::{Action, Item, Op, Purchase};

/// The abuse patterns of issue 12. A pattern whose fix has not landed stays off, so that the
/// simulator stays green while still checking everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Abuse {
    /// Backdated actions and purchases (into old cap periods, ended promotions, before
    /// enrolment, beyond the late-events window).
    pub late_events: bool,
    /// Promotions created with a window that is already over.
    pub ended_promotions: bool,
    /// One order id sent for two members.
    pub shared_orders: bool,
    /// A referee's first purchase stamped with the second they enrolled in.
    pub checkout_referral: bool,
    /// A reward redeemed, and a promotion used, through another environment right after it
    /// was created.
    pub fresh_catalog: bool,
    /// Faults on admin creates (lost responses), retried by the admin.
    pub retried_creates: bool,
}

impl Abuse {
    /// What every run generates: every pattern of issue 12 (`fresh_catalog` was off until a
    /// promotion create retried after a lost reply announced itself again: `ABUSE=all SEED=53`).
    pub const DEFAULT: Abuse = Abuse {
        late_events: true,
        ended_promotions: true,
        shared_orders: true,
        checkout_referral: true,
        fresh_catalog: true,
        retried_creates: true,
    };

    pub const ALL: Abuse = Abuse {
        late_events: true,
        ended_promotions: true,
        shared_orders: true,
        checkout_referral: true,
        fresh_catalog: true,
        retried_creates: true,
    };

    /// Parses a comma-separated list of switch names (`all` for every one, `none` for none).
    pub fn parse(list: &str) -> Result<Abuse, String> {
        let mut abuse = Abuse::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "all" => abuse = Abuse::ALL,
                "none" => abuse = Abuse::default(),
                "late_events" => abuse.late_events = true,
                "ended_promotions" => abuse.ended_promotions = true,
                "shared_orders" => abuse.shared_orders = true,
                "checkout_referral" => abuse.checkout_referral = true,
                "fresh_catalog" => abuse.fresh_catalog = true,
                "retried_creates" => abuse.retried_creates = true,
                other => return Err(format!("unknown abuse switch '{other}'")),
            }
        }
        Ok(abuse)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Requests that arrive together, each to an environment.
    Batch(Vec<(usize, Op)>),
    /// An admin or scheduled call, alone; caches are aged after it unless `fresh_catalog`.
    Admin(usize, Op),
    /// The clock moves.
    Jump(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub steps: usize,
    pub max_batch: usize,
    pub environments: usize,
}

const CATEGORIES: [&str; 7] = [
    "coffee",
    "bakery",
    "merch",
    "gift_card",
    "books",
    "tax",
    "produce",
];
const ACTIONS: [&str; 4] = [
    "review",
    "social_share",
    "profile_completed",
    "event_attended",
];
const REWARDS: [&str; 6] = [
    "free-coffee",
    "five-off",
    "ten-percent-off",
    "free-shipping",
    "tote-bag",
    "tasting-evening",
];

/// The start of a run: a day in 2027 or 2028 (a leap year), at an instant with milliseconds.
pub fn start_time(seed: u64) -> DateTime<Utc> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x57a7);
    let day = rng.random_range(0..730);
    let base = Utc
        .with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date");
    base + Duration::days(day)
        + Duration::seconds(rng.random_range(0..86_400))
        + Duration::milliseconds(rng.random_range(0..1000))
}

struct Gen {
    rng: ChaCha8Rng,
    abuse: Abuse,
    shape: Shape,
    now: DateTime<Utc>,
    members: Vec<String>,
    emails: Vec<Option<String>>,
    enrolled_at: Vec<DateTime<Utc>>,
    purchases: Vec<Purchase>,
    actions: Vec<Action>,
    rewards: Vec<String>,
    created_rewards: Vec<(String, DateTime<Utc>)>,
    next_id: u64,
}

impl Gen {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.random_range(0..100) < percent
    }

    fn member(&mut self) -> Option<String> {
        self.members.choose(&mut self.rng).cloned()
    }

    fn env(&mut self) -> usize {
        self.rng.random_range(0..self.shape.environments.max(1))
    }

    fn enrol(&mut self) -> Op {
        let member = format!("m{}", self.members.len() + 1);
        let referrer = (!self.members.is_empty() && self.chance(45))
            .then(|| self.rng.random_range(0..self.members.len()));
        let email = if let Some(r) = referrer.filter(|_| self.chance(15)) {
            // A self-referral: the referrer's own address, dressed up.
            self.emails[r]
                .as_ref()
                .map(|e| e.replacen('@', "+again@", 1))
        } else {
            Some(format!("{member}@example.com"))
        };
        self.members.push(member.clone());
        self.emails.push(email.clone());
        self.enrolled_at.push(self.now);
        Op::Enrol {
            member,
            referrer: referrer.map(|r| self.members[r].clone()),
            email,
        }
    }

    fn items(&mut self, amount: i64) -> Vec<Item> {
        let mut left = amount;
        let mut items = Vec::new();
        for _ in 0..self.rng.random_range(0..4) {
            if left < 100 {
                break;
            }
            let quantity = self.rng.random_range(1..4u32);
            let unit = self
                .rng
                .random_range(50..=(left / i64::from(quantity)).max(50));
            if unit * i64::from(quantity) > left {
                break;
            }
            left -= unit * i64::from(quantity);
            let category = CATEGORIES.choose(&mut self.rng).copied().unwrap_or("books");
            items.push(Item {
                sku: format!("SKU-{}", self.rng.random_range(1..50)),
                category: category.to_owned(),
                unit_minor: unit,
                quantity,
            });
        }
        items
    }

    fn late(&mut self) -> Option<DateTime<Utc>> {
        if self.abuse.late_events && self.chance(25) {
            let back = match self.rng.random_range(0..4) {
                0 => Duration::minutes(self.rng.random_range(1..600)),
                1 => Duration::days(self.rng.random_range(1..29)),
                2 => Duration::days(self.rng.random_range(29..45)),
                _ => Duration::days(self.rng.random_range(300..900)),
            };
            Some(self.now - back)
        } else if self.chance(3) {
            // Ahead of the clock: a few seconds is skew, ten minutes is refused.
            Some(self.now + Duration::seconds(*[5, 600].choose(&mut self.rng).unwrap_or(&5)))
        } else {
            None
        }
    }

    /// A request sent again later keeps its own time only when late events are on: otherwise a
    /// retry of a refused, future-dated request would arrive as a late one.
    fn again<T: Clone>(&mut self, pool: &[T], clear: impl Fn(&mut T)) -> Option<T> {
        let mut copy = pool.choose(&mut self.rng).cloned()?;
        if !self.abuse.late_events {
            clear(&mut copy);
        }
        Some(copy)
    }

    fn purchase(&mut self) -> Option<Op> {
        let roll = self.rng.random_range(0..100);
        let purchases = self.purchases.clone();
        let clear = |p: &mut Purchase| {
            if p.occurred_at.is_some() {
                p.occurred_at = None;
            }
        };
        if roll < 8 && !self.purchases.is_empty() {
            // The same request again, same key: a client retry.
            return self.again(&purchases, clear).map(Op::Purchase);
        }
        if roll < 13 && !self.purchases.is_empty() {
            // The same order under a new key.
            let mut again = self.again(&purchases, clear)?;
            again.key = self.id("k");
            return Some(Op::Purchase(again));
        }
        if roll < 16 && !self.purchases.is_empty() {
            // The same key with another body.
            let mut other = self.again(&purchases, clear)?;
            other.amount_minor += 100;
            return Some(Op::Purchase(other));
        }
        if roll < 21 && self.abuse.shared_orders && !self.purchases.is_empty() {
            let mut shared = self.again(&purchases, clear)?;
            shared.member = self.member()?;
            shared.key = self.id("k");
            return Some(Op::Purchase(shared));
        }
        let member = self.member()?;
        let index = self.members.iter().position(|m| *m == member)?;
        let amount = *[
            self.rng.random_range(100..5_000),
            self.rng.random_range(2_500..40_000),
            self.rng.random_range(40_000..400_000),
        ]
        .choose(&mut self.rng)?;
        let items = self.items(amount);
        let just_enrolled = self.now - self.enrolled_at[index] < Duration::minutes(2);
        let occurred_at = if self.abuse.checkout_referral && just_enrolled && self.chance(60) {
            // Enrolled at the till: the order carries the enrolment's second.
            Some(
                self.enrolled_at[index]
                    .with_nanosecond(0)
                    .unwrap_or(self.enrolled_at[index]),
            )
        } else {
            self.late()
        };
        let purchase = Purchase {
            member,
            key: self.id("k"),
            order_id: self.id("order"),
            amount_minor: amount,
            items,
            occurred_at,
        };
        self.purchases.push(purchase.clone());
        Some(Op::Purchase(purchase))
    }

    fn action(&mut self) -> Option<Op> {
        if self.chance(10) && !self.actions.is_empty() {
            let actions = self.actions.clone();
            let mut again = self.again(&actions, |a: &mut Action| a.occurred_at = None)?;
            if self.chance(50) {
                again.key = self.id("k");
            }
            return Some(Op::Action(again));
        }
        let action = Action {
            member: self.member()?,
            key: self.id("k"),
            action: ACTIONS.choose(&mut self.rng)?.to_string(),
            reference: self.id("ref"),
            occurred_at: self.late(),
        };
        self.actions.push(action.clone());
        Some(Op::Action(action))
    }

    fn redeem(&mut self) -> Option<Op> {
        let fresh: Vec<String> = self
            .created_rewards
            .iter()
            .filter(|(_, at)| self.abuse.fresh_catalog || self.now - *at > Duration::minutes(1))
            .map(|(id, _)| id.clone())
            .collect();
        let mut choices = self.rewards.clone();
        choices.extend(fresh);
        Some(Op::Redeem {
            member: self.member()?,
            key: self.id("k"),
            reward: choices.choose(&mut self.rng)?.clone(),
            hold: self.chance(30),
        })
    }

    /// A return of an order sent before (or of one never sent: `order_not_found`), in part or
    /// whole, sometimes under a return id already used.
    fn give_back(&mut self) -> Option<Op> {
        let purchase = self.purchases.choose(&mut self.rng)?.clone();
        let minor = if self.chance(30) {
            None
        } else {
            Some(self.rng.random_range(1..=purchase.amount_minor.max(1)))
        };
        let return_id = if self.chance(10) {
            "rma-again".to_owned()
        } else {
            self.id("rma")
        };
        Some(Op::Return {
            member: purchase.member,
            key: self.id("k"),
            order_id: purchase.order_id,
            return_id,
            minor,
        })
    }

    fn member_op(&mut self) -> Option<Op> {
        match self.rng.random_range(0..100) {
            0..14 => Some(self.enrol()),
            14..50 => self.purchase(),
            50..63 => self.action(),
            63..69 => self.redeem(),
            69..71 => Some(Op::UseCode {
                member: self.member()?,
                nth: self.rng.random_range(0..8),
            }),
            71..72 => Some(Op::CancelCode {
                member: self.member()?,
                nth: self.rng.random_range(0..8),
                by_member: self.chance(50),
            }),
            72..76 => Some(Op::StartSubscription {
                member: self.member()?,
                key: self.id("k"),
                plan: ["plus", "basic"].choose(&mut self.rng)?.to_string(),
                method: format!("pm_{}", self.member()?),
            }),
            76..78 => Some(Op::CancelSubscription {
                member: self.member()?,
            }),
            78..81 => Some(Op::SetDeclining {
                method: format!("pm_{}", self.member()?),
                declining: self.chance(50),
            }),
            81..85 => Some(Op::EvaluateTier {
                member: self.member()?,
            }),
            85..87 => Some(Op::Adjust {
                member: self.member()?,
                key: self.id("k"),
                points: self.rng.random_range(-300..=300_i64).max(1),
            }),
            87..91 => self.give_back(),
            // Sometimes to oneself or beyond the balance: those are refused, never paid.
            91..94 => Some(Op::Transfer {
                member: self.member()?,
                key: self.id("k"),
                to: self.member()?,
                points: self.rng.random_range(5..400),
            }),
            _ => Some(Op::Drain {
                queue: *QueueName::ALL.choose(&mut self.rng)?,
                max: self.rng.random_range(1..8),
            }),
        }
    }

    fn promotion(&mut self) -> Value {
        let minutes = |rng: &mut ChaCha8Rng, range: std::ops::Range<i64>| {
            Duration::minutes(rng.random_range(range))
        };
        // Distinct start seconds keep "earliest start wins" ties out of the run.
        let nudge = Duration::seconds(self.next_id as i64 % 3_600);
        let (starts, ends) = match self.rng.random_range(0..4) {
            0 => (
                self.now - minutes(&mut self.rng, 1..600) - nudge,
                self.now + minutes(&mut self.rng, 30..20_000),
            ),
            1 => (
                self.now + minutes(&mut self.rng, 1..3_000) + nudge,
                self.now + minutes(&mut self.rng, 3_000..30_000),
            ),
            2 if self.abuse.ended_promotions => (
                self.now - minutes(&mut self.rng, 20_000..40_000) - nudge,
                self.now - minutes(&mut self.rng, 1..10_000),
            ),
            _ => (
                self.now - minutes(&mut self.rng, 1..60) - nudge,
                self.now + minutes(&mut self.rng, 5..240),
            ),
        };
        let name = self.id("promo");
        let mut body = json!({ "name": name, "starts_at": starts, "ends_at": ends });
        if self.chance(50) {
            body["multiplier"] =
                json!(*[1.5, 2.0, 3.0, 1.25].choose(&mut self.rng).unwrap_or(&2.0));
        } else {
            body["bonus_points"] = json!(self.rng.random_range(1..400));
        }
        if self.chance(35) {
            let category = CATEGORIES
                .choose(&mut self.rng)
                .copied()
                .unwrap_or("coffee");
            body["categories"] = json!([category]);
        }
        if self.chance(20) {
            let tier = ["silver", "gold", "bronze"]
                .choose(&mut self.rng)
                .copied()
                .unwrap_or("gold");
            body["tiers"] = json!([tier]);
        }
        if self.chance(50) {
            body["per_member_limit"] = json!(self.rng.random_range(1..4));
        }
        body
    }

    fn admin_op(&mut self) -> Option<Op> {
        Some(match self.rng.random_range(0..100) {
            0..25 => Op::CreatePromotion(self.promotion()),
            25..32 => Op::CancelPromotion {
                nth: self.rng.random_range(0..8),
            },
            32..45 => {
                let id = self.id("reward");
                self.created_rewards.push((id.clone(), self.now));
                let mut body = json!({ "reward_id": id, "name": format!("Reward {id}"),
                    "kind": "merchandise", "points_cost": self.rng.random_range(50..600),
                    "stock": self.rng.random_range(1..4) });
                if self.chance(50) {
                    body["per_member_limit"] = json!(1);
                }
                Op::CreateReward(body)
            }
            45..60 => {
                let audience = match self.rng.random_range(0..3) {
                    0 => {
                        let count = self.rng.random_range(1..=self.members.len().max(1));
                        let ids: Vec<String> = self
                            .members
                            .choose_multiple(&mut self.rng, count)
                            .cloned()
                            .collect();
                        json!({ "member_ids": ids })
                    }
                    1 => {
                        let tier = ["bronze", "silver", "gold"]
                            .choose(&mut self.rng)
                            .copied()?;
                        json!({ "tier": tier })
                    }
                    _ => {
                        let from =
                            (self.now - Duration::days(self.rng.random_range(0..10))).date_naive();
                        json!({ "enrolled_between": [from, self.now.date_naive()] })
                    }
                };
                let points = self.rng.random_range(10..300);
                let mut body = json!({ "name": self.id("campaign"), "points": points,
                    "audience": audience, "reason": "simulated goodwill" });
                if self.chance(50) {
                    body["budget_points"] = json!(points * self.rng.random_range(1..6));
                }
                Op::CreateCampaign(body)
            }
            60..70 => Op::RunSeasons,
            70..80 => Op::PlanTierReviews,
            80..85 => Op::PlanBilling,
            85..90 => Op::SweepCodes,
            90..95 => Op::RunExpiry,
            _ => Op::SweepReferrals,
        })
    }

    /// A clock jump: usually minutes or hours, sometimes to the edge of a month, a leap day or a
    /// year end.
    fn jump(&mut self) -> Duration {
        let target = match self.rng.random_range(0..100) {
            0..50 => self.now + Duration::minutes(self.rng.random_range(1..180)),
            50..70 => self.now + Duration::hours(self.rng.random_range(3..48)),
            70..80 => self.now + Duration::days(self.rng.random_range(2..12)),
            80..90 => {
                // One second before the next month begins.
                let (y, m) = if self.now.month() == 12 {
                    (self.now.year() + 1, 1)
                } else {
                    (self.now.year(), self.now.month() + 1)
                };
                Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
                    .single()
                    .map(|t| t - Duration::milliseconds(self.rng.random_range(1..1500)))
                    .unwrap_or(self.now)
            }
            90..95 => {
                // Late on the last day of February, leap or not.
                let year = self.now.year() + i32::from(self.now.month() > 2);
                let last = if year % 4 == 0 { 29 } else { 28 };
                Utc.with_ymd_and_hms(year, 2, last, 23, 59, 59)
                    .single()
                    .unwrap_or(self.now)
            }
            _ => Utc
                .with_ymd_and_hms(self.now.year(), 12, 31, 23, 59, 58)
                .single()
                .unwrap_or(self.now),
        };
        let by = if target > self.now {
            target - self.now
        } else {
            Duration::minutes(1)
        };
        self.now += by;
        by
    }
}

/// The steps of seed `seed`.
pub fn generate(seed: u64, shape: Shape, abuse: Abuse) -> Vec<Step> {
    let mut gen = Gen {
        rng: ChaCha8Rng::seed_from_u64(seed),
        abuse,
        shape,
        now: start_time(seed),
        members: Vec::new(),
        emails: Vec::new(),
        enrolled_at: Vec::new(),
        purchases: Vec::new(),
        actions: Vec::new(),
        rewards: REWARDS.iter().map(|r| r.to_string()).collect(),
        created_rewards: Vec::new(),
        next_id: 0,
    };
    let mut steps = Vec::with_capacity(shape.steps);
    // A few members first, so the first batches have someone to act for.
    let first: Vec<(usize, Op)> = (0..3).map(|_| (0, gen.enrol())).collect();
    steps.push(Step::Batch(first));
    while steps.len() < shape.steps {
        let roll = gen.rng.random_range(0..100);
        if roll < 14 {
            let env = gen.env();
            if let Some(op) = gen.admin_op() {
                steps.push(Step::Admin(env, op));
            }
        } else if roll < 26 {
            let by = gen.jump();
            steps.push(Step::Jump(by));
        } else {
            let size = gen.rng.random_range(1..=shape.max_batch.max(1));
            let batch: Vec<(usize, Op)> = (0..size)
                .filter_map(|_| {
                    let env = gen.env();
                    gen.member_op().map(|op| (env, op))
                })
                .collect();
            if !batch.is_empty() {
                steps.push(Step::Batch(batch));
            }
        }
    }
    steps
}
