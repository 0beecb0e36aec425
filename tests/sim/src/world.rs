//! One simulated deployment: the store behind its fault injector, several execution environments
//! (each an `App` with its own program and promotion caches, as Lambda instances have), the
//! queues, the payment provider, the clock, and the outbox relaying the store's change feed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use loyalty_core::clock::ManualClock;
use loyalty_core::events::catalog::Change;
use loyalty_core::events::MemoryQueue;
use loyalty_core::memory::MemoryStore;
use loyalty_core::ports::Store;
use loyalty_core::service::{AppConfig, RelayError};
use loyalty_core::App;

use crate::faults::{FaultRates, Faults, QueueName, SimPayments, SimQueue, SimStore};
use crate::sched::Scheduler;

/// Where the outbox reads committed changes: the in-memory store's change feed, or a table's
/// stream in DynamoDB Local.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// The changes committed since the last call, oldest first.
    async fn changes(&self) -> Result<Vec<Change>, String>;
}

#[async_trait]
impl ChangeFeed for MemoryStore {
    async fn changes(&self) -> Result<Vec<Change>, String> {
        Ok(self.take_changes())
    }
}

pub struct World<S> {
    store: SimStore<S>,
    feed: Arc<dyn ChangeFeed>,
    /// Changes read from the feed but not relayed yet: a failed relay is retried from the
    /// change that failed, as the stream's event source mapping does, in order.
    unrelayed: Mutex<VecDeque<Change>>,
    /// Each promotion's status as of the last change of it the outbox relayed: until then,
    /// environments other than the writer's may not know of the change (see
    /// `Checker::price`).
    relayed_promotions: Mutex<BTreeMap<String, String>>,
    /// Every event the outbox sent.
    pub events: Arc<MemoryQueue>,
    pub envs: Vec<App<SimStore<S>>>,
    pub clock: Arc<ManualClock>,
    pub sched: Scheduler,
    pub faults: Faults,
    queues: BTreeMap<QueueName, Arc<SimQueue>>,
    payments: Arc<SimPayments>,
    /// Whether tokio's clock is paused (in-memory runs): then cache lifetimes follow the
    /// simulated clock.
    paused: bool,
    pub cache_ttl: Duration,
}

impl<S: Store> World<S> {
    pub fn new(
        store: Arc<S>,
        feed: Arc<dyn ChangeFeed>,
        seed: u64,
        rates: FaultRates,
        environments: usize,
        start: DateTime<Utc>,
        paused: bool,
    ) -> Self {
        let sched = Scheduler::new(seed);
        let faults = Faults::new(seed, rates);
        let sim_store = SimStore::new(store, sched.clone(), faults.clone());
        let clock = Arc::new(ManualClock::new(start));
        let queues: BTreeMap<QueueName, Arc<SimQueue>> = QueueName::ALL
            .iter()
            .map(|name| {
                (
                    *name,
                    Arc::new(SimQueue::new(*name, sched.clone(), faults.clone())),
                )
            })
            .collect();
        let payments = Arc::new(SimPayments::new(sched.clone(), faults.clone()));
        let events = Arc::new(MemoryQueue::default());
        // Without a paused clock (DynamoDB runs) caches cannot be aged on demand, so they are off.
        let cache_ttl = if paused {
            AppConfig::default().program_cache_ttl
        } else {
            Duration::ZERO
        };
        let envs = (0..environments.max(1))
            .map(|_| {
                App::new(
                    sim_store.clone(),
                    clock.clone(),
                    AppConfig {
                        program_cache_ttl: cache_ttl,
                        ..AppConfig::default()
                    },
                )
                .with_referral_queue(queues[&QueueName::Referral].clone())
                .with_campaign_dispatch(queues[&QueueName::CampaignDispatch].clone())
                .with_events(events.clone())
                .with_payments(payments.clone())
            })
            .collect();
        Self {
            store: sim_store,
            feed,
            unrelayed: Mutex::new(VecDeque::new()),
            relayed_promotions: Mutex::new(BTreeMap::new()),
            events,
            envs,
            clock,
            sched,
            faults,
            queues,
            payments,
            paused,
            cache_ttl,
        }
    }

    /// The outbox's turn: relays what the feed committed since the last turn, after what an
    /// earlier turn could not relay. A change leaves the queue only once relayed: a send that
    /// fails (an injected fault), or the turn killed mid-way, leaves it to be delivered again
    /// next time, in order. A change the catalog cannot read fails the seed.
    pub async fn relay(&self) -> Result<usize, String> {
        let fresh = self.feed.changes().await?;
        self.unrelayed().extend(fresh);
        let mut relayed = 0;
        loop {
            let Some(change) = self.unrelayed().front().cloned() else {
                return Ok(relayed);
            };
            match self.envs[0].relay_change(&change).await {
                Ok(_) => {
                    self.unrelayed().pop_front();
                    relayed += 1;
                    if let Change::Record { after, .. } = &change {
                        if after.kind == loyalty_core::promotions::RECORD_KIND {
                            let status = after.body["status"].as_str().unwrap_or_default();
                            self.relayed_promotions
                                .lock()
                                .unwrap_or_else(|poisoned| poisoned.into_inner())
                                .insert(after.id.clone(), status.to_owned());
                        }
                    }
                }
                Err(RelayError::Unreadable(error)) => {
                    return Err(format!(
                        "the outbox cannot read a committed change: {error}"
                    ))
                }
                Err(_) => return Ok(relayed),
            }
        }
    }

    /// Each promotion's status as the outbox last relayed it.
    pub fn relayed_promotions(&self) -> BTreeMap<String, String> {
        self.relayed_promotions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether changes wait for the outbox's next turn.
    pub fn unrelayed_changes(&self) -> usize {
        self.unrelayed().len()
    }

    fn unrelayed(&self) -> std::sync::MutexGuard<'_, VecDeque<Change>> {
        self.unrelayed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn inner_store(&self) -> &S {
        self.store.inner()
    }

    pub fn queue(&self, name: QueueName) -> &SimQueue {
        &self.queues[&name]
    }

    pub fn payments(&self) -> &SimPayments {
        &self.payments
    }

    pub fn now(&self) -> DateTime<Utc> {
        use loyalty_core::clock::Clock;
        self.clock.now()
    }

    /// Moves the simulated clock; environments' caches age by as much.
    pub async fn advance(&self, by: chrono::Duration) {
        self.clock.advance(by);
        if self.paused {
            let age = by
                .to_std()
                .unwrap_or_default()
                .min(Duration::from_secs(86_400));
            tokio::time::advance(age).await;
        }
    }

    /// Lets every environment's cached program and promotions expire.
    pub async fn expire_caches(&self) {
        if self.paused {
            tokio::time::advance(self.cache_ttl + Duration::from_secs(1)).await;
        }
    }
}
