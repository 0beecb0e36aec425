//! One simulated deployment: the store behind its fault injector, several execution environments
//! (each an `App` with its own program and promotion caches, as Lambda instances have), the
//! queues, the payment provider and the clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use loyalty_core::clock::ManualClock;
use loyalty_core::ports::Store;
use loyalty_core::service::AppConfig;
use loyalty_core::App;

use crate::faults::{FaultRates, Faults, QueueName, SimPayments, SimQueue, SimStore};
use crate::sched::Scheduler;

pub struct World<S> {
    store: SimStore<S>,
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
                .with_payments(payments.clone())
            })
            .collect();
        Self {
            store: sim_store,
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
