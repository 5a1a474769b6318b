//! A whole run: servers, subjects, every scenario chosen, the report.

use crate::backends::Backend;
use crate::cli::{RunArgs, ScenarioName};
use crate::peers::{DlockSubject, dlock_name, lineup};
use crate::report::Report;
use crate::scenarios::{hot_key, many_holds, many_keys, scaling, uncontended};
use crate::servers::{REDLOCK_MAIN, Targets};
use crate::subject::Subject;
use std::sync::Arc;
use std::time::Duration;

/// Runs the scenarios of `args`; `log` hears of each step.
pub async fn run(args: &RunArgs, log: &dyn Fn(&str)) -> anyhow::Result<Report> {
    crate::backends::register_all();
    let backends = args.backends();
    let scenarios = args.scenario_list();
    let wants = |s| scenarios.contains(&s);
    log(&format!("starting the stores of {}", names(&backends)));
    let targets = Targets::prepare(args, &backends).await?;
    let mut report = Report::default();
    report.machine = crate::machine::describe(&targets).await;
    let tag = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let seconds = Duration::from_secs_f64(args.seconds);
    let mut lineups: Vec<(Backend, Vec<Arc<dyn Subject>>)> = Vec::new();
    for &b in &backends {
        lineups.push((b, lineup(b, &targets).await?));
    }
    if wants(ScenarioName::Uncontended) {
        uncontended::describe(&mut report, args.uncontended_rounds, args.pairs);
        for (b, subjects) in &lineups {
            log(&format!("uncontended: {}", b.name()));
            uncontended::run(
                &mut report,
                *b,
                subjects,
                args.uncontended_rounds,
                args.pairs,
                &tag,
            )
            .await?;
        }
    }
    if wants(ScenarioName::HotKey) {
        hot_key::describe(&mut report, args.rounds, args.seconds);
        for (b, subjects) in &lineups {
            log(&format!("hot key: {}", b.name()));
            hot_key::run(&mut report, *b, subjects, args.rounds, seconds, &tag).await?;
        }
    }
    if wants(ScenarioName::ManyKeys) {
        many_keys::describe(&mut report, args.rounds, args.seconds);
        for (b, subjects) in &lineups {
            log(&format!("many keys: {}", b.name()));
            let redis = targets.redis.as_deref();
            many_keys::run(&mut report, *b, subjects, args.rounds, seconds, redis, &tag).await?;
        }
    }
    if wants(ScenarioName::Scaling) {
        let each = seconds / 2;
        scaling::describe(&mut report, args.rounds, each.as_secs_f64());
        let mut measured: Vec<(Backend, String, Arc<dyn Subject>)> = Vec::new();
        for (b, subjects) in &lineups {
            if *b == Backend::Redlock {
                for n in [3, REDLOCK_MAIN, 7] {
                    let Some(url) = targets.redlock_url(n) else {
                        report.note(
                            scaling::ID,
                            format!("Redlock on {n} nodes: fewer masters given"),
                        );
                        continue;
                    };
                    let s: Arc<dyn Subject> = if n == REDLOCK_MAIN {
                        subjects[0].clone()
                    } else {
                        Arc::new(DlockSubject::connect(dlock_name(*b), &url).await?)
                    };
                    measured.push((*b, format!("{} on {n} nodes", dlock_name(*b)), s));
                }
            } else {
                measured.push((*b, dlock_name(*b).to_owned(), subjects[0].clone()));
            }
        }
        for round in 0..args.rounds {
            for (b, label, subject) in &measured {
                log(&format!("scaling: {label}, round {}", round + 1));
                scaling::run(
                    &mut report,
                    b.name(),
                    label,
                    subject.clone(),
                    round,
                    each,
                    &tag,
                )
                .await?;
            }
        }
    }
    if wants(ScenarioName::ManyHolds) {
        many_holds::describe(&mut report, args.holds, args.hold_seconds);
        log(&format!(
            "many holds: {} at once, {} s",
            names(&backends),
            args.hold_seconds
        ));
        many_holds::run(
            &mut report,
            &backends,
            &targets,
            args.holds,
            args.hold_seconds,
            &tag,
        )
        .await?;
    }
    report.machine.push((
        "load average at end (1, 5, 15 min)".into(),
        crate::machine::load_average(),
    ));
    Ok(report)
}

fn names(backends: &[Backend]) -> String {
    backends
        .iter()
        .map(|b| b.name())
        .collect::<Vec<_>>()
        .join(", ")
}
