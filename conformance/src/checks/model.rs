//! A model-based test: random sequences of acquire / try / release / extend
//! / expire by three owners (each its own client) on one key, checked step
//! by step against a reference model of the SPEC, shrunk to a minimal
//! failing sequence with proptest.
//!
//! proptest's own runner is synchronous; the cases here run against a store,
//! so the case loop and the shrinking loop are driven by hand over
//! proptest's value trees, inside the check's async task.

use super::util::{Keys, faults, key, locker};
use crate::timing::LONG_TTL;
use crate::{Fixture, Verdict};
use futures::FutureExt;
use lock_core::{Error, ErrorKind, FencingToken, LockGuard, Locker};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::fmt;
use std::time::Duration;

const OWNERS: [&str; 3] = ["model-a", "model-b", "model-c"];

/// How long a model `Lock` waits on a key someone else holds.
const LOCK_WAIT: Duration = Duration::from_millis(50);

/// How many re-runs shrinking may take (each is a case against the store).
const MAX_SHRINK_RUNS: u32 = 64;

/// How many cases of how many steps the model test runs. Small by default
/// so that it suits real servers; raise it for a soak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    /// Random sequences tried.
    pub cases: u32,
    /// Most operations per sequence.
    pub steps: usize,
    /// The random seed; `None` picks one (printed on failure).
    pub seed: Option<u64>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            cases: 16,
            steps: 20,
            seed: None,
        }
    }
}

impl ModelConfig {
    /// The default, overridden by `DLOCK_MODEL_CASES`, `DLOCK_MODEL_STEPS`
    /// and `DLOCK_MODEL_SEED` where set (to reproduce a failure, or soak).
    pub fn from_env() -> Self {
        fn var<T: std::str::FromStr>(name: &str) -> Option<T> {
            std::env::var(name).ok()?.trim().parse().ok()
        }
        let d = Self::default();
        ModelConfig {
            cases: var("DLOCK_MODEL_CASES").unwrap_or(d.cases),
            steps: var("DLOCK_MODEL_STEPS").unwrap_or(d.steps),
            seed: var("DLOCK_MODEL_SEED").or(d.seed),
        }
    }
}

/// One operation of a sequence; owners are indexes into [`OWNERS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `lock` with a short wait.
    Lock(usize),
    /// `try_lock`.
    TryLock(usize),
    /// Release the owner's newest guard (live, else one of a lost hold).
    Release(usize),
    /// `extend` a guard of the owner (live, else one of a lost hold).
    Extend(usize),
    /// The store expires the hold; its holder learns it on its next
    /// renewal (sent at once here, by an `extend`).
    Expire,
}

/// An operation's weight, and how to make it for an owner.
type Weighted = (u32, fn(usize) -> Op);

/// Weights of the operations.
const WEIGHTS: [Weighted; 5] = [
    (3, Op::Lock),
    (3, Op::TryLock),
    (3, Op::Release),
    (1, Op::Extend),
    (1, |_| Op::Expire),
];

/// Random operations by the weights above (`Expire` only `with_expire`).
/// A plain mapped tuple rather than a boxed union: its value tree is
/// `Send`, so shrinking can run across awaits in a spawned task.
fn operations(with_expire: bool) -> impl Strategy<Value = Op, Tree: Send> + Send + Sync {
    let kinds = if with_expire {
        WEIGHTS.len()
    } else {
        WEIGHTS.len() - 1
    };
    let total: u32 = WEIGHTS[..kinds].iter().map(|(w, _)| w).sum();
    (0..total, 0..OWNERS.len()).prop_map(move |(mut pick, owner)| {
        for (weight, op) in &WEIGHTS[..kinds] {
            if pick < *weight {
                return op(owner);
            }
            pick -= weight;
        }
        unreachable!("pick is below the total weight")
    })
}

/// The reference model: who holds the key, how many counts, which token.
#[derive(Default)]
struct Model {
    holder: Option<(usize, u32, FencingToken)>,
    last_token: Option<FencingToken>,
}

/// The model, and the guards the real clients handed out.
struct Run<'a> {
    fx: &'a dyn Fixture,
    lockers: &'a [Locker],
    key: String,
    model: Model,
    /// Guards of each owner's current hold, oldest first.
    live: [Vec<LockGuard>; 3],
    /// Guards of holds the store expired.
    stale: [Vec<LockGuard>; 3],
}

type Step = Result<(), String>;

impl Run<'_> {
    async fn step(&mut self, op: Op) -> Step {
        match op {
            Op::Lock(o) | Op::TryLock(o) => self.acquire(o, matches!(op, Op::TryLock(_))).await,
            Op::Release(o) => self.release(o).await,
            Op::Extend(o) => self.extend(o).await,
            Op::Expire => self.expire().await,
        }?;
        self.invariants().await
    }

    async fn acquire(&mut self, o: usize, once: bool) -> Step {
        let request = self.lockers[o].request(&self.key).owner(OWNERS[o]);
        let got = match once {
            true => request.try_lock().await,
            false => match request.wait(LOCK_WAIT).lock().await {
                Ok(g) => Ok(Some(g)),
                Err(Error::Timeout { .. }) => Ok(None),
                Err(e) => Err(e),
            },
        }
        .map_err(|e| format!("unexpected error: {e}"))?;
        match (self.model.holder, got) {
            (None, Some(g)) => {
                if let Some(last) = self.model.last_token
                    && g.token() <= last
                {
                    return Err(format!(
                        "new hold's token {} is not above the last one, {last}",
                        g.token()
                    ));
                }
                if g.hold_count() != 1 {
                    return Err(format!("new hold has count {}", g.hold_count()));
                }
                self.model.holder = Some((o, 1, g.token()));
                self.model.last_token = Some(g.token());
                self.live[o].push(g);
            }
            (None, None) => return Err("the key is free, yet it was not granted".into()),
            (Some((h, count, token)), Some(g)) if h == o => {
                if g.token() != token || g.hold_count() != count + 1 {
                    return Err(format!(
                        "re-entry: expected token {token} count {}, got token {} count {}",
                        count + 1,
                        g.token(),
                        g.hold_count()
                    ));
                }
                self.model.holder = Some((o, count + 1, token));
                self.live[o].push(g);
            }
            (Some((h, ..)), Some(g)) => {
                return Err(format!(
                    "granted (token {}) while {} holds the key",
                    g.token(),
                    OWNERS[h]
                ));
            }
            (Some((h, ..)), None) if h == o => {
                return Err("re-entry by the holder was refused".into());
            }
            (Some(_), None) => {}
        }
        Ok(())
    }

    async fn release(&mut self, o: usize) -> Step {
        if let Some(g) = self.live[o].pop() {
            g.release()
                .await
                .map_err(|e| format!("release of a held count failed: {e}"))?;
            let (h, count, token) = self.model.holder.expect("live guards imply a holder");
            self.model.holder = (count > 1).then_some((h, count - 1, token));
        } else if let Some(g) = self.stale[o].pop() {
            expect_not_held(g.release().await, "release of an expired hold")?;
        }
        Ok(())
    }

    async fn extend(&mut self, o: usize) -> Step {
        if let Some(g) = self.live[o].first() {
            g.extend()
                .await
                .map_err(|e| format!("extend of a held lock failed: {e}"))?;
        } else if let Some(g) = self.stale[o].first() {
            expect_not_held(g.extend().await, "extend of an expired hold")?;
        }
        Ok(())
    }

    async fn expire(&mut self) -> Step {
        let had = faults(self.fx)
            .expire_hold(&key(&self.key))
            .await
            .map_err(|e| format!("fault: expire_hold failed: {e}"))?;
        let Some((h, ..)) = self.model.holder else {
            return match had {
                false => Ok(()),
                true => Err("expire_hold found a hold on a key the model says is free".into()),
            };
        };
        if !had {
            return Err(format!(
                "expire_hold found no hold, yet {} holds the key",
                OWNERS[h]
            ));
        }
        let guards = std::mem::take(&mut self.live[h]);
        expect_not_held(
            guards[0].extend().await,
            "the holder's renewal after the store expired its hold",
        )?;
        for g in &guards {
            if g.is_held() {
                return Err("a guard of an expired hold still reports is_held()".into());
            }
            if g.lost().now_or_never().is_none() {
                return Err("a guard of an expired hold has not resolved lost()".into());
            }
        }
        self.stale[h].extend(guards);
        self.model.holder = None;
        Ok(())
    }

    async fn invariants(&self) -> Step {
        let status = self.lockers[0]
            .status(&self.key)
            .await
            .map_err(|e| format!("status failed: {e}"))?;
        if status.is_free() != self.model.holder.is_none() {
            return Err(format!(
                "the model says holder {:?}, the store says {status:?}",
                self.model.holder
            ));
        }
        for (o, guards) in self.live.iter().enumerate() {
            if guards.iter().any(|g| !g.is_held()) {
                return Err(format!(
                    "a guard of {}'s current hold reports is_held() == false",
                    OWNERS[o]
                ));
            }
        }
        Ok(())
    }

    async fn finish(mut self) -> Step {
        for o in 0..OWNERS.len() {
            while !self.live[o].is_empty() {
                self.release(o).await?;
            }
        }
        self.invariants().await
    }
}

fn expect_not_held<T: fmt::Debug>(result: lock_core::Result<T>, what: &str) -> Step {
    match result {
        Err(e) if e.kind() == ErrorKind::NotHeld => Ok(()),
        other => Err(format!("{what}: expected NotHeld, got {other:?}")),
    }
}

/// Runs one sequence on a fresh key; the first mismatch, with its step.
async fn run_case(fx: &dyn Fixture, lockers: &[Locker], key: String, ops: &[Op]) -> Step {
    let mut run = Run {
        fx,
        lockers,
        key,
        model: Model::default(),
        live: Default::default(),
        stale: Default::default(),
    };
    for (n, op) in ops.iter().enumerate() {
        run.step(*op)
            .await
            .map_err(|e| format!("step {n} {op:?}: {e}"))?;
    }
    run.finish()
        .await
        .map_err(|e| format!("releasing everything at the end: {e}"))
}

pub(crate) async fn model(fx: &dyn Fixture) -> Verdict {
    model_with(fx, ModelConfig::from_env()).await
}

/// The model-based check with an explicit [`ModelConfig`].
pub async fn model_with(fx: &dyn Fixture, config: ModelConfig) -> Verdict {
    let keys = Keys::new(fx, "model");
    let mut lockers = Vec::new();
    for _ in OWNERS {
        lockers.push(locker(fx, LONG_TTL).await);
    }
    let with_expire = fx.faults().is_some();
    let strategy = proptest::collection::vec(operations(with_expire), 1..=config.steps.max(1));
    let seed = config.seed.unwrap_or_else(rand::random);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    // Every case's value tree up front: the runner is not `Send`, and this
    // check runs in a task that moves between threads.
    let trees: Vec<_> = {
        let mut runner = TestRunner::new_with_rng(
            Config::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
        );
        (0..config.cases)
            .map(|case| {
                strategy
                    .new_tree(&mut runner)
                    .unwrap_or_else(|e| panic!("model: generating case {case}: {e}"))
            })
            .collect()
    };
    let mut runs = 0u32;
    for (case, mut tree) in trees.into_iter().enumerate() {
        runs += 1;
        let Err(first) = run_case(fx, &lockers, keys.key(runs), &tree.current()).await else {
            continue;
        };
        // Shrink as proptest's own runner does: simplify while it still
        // fails, complicate when it passes.
        let (mut smallest, mut error) = (tree.current(), first);
        let mut shrink_runs = 0;
        if tree.simplify() {
            while shrink_runs < MAX_SHRINK_RUNS {
                shrink_runs += 1;
                runs += 1;
                let more = match run_case(fx, &lockers, keys.key(runs), &tree.current()).await {
                    Err(e) => {
                        (smallest, error) = (tree.current(), e);
                        tree.simplify()
                    }
                    Ok(()) => tree.complicate(),
                };
                if !more {
                    break;
                }
            }
        }
        panic!(
            "model: case {case} failed (seed {seed}; rerun with DLOCK_MODEL_SEED={seed}): {error}\n\
             minimal sequence found ({} operations, owners {OWNERS:?}): {smallest:?}",
            smallest.len()
        );
    }
    match with_expire {
        true => Verdict::Passed,
        false => Verdict::Partial(format!(
            "the `expire` operation was left out: fixture `{}` has no fault injection",
            fx.name()
        )),
    }
}
