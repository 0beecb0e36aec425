//! `loyalty-local demo`: walks a running local stack end to end through its HTTP API and says
//! what happens in plain words. Each step is a function of [`Demo`]; later features (campaigns,
//! referrals, tier evaluation, billing) append steps to [`run`].

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

pub struct Demo {
    host: String,
    /// Makes member ids and keys unique per run, so the demo can run again on the same stack.
    run_id: String,
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Demo {
    /// `api` is `http://127.0.0.1:PORT` (loopback only).
    pub fn new(api: &str) -> Result<Demo, String> {
        let host = api
            .strip_prefix("http://")
            .ok_or_else(|| format!("--api {api}: expected http://HOST:PORT"))?
            .trim_end_matches('/')
            .to_owned();
        let ip = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        if !matches!(ip, "127.0.0.1" | "localhost" | "[::1]") {
            return Err(format!(
                "--api {api}: the demo only talks to a loopback address"
            ));
        }
        let run_id = ulid::Ulid::new().to_string()[20..].to_lowercase();
        Ok(Demo { host, run_id })
    }

    pub fn member(&self, name: &str) -> String {
        format!("{name}-{}", self.run_id)
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Result<Reply, String> {
        let stream = tokio::net::TcpStream::connect(&self.host)
            .await
            .map_err(|e| format!("cannot reach http://{}: {e} (is `make run` up?)", self.host))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", format!("{key}-{}", self.run_id));
        }
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let request = request
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Reply { status, body })
    }

    /// A request that must answer `expected`; anything else stops the demo.
    pub async fn expect(
        &self,
        expected: u16,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let reply = self.request(method, path, key, body).await?;
        if reply.status != expected {
            return Err(format!(
                "{method} {path} answered {} (expected {expected}): {}",
                reply.status, reply.body
            ));
        }
        Ok(reply.body)
    }

    async fn balance(&self, member: &str) -> Result<i64, String> {
        let body = self
            .expect(200, "GET", &format!("/v1/members/{member}"), None, None)
            .await?;
        Ok(body["balance"]["available"]
            .as_i64()
            .or_else(|| body["balance"].as_i64())
            .or_else(|| body["balance"]["points"].as_i64())
            .unwrap_or_default())
    }

    pub async fn enrol(&self) -> Result<(), String> {
        for (name, email) in [("alice", "alice@example.com"), ("bob", "bob@example.com")] {
            let id = self.member(name);
            let body = self
                .expect(
                    201,
                    "POST",
                    "/v1/members",
                    None,
                    Some(json!({"member_id": id, "email": email, "name": name})),
                )
                .await?;
            println!(
                "  Enrolled {id} (tier {}, referral code {}); balance {}",
                body["tier"].as_str().unwrap_or("?"),
                body["referral_code"].as_str().unwrap_or("?"),
                self.balance(&id).await?
            );
        }
        Ok(())
    }

    pub async fn accrue(&self) -> Result<(), String> {
        let alice = self.member("alice");
        let bob = self.member("bob");
        let purchase = |order: &str, minor: i64| {
            json!({"kind": "purchase", "order_id": order, "amount": {"minor": minor, "currency": "USD"},
                   "items": [{"sku": "LATTE", "category": "coffee", "amount": {"minor": 450, "currency": "USD"}, "quantity": 2}]})
        };
        // Order ids are unique per program (an order earns once, whichever member), so each run
        // of the demo uses its own.
        let order_id = |n: u32| format!("order-{n}-{}", self.run_id);
        let first_order = order_id(1);
        for (member, order, minor) in [
            (&alice, order_id(1), 5250),
            (&alice, order_id(2), 12000),
            (&bob, order_id(3), 2599),
        ] {
            let order = order.as_str();
            let path = format!("/v1/members/{member}/accruals");
            let body = self
                .expect(
                    201,
                    "POST",
                    &path,
                    Some(order),
                    Some(purchase(order, minor)),
                )
                .await?;
            println!(
                "  {member} bought for ${}.{:02} ({order}): +{} points",
                minor / 100,
                minor % 100,
                body["points"]
            );
        }
        // The same request again (a retried call): replayed, not paid twice.
        let path = format!("/v1/members/{alice}/accruals");
        let replay = self
            .request(
                "POST",
                &path,
                Some(first_order.as_str()),
                Some(purchase(&first_order, 5250)),
            )
            .await?;
        println!(
            "  The till retried order-1 with the same key: answered {} with the same entry, no new points",
            replay.status
        );
        let action = json!({"kind": "action", "action": "review", "reference": "review-1"});
        match self
            .request("POST", &path, Some("review-1"), Some(action))
            .await?
        {
            Reply { status: 201, body } => {
                println!("  {alice} wrote a review: +{} points", body["points"])
            }
            Reply { status, body } => println!(
                "  {alice} wrote a review: not paid ({status} {})",
                body["error"]["code"].as_str().unwrap_or("?")
            ),
        }
        Ok(())
    }

    pub async fn balances(&self) -> Result<(), String> {
        for name in ["alice", "bob"] {
            let id = self.member(name);
            println!("  {id} has {} points", self.balance(&id).await?);
        }
        Ok(())
    }

    pub async fn redeem(&self) -> Result<(), String> {
        let alice = self.member("alice");
        let rewards = self.expect(200, "GET", "/v1/rewards", None, None).await?;
        let balance = self.balance(&alice).await?;
        let list = rewards["rewards"].as_array().cloned().unwrap_or_default();
        println!("  The catalog has {} rewards", list.len());
        let affordable = list
            .iter()
            .filter(|r| r["points_cost"].as_i64().is_some_and(|c| c <= balance))
            .min_by_key(|r| r["points_cost"].as_i64());
        let Some(reward) = affordable else {
            println!("  {alice} cannot afford any reward yet ({balance} points)");
            return Ok(());
        };
        let reward_id = reward["reward_id"].as_str().unwrap_or_default();
        let body = self
            .expect(
                201,
                "POST",
                &format!("/v1/members/{alice}/redemptions"),
                Some("redeem-1"),
                Some(json!({"reward_id": reward_id})),
            )
            .await?;
        println!(
            "  {alice} redeemed '{}' for {} points: code {}; {} points left",
            reward["name"].as_str().unwrap_or(reward_id),
            reward["points_cost"],
            body["code"].as_str().unwrap_or("?"),
            self.balance(&alice).await?
        );
        Ok(())
    }

    pub async fn ledger(&self) -> Result<(), String> {
        let alice = self.member("alice");
        let body = self
            .expect(
                200,
                "GET",
                &format!("/v1/members/{alice}/ledger?limit=10"),
                None,
                None,
            )
            .await?;
        println!("  {alice}'s ledger, newest first:");
        for entry in body["entries"].as_array().into_iter().flatten() {
            println!(
                "    {:>6} points  balance {:>6}  {}",
                entry["points"],
                entry["balance_after"],
                entry["entry_id"]
                    .as_str()
                    .or(entry["kind"].as_str())
                    .unwrap_or("?")
            );
        }
        Ok(())
    }
}

/// Polls `check` every half second until it returns `Some`, for work that flows through queues.
async fn wait_for<T, F, Fut>(what: &str, seconds: u64, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(done) = check().await? {
            return Ok(done);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{what} did not happen within {seconds} s"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

impl Demo {
    fn category(&self) -> String {
        format!("demo_{}", self.run_id)
    }

    /// A promotion only this run's purchases can hit (its own category), live from now on.
    pub async fn promotion(&self) -> Result<(), String> {
        let body = self
            .expect(
                201,
                "POST",
                "/v1/admin/promotions",
                None,
                Some(json!({
                    "name": format!("Demo double points {}", self.run_id),
                    "multiplier": 2,
                    "categories": [self.category()],
                    "starts_at": "2000-01-01T00:00:00Z",
                    "ends_at": "2100-01-01T00:00:00Z",
                })),
            )
            .await?;
        println!(
            "  Created promotion {} (double points on '{}' items)",
            body["promotion_id"].as_str().unwrap_or("?"),
            self.category()
        );
        Ok(())
    }

    /// Accrues a purchase with a promoted item; the accrue function caches promotions for up to
    /// PROGRAM_CACHE_SECONDS, so the demo asks with dry runs until the promotion shows.
    pub async fn promoted_purchase(&self) -> Result<(), String> {
        let alice = self.member("alice");
        let order = json!({
            "kind": "purchase", "order_id": format!("demo-promo-{}", self.run_id),
            "amount": { "minor": 3000, "currency": "USD" },
            "items": [{ "sku": "DEMO", "category": self.category(), "amount": { "minor": 3000, "currency": "USD" }, "quantity": 1 }],
        });
        let path = format!("/v1/members/{alice}/accruals");
        wait_for(
            "the promotion reaching the accrue function's cache",
            45,
            || async {
                let preview = self
                    .expect(
                        200,
                        "POST",
                        &format!("{path}?dry_run=true"),
                        None,
                        Some(order.clone()),
                    )
                    .await?;
                let promoted = preview["breakdown"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|l| {
                        l["rule"]
                            .as_str()
                            .is_some_and(|r| r.starts_with("promotion:"))
                    });
                Ok(promoted.then_some(()))
            },
        )
        .await?;
        let body = self
            .expect(201, "POST", &path, Some("promo"), Some(order))
            .await?;
        for line in body["breakdown"].as_array().into_iter().flatten() {
            println!(
                "    {:>5} points  {}",
                line["points"],
                line["description"].as_str().unwrap_or("?")
            );
        }
        println!(
            "  {alice} earned {} points for a 30.00 purchase",
            body["points"]
        );
        Ok(())
    }

    pub async fn tier(&self) -> Result<(), String> {
        let alice = self.member("alice");
        let body = self
            .expect(
                200,
                "POST",
                &format!("/v1/members/{alice}/tier-evaluation"),
                None,
                None,
            )
            .await?;
        let progress = &body["tier_progress"];
        println!(
            "  {alice} is {} with {} qualifying; {} more to reach {}",
            body["tier"].as_str().unwrap_or("?"),
            progress["qualifying"],
            progress["remaining_to_next"],
            progress["next_tier"].as_str().unwrap_or("the top")
        );
        Ok(())
    }

    /// A referred friend's first purchase rewards both sides, through the referral queue.
    pub async fn referral(&self) -> Result<(), String> {
        let alice = self.member("alice");
        let code = self
            .expect(200, "GET", &format!("/v1/members/{alice}"), None, None)
            .await?["referral_code"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        let carol = self.member("carol");
        self.expect(
            201,
            "POST",
            "/v1/members",
            None,
            Some(
                json!({ "member_id": carol, "email": "carol@example.com", "referral_code": code }),
            ),
        )
        .await?;
        let order = json!({ "kind": "purchase", "order_id": format!("carol-first-{}", self.run_id), "amount": { "minor": 4500, "currency": "USD" } });
        self.expect(
            201,
            "POST",
            &format!("/v1/members/{carol}/accruals"),
            Some("carol-first"),
            Some(order),
        )
        .await?;
        println!("  {carol} enrolled with {alice}'s code and made a first purchase of 45.00");
        let referral = wait_for("the referral worker rewarding the referral", 60, || async {
            let body = self
                .expect(
                    200,
                    "GET",
                    &format!("/v1/members/{alice}/referrals"),
                    None,
                    None,
                )
                .await?;
            let referral = body["referrals"]
                .as_array()
                .and_then(|r| r.first())
                .cloned();
            Ok(referral.filter(|r| r["status"] != "pending"))
        })
        .await?;
        println!(
            "  Referral {}: {}; {alice} now has {} points, {carol} {}",
            referral["referral_id"].as_str().unwrap_or("?"),
            referral["status"],
            self.balance(&alice).await?,
            self.balance(&carol).await?
        );
        Ok(())
    }

    /// Paid membership: the first payment is taken at once (through localstripe locally), the
    /// monthly bonus is granted for the paid period, and the plan's tier floor applies; then the
    /// daily billing schedule is fired, which finds nothing due on day one.
    pub async fn subscription(&self) -> Result<(), String> {
        let bob = self.member("bob");
        let before = self.balance(&bob).await?;
        let body = self
            .expect(
                201,
                "POST",
                &format!("/v1/members/{bob}/subscription"),
                Some("plus"),
                Some(json!({ "plan_id": "plus", "payment_method": "pm_card_visa" })),
            )
            .await?;
        println!(
            "  {bob} subscribed to '{}': {}, paid until {}, next billing {}",
            body["plan_id"].as_str().unwrap_or("?"),
            body["status"],
            body["current_period"]["end"],
            body["next_billing_date"]
        );
        let member = self
            .expect(200, "GET", &format!("/v1/members/{bob}"), None, None)
            .await?;
        println!(
            "  monthly bonus: {} -> {} points; tier {} (the plan's floor)",
            before,
            member["balance"]["available"],
            member["tier"].as_str().unwrap_or("?")
        );
        let run = self
            .expect(
                200,
                "POST",
                "/_local/schedules/DailySubscriptionBilling",
                None,
                None,
            )
            .await?;
        println!("  fired the daily billing schedule: {run}");
        Ok(())
    }

    /// A bonus campaign flows API → dispatcher queue → grant queue → worker.
    pub async fn campaign(&self) -> Result<(), String> {
        let members = [self.member("alice"), self.member("bob")];
        let key = format!("demo-campaign-{}", self.run_id);
        let created = self
            .expect(202, "POST", "/v1/admin/campaigns", Some(&key), Some(json!({
                "name": "Demo thank-you", "points": 75, "audience": { "member_ids": members }, "reason": "Thanks for trying the demo",
            })))
            .await?;
        let id = created["campaign_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        println!(
            "  Campaign {id} accepted ({}); waiting for the dispatcher and the worker",
            created["status"]
        );
        let campaign = wait_for("the campaign to be granted", 60, || async {
            let body = self
                .expect(200, "GET", &format!("/v1/admin/campaigns/{id}"), None, None)
                .await?;
            let settled = body["targeted"] == 2
                && body["granted"].as_u64().unwrap_or(0)
                    + body["skipped"].as_u64().unwrap_or(0)
                    + body["failed"].as_u64().unwrap_or(0)
                    == 2;
            Ok(settled.then_some(body))
        })
        .await?;
        println!(
            "  targeted {}, granted {}, skipped {}, failed {}, {} points in all",
            campaign["targeted"],
            campaign["granted"],
            campaign["skipped"],
            campaign["failed"],
            campaign["points_granted"]
        );
        Ok(())
    }
}

/// Every step, in order. Append new steps here.
pub async fn run(api: &str) -> Result<(), String> {
    let demo = Demo::new(api)?;
    println!("Loyalty demo against {api} (run {})", demo.run_id);
    println!("0. Create a promotion");
    demo.promotion().await?;
    println!("1. Enrol two members");
    demo.enrol().await?;
    println!("2. Accrue purchases and an action");
    demo.accrue().await?;
    println!("3. Balances");
    demo.balances().await?;
    println!("4. Redeem a reward");
    demo.redeem().await?;
    println!("5. A purchase under the promotion (the single best promotion applies)");
    demo.promoted_purchase().await?;
    println!("6. Tier evaluation");
    demo.tier().await?;
    println!("7. A referral");
    demo.referral().await?;
    println!("8. A bonus campaign");
    demo.campaign().await?;
    println!("9. Paid membership and billing");
    demo.subscription().await?;
    println!("10. The ledger");
    demo.ledger().await?;
    println!("Demo finished: every step answered as expected.");
    Ok(())
}
