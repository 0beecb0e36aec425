//! A deterministic scheduler for concurrent requests. Every port call of a scheduled task passes a
//! gate; the gate opens for one waiting call at a time, chosen by the seeded PRNG, and only once
//! every live task is waiting at it. Whatever a task does between two port calls (pure work,
//! back-off sleeps on tokio's paused clock) cannot change the order, so one seed is one run.
//!
//! A task can also be killed at a gate (a worker that times out mid-batch): it is dropped there,
//! with everything it wrote before still written.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use futures::future::{AbortHandle, Abortable};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

tokio::task_local! {
    static TASK: usize;
}

pub type Task<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

type Ticket = (usize, u64);

struct State {
    rng: ChaCha8Rng,
    live: BTreeSet<usize>,
    waiting: BTreeMap<Ticket, Waker>,
    granted: Option<Ticket>,
    next_ticket: u64,
    /// Gate passes left before the task is killed.
    kill_after: BTreeMap<usize, u32>,
    aborts: BTreeMap<usize, AbortHandle>,
    killed: u64,
    passes: u64,
}

#[derive(Clone)]
pub struct Scheduler(Arc<Mutex<State>>);

impl Scheduler {
    pub fn new(seed: u64) -> Self {
        Self(Arc::new(Mutex::new(State {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5c4e_d01e),
            live: BTreeSet::new(),
            waiting: BTreeMap::new(),
            granted: None,
            next_ticket: 0,
            kill_after: BTreeMap::new(),
            aborts: BTreeMap::new(),
            killed: 0,
            passes: 0,
        })))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tasks killed so far, and gate passes.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.state();
        (state.killed, state.passes)
    }

    /// Which tasks are live and which wait at the gate, for a stuck run's report.
    pub fn describe(&self) -> String {
        let state = self.state();
        format!(
            "live {:?}, waiting {:?}, granted {:?}",
            state.live,
            state.waiting.keys().collect::<Vec<_>>(),
            state.granted
        )
    }

    /// Waits for this task's turn. Outside a scheduled task (set-up, audits) it passes at once.
    pub async fn pass(&self, what: &'static str) {
        let Ok(task) = TASK.try_with(|t| *t) else {
            return;
        };
        let ticket = {
            let mut state = self.state();
            state.next_ticket += 1;
            (task, state.next_ticket)
        };
        std::future::poll_fn(|cx| {
            let mut state = self.state();
            if std::env::var_os("SIM_TRACE_SCHED").is_some() {
                eprintln!("      poll {ticket:?} granted {:?}", state.granted);
            }
            if state.granted == Some(ticket) {
                state.granted = None;
                state.passes += 1;
                return Poll::Ready(());
            }
            if std::env::var_os("SIM_TRACE_SCHED").is_some() {
                eprintln!("      wait {ticket:?} {what}");
            }
            state.waiting.insert(ticket, cx.waker().clone());
            decide(&mut state);
            if state.granted == Some(ticket) {
                state.granted = None;
                state.passes += 1;
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await
    }

    fn finish(&self, task: usize) {
        let mut state = self.state();
        state.live.remove(&task);
        state.aborts.remove(&task);
        state.waiting.retain(|(t, _), _| *t != task);
        if state.granted.is_some_and(|(t, _)| t == task) {
            state.granted = None;
        }
        decide(&mut state);
    }

    /// Runs `tasks` concurrently; a task killed at a gate yields `None`. `kill` names tasks to be
    /// killed after that many gate passes.
    pub async fn run<'a, T: 'a>(
        &self,
        tasks: Vec<Task<'a, T>>,
        kill: BTreeMap<usize, u32>,
    ) -> Vec<Option<T>> {
        let mut running: Vec<Option<Task<'a, Option<T>>>> = Vec::with_capacity(tasks.len());
        {
            let mut state = self.state();
            state.kill_after = kill;
            for (id, task) in tasks.into_iter().enumerate() {
                let (handle, registration) = AbortHandle::new_pair();
                state.live.insert(id);
                state.aborts.insert(id, handle);
                let scheduler = self.clone();
                running.push(Some(Box::pin(async move {
                    let result = Abortable::new(TASK.scope(id, task), registration).await;
                    scheduler.finish(id);
                    result.ok()
                })));
            }
        }
        let mut results: Vec<Option<T>> = Vec::new();
        results.resize_with(running.len(), || None);
        // Polls every unfinished task each round; a turn granted during a round gets its poll
        // in the next round at once, without depending on a wake-up.
        std::future::poll_fn(|cx| loop {
            for (slot, result) in running.iter_mut().zip(results.iter_mut()) {
                if let Some(task) = slot {
                    if let Poll::Ready(value) = task.as_mut().poll(cx) {
                        *result = value;
                        *slot = None;
                    }
                }
            }
            if running.iter().all(Option::is_none) {
                return Poll::Ready(());
            }
            if self.state().granted.is_none() {
                return Poll::Pending;
            }
        })
        .await;
        results
    }
}

/// Opens the gate for one waiting call once every live task waits at it.
fn decide(state: &mut State) {
    loop {
        if state.granted.is_some() || state.waiting.is_empty() {
            return;
        }
        let all_waiting = state
            .live
            .iter()
            .all(|task| state.waiting.keys().any(|(t, _)| t == task));
        if !all_waiting {
            return;
        }
        let index = state.rng.random_range(0..state.waiting.len());
        let Some(ticket) = state.waiting.keys().nth(index).copied() else {
            return;
        };
        let Some(waker) = state.waiting.remove(&ticket) else {
            return;
        };
        let task = ticket.0;
        if let Some(left) = state.kill_after.get_mut(&task) {
            if *left == 0 {
                state.killed += 1;
                state.live.remove(&task);
                state.waiting.retain(|(t, _), _| *t != task);
                if let Some(handle) = state.aborts.remove(&task) {
                    handle.abort();
                }
                continue;
            }
            *left -= 1;
        }
        state.granted = Some(ticket);
        if std::env::var_os("SIM_TRACE_SCHED").is_some() {
            eprintln!(
                "      grant {ticket:?} (waiting {:?})",
                state.waiting.keys().collect::<Vec<_>>()
            );
        }
        waker.wake();
        return;
    }
}

/// Whether the caller runs inside a scheduled task (requests), not in set-up or an audit.
pub fn in_task() -> bool {
    TASK.try_with(|_| ()).is_ok()
}
