//! The run's rules, driven input by input with a fake clock: no processes, no sleeps.

use super::*;
use crate::core::budget::WarningKind;
use crate::core::plan::{InstanceSpec, Mode};
use crate::core::pricing::Pricing;

/// The wall clock at the start of every simulated run (Unix seconds).
const UNIX0: i64 = 1_800_000_000;

fn spec(name: &str, command: &str) -> InstanceSpec {
    InstanceSpec {
        name: name.into(),
        command: command.into(),
        ..InstanceSpec::default()
    }
}

/// A plan of `names` (each running `/test`), no spacing between launches, 5 s grace.
fn plan(names: &[&str]) -> Plan {
    let mut p = Plan {
        instances: names.iter().map(|n| spec(n, "/test")).collect(),
        ..Plan::default()
    };
    p.options.startup_delay = Duration::ZERO;
    p.options.kill_grace = Duration::from_secs(5);
    p.budgets.warn_at_percent = 80.0;
    p.budgets.estimate_tokens = 1000;
    p
}

struct Sim {
    run: RunState,
    t0: Instant,
    now: Instant,
}

impl Sim {
    fn new(plan: Plan) -> Sim {
        let ledger = Ledger::for_plan(&plan, &Pricing::builtin());
        let t0 = Instant::now();
        Sim {
            run: RunState::new(plan, ledger, t0),
            t0,
            now: t0,
        }
    }

    /// Starts the run and answers every spawn with success.
    fn start(&mut self) -> Vec<Effect> {
        self.start_after(Duration::ZERO)
    }

    fn start_after(&mut self, delay: Duration) -> Vec<Effect> {
        let fx = self.input(Input::Start {
            delay,
            unix_now: UNIX0,
        });
        self.spawn_all(fx)
    }

    /// Moves the clock to `secs` after the start and delivers a tick.
    fn at(&mut self, secs: f64) -> Vec<Effect> {
        self.now = self.t0 + Duration::from_secs_f64(secs);
        let fx = self.input(Input::Tick);
        self.spawn_all(fx)
    }

    /// The wall clock now, in Unix milliseconds (`UNIX0` at the start).
    fn unix_ms(&self) -> i64 {
        UNIX0 * 1000 + (self.now - self.t0).as_millis() as i64
    }

    fn input(&mut self, input: Input) -> Vec<Effect> {
        self.run.handle(input, self.now)
    }

    /// Answers each `Spawn` in `fx` with `Spawned`; returns all effects seen.
    fn spawn_all(&mut self, fx: Vec<Effect>) -> Vec<Effect> {
        let mut all = fx.clone();
        for id in spawns(&fx) {
            let more = self.input(Input::Spawned {
                id,
                pid: 1000 + id as u32,
                argv: vec!["claude".into()],
            });
            all.extend(self.spawn_all(more));
        }
        all
    }

    fn usage(&mut self, id: InstanceId, tokens: u64) -> Vec<Effect> {
        self.observe(id, tokens, false)
    }

    fn observe(&mut self, id: InstanceId, tokens: u64, result: bool) -> Vec<Effect> {
        let mut progress = self.run.instances[id].progress.clone();
        progress.usage.output_tokens += tokens;
        progress.cost += Usd(tokens as i64);
        let observed = Observed {
            line: Observation {
                tokens_delta: tokens as i64,
                cost_delta: Usd(tokens as i64),
                result,
                ..Observation::default()
            },
            progress,
        };
        let fx = self.input(Input::Observed { id, observed });
        self.spawn_all(fx)
    }

    fn exit_with(
        &mut self,
        id: InstanceId,
        code: i32,
        result: Option<ResultSummary>,
    ) -> Vec<Effect> {
        let ended = Ended {
            exit: ExitInfo {
                code: Some(code),
                signal: None,
            },
            progress: Some(self.run.instances[id].progress.clone()),
            result,
            stderr_tail: "some noise\nthe last words\n\n".into(),
            error: None,
            log_error: None,
        };
        let fx = self.input(Input::Exited { id, ended });
        self.spawn_all(fx)
    }

    /// Exits 0 after a successful result.
    fn complete(&mut self, id: InstanceId) -> Vec<Effect> {
        self.exit_with(id, 0, Some(ok_result("done")))
    }

    fn status(&self, id: InstanceId) -> Status {
        self.run.instances[id].status()
    }

    fn reason(&self, id: InstanceId) -> String {
        self.run.instances[id].reason().unwrap_or_default()
    }
}

fn ok_result(text: &str) -> ResultSummary {
    ResultSummary {
        subtype: "success".into(),
        is_error: false,
        text: Some(text.into()),
        num_turns: Some(1),
        live_tokens_over: 0,
        live_cost_over: Usd::ZERO,
    }
}

fn spawns(fx: &[Effect]) -> Vec<InstanceId> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Spawn(id) => Some(*id),
            _ => None,
        })
        .collect()
}

fn terminates(fx: &[Effect]) -> Vec<InstanceId> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Terminate(id) => Some(*id),
            _ => None,
        })
        .collect()
}

fn kills(fx: &[Effect]) -> Vec<InstanceId> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Kill(id) => Some(*id),
            _ => None,
        })
        .collect()
}

fn events(fx: &[Effect]) -> Vec<RunEvent> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Emit(ev) => Some(ev.clone()),
            _ => None,
        })
        .collect()
}

fn finished(fx: &[Effect]) -> Vec<InstanceId> {
    events(fx)
        .into_iter()
        .filter_map(|e| match e {
            RunEvent::InstanceFinished { id } => Some(id),
            _ => None,
        })
        .collect()
}

fn has(fx: &[Effect], want: impl Fn(&RunEvent) -> bool) -> bool {
    events(fx).iter().any(want)
}

// ------------------------------------------------------------------ launching

#[test]
fn start_launches_every_instance_when_nothing_limits_it() {
    let mut s = Sim::new(plan(&["a", "b", "c"]));
    let fx = s.start();
    assert_eq!(spawns(&fx), vec![0, 1, 2]);
    assert!(matches!(events(&fx)[0], RunEvent::RunStarted { .. }));
    assert!((0..3).all(|i| s.status(i) == Status::Running));
    assert_eq!(
        events(&fx)
            .iter()
            .filter(|e| matches!(e, RunEvent::InstanceStarted { .. }))
            .count(),
        3
    );
}

#[test]
fn nothing_launches_before_the_start() {
    let mut s = Sim::new(plan(&["a"]));
    let fx = s.at(1.0);
    assert!(fx.is_empty());
    assert_eq!(s.status(0), Status::Pending);
}

#[test]
fn max_parallel_queues_the_rest_as_waiting_for_a_slot() {
    let mut p = plan(&["a", "b", "c"]);
    p.options.max_parallel = 1;
    let mut s = Sim::new(p);
    let fx = s.start();
    assert_eq!(spawns(&fx), vec![0]);
    assert_eq!(s.status(1), Status::Waiting);
    assert_eq!(s.reason(2), "waiting for a free slot (--max-parallel 1)");
}

#[test]
fn a_slot_freed_by_an_exit_launches_the_next_in_plan_order() {
    let mut p = plan(&["a", "b", "c"]);
    p.options.max_parallel = 2;
    let mut s = Sim::new(p);
    s.start();
    let fx = s.complete(1);
    assert_eq!(spawns(&fx), vec![2]);
    assert_eq!(s.status(1), Status::Completed);
    assert_eq!(s.status(2), Status::Running);
}

#[test]
fn a_waiting_event_is_sent_only_when_the_reason_changes() {
    let mut p = plan(&["a", "b"]);
    p.options.max_parallel = 1;
    let mut s = Sim::new(p);
    let fx = s.start();
    assert!(has(&fx, |e| *e == RunEvent::InstanceWaiting { id: 1 }));
    let fx = s.usage(0, 10);
    assert!(!has(&fx, |e| matches!(e, RunEvent::InstanceWaiting { .. })));
}

#[test]
fn startup_delay_spaces_launches_and_asks_for_a_wake() {
    let mut p = plan(&["a", "b", "c"]);
    p.options.startup_delay = Duration::from_secs(2);
    let mut s = Sim::new(p);
    let fx = s.start();
    assert_eq!(spawns(&fx), vec![0]);
    assert_eq!(s.run.next_wake(), Some(s.t0 + Duration::from_secs(2)));
    assert!(spawns(&s.at(1.9)).is_empty());
    assert_eq!(spawns(&s.at(2.0)), vec![1]);
    assert_eq!(spawns(&s.at(4.0)), vec![2]);
    assert_eq!(s.run.next_wake(), None);
}

#[test]
fn start_at_holds_every_launch_until_it_is_due() {
    let mut s = Sim::new(plan(&["a", "b"]));
    let fx = s.start_after(Duration::from_secs(60));
    assert!(spawns(&fx).is_empty());
    assert_eq!(
        events(&fx)[0],
        RunEvent::RunStarted {
            delay: Duration::from_secs(60)
        }
    );
    assert_eq!(s.run.next_wake(), Some(s.t0 + Duration::from_secs(60)));
    assert!(spawns(&s.at(59.0)).is_empty());
    assert_eq!(spawns(&s.at(60.0)), vec![0, 1]);
}

#[test]
fn a_spawn_failure_ends_the_instance_as_failed_and_frees_its_slot() {
    let mut p = plan(&["a", "b"]);
    p.options.max_parallel = 1;
    let mut s = Sim::new(p);
    let fx = s.input(Input::Start {
        delay: Duration::ZERO,
        unix_now: UNIX0,
    });
    assert_eq!(spawns(&fx), vec![0]);
    let fx = s.input(Input::SpawnFailed {
        id: 0,
        error: "No such file or directory".into(),
    });
    assert_eq!(s.status(0), Status::Failed);
    assert_eq!(s.reason(0), "could not start: No such file or directory");
    assert_eq!(finished(&fx), vec![0]);
    assert_eq!(spawns(&fx), vec![1], "the freed slot is used at once");
}

// ------------------------------------------------------------------ exits

#[test]
fn exit_zero_after_a_result_is_completed() {
    let mut s = Sim::new(plan(&["a"]));
    s.start();
    s.usage(0, 500);
    let fx = s.complete(0);
    assert_eq!(s.status(0), Status::Completed);
    assert_eq!(s.reason(0), "");
    assert_eq!(finished(&fx), vec![0]);
    assert!(has(&fx, |e| *e == RunEvent::RunFinished));
    assert!(s.run.is_finished());
    let o = s.run.outcome();
    assert_eq!(o.exit, ExitCode::Success);
    assert_eq!(o.reason, "the instance completed");
}

/// Hardening (issue 13): a failed `--report` write turns success into exit 1 and is
/// named; a more specific code stays. Incomplete logs are named but change no code.
#[test]
fn report_and_log_errors_are_part_of_the_outcome() {
    let mut s = Sim::new(plan(&["a"]));
    s.start();
    s.complete(0);
    s.run.instances[0].log_error = Some("cannot write a.jsonl: disk full".into());
    let o = s.run.outcome();
    assert_eq!(o.exit, ExitCode::Success);
    assert_eq!(
        o.reason,
        "the instance completed; incomplete --log-dir logs: a"
    );
    s.run.report_error = Some("cannot write --report r.json: disk full".into());
    let o = s.run.outcome();
    assert_eq!(o.exit, ExitCode::Failed);
    assert!(
        o.reason
            .ends_with("; cannot write --report r.json: disk full"),
        "{}",
        o.reason
    );

    let mut s = Sim::new(plan(&["a"]));
    s.start();
    s.exit_with(0, 1, None);
    s.run.report_error = Some("cannot write --report r.json: disk full".into());
    assert_eq!(s.run.outcome().exit, ExitCode::Failed);
}

#[test]
fn a_non_zero_exit_is_failed_with_the_last_stderr_line() {
    let mut s = Sim::new(plan(&["a"]));
    s.start();
    s.exit_with(0, 1, None);
    assert_eq!(s.status(0), Status::Failed);
    assert_eq!(s.reason(0), "claude exit code 1: the last words");
    assert_eq!(s.run.outcome().exit, ExitCode::Failed);
}

#[test]
fn an_error_result_is_failed_with_its_text() {
    let mut s = Sim::new(plan(&["a"]));
    s.start();
    let r = ResultSummary {
        is_error: true,
        text: Some("API Error: 500\nmore".into()),
        ..ok_result("")
    };
    s.exit_with(0, 0, Some(r));
    assert_eq!(s.status(0), Status::Failed);
    assert_eq!(s.reason(0), "claude reported an error: API Error: 500");
}

#[test]
fn an_unknown_slash_command_is_failed_although_claude_exits_zero() {
    let mut s = Sim::new(plan(&["a"]));
    s.start();
    s.exit_with(0, 0, Some(ok_result("Unknown command: /tset")));
    assert_eq!(s.status(0), Status::Failed);
    assert_eq!(s.reason(0), "Unknown command: /tset");
}

#[test]
fn exiting_without_a_result_line_is_failed() {
    let mut s = Sim::new(plan(&["a"]));
    s.start();
    s.exit_with(0, 0, None);
    assert_eq!(s.status(0), Status::Failed);
    assert_eq!(s.reason(0), "exited without a result line: the last words");
}

#[test]
fn a_read_error_is_failed_even_with_exit_zero() {
    let mut s = Sim::new(plan(&["a"]));
    s.start();
    let ended = Ended {
        exit: ExitInfo {
            code: Some(0),
            signal: None,
        },
        result: Some(ok_result("done")),
        error: Some("Input/output error".into()),
        ..Ended::default()
    };
    s.input(Input::Exited { id: 0, ended });
    assert_eq!(s.status(0), Status::Failed);
    assert_eq!(s.reason(0), "reading its output failed: Input/output error");
}

#[test]
fn a_failed_task_ends_its_instance_and_keeps_the_usage_seen() {
    let mut s = Sim::new(plan(&["a"]));
    s.start();
    s.usage(0, 700);
    let ended = Ended {
        error: Some("its supervising task failed: boom".into()),
        ..Ended::default()
    };
    let fx = s.input(Input::Exited { id: 0, ended });
    assert_eq!(s.status(0), Status::Failed);
    assert_eq!(s.reason(0), "its supervising task failed: boom");
    assert_eq!(s.run.instances[0].progress.usage.total(), 700);
    assert!(has(&fx, |e| *e == RunEvent::RunFinished));
}

#[test]
fn a_late_exit_of_an_instance_that_is_not_running_changes_nothing() {
    let mut s = Sim::new(plan(&["a", "b"]));
    s.start();
    s.complete(0);
    let fx = s.exit_with(0, 1, None);
    assert!(fx.is_empty());
    assert_eq!(s.status(0), Status::Completed);
}

// ------------------------------------------------------------------ budgets

#[test]
fn block_mode_blocks_an_instance_whose_estimate_alone_exceeds_a_limit() {
    let mut p = plan(&["a"]);
    p.budgets.mode = Mode::Block;
    p.budgets.overall_tokens = Some(500);
    let mut s = Sim::new(p);
    let fx = s.start();
    assert!(spawns(&fx).is_empty());
    assert_eq!(s.status(0), Status::Blocked);
    assert!(s.reason(0).contains("overall"), "{}", s.reason(0));
    let evs = events(&fx);
    let blocked = evs
        .iter()
        .position(|e| *e == RunEvent::InstanceBlocked { id: 0 });
    let done = evs
        .iter()
        .position(|e| *e == RunEvent::InstanceFinished { id: 0 });
    assert!(blocked < done && done.is_some());
    assert_eq!(s.run.outcome().exit, ExitCode::Budget);
    assert_eq!(
        s.run.outcome().reason,
        "a budget stopped instances: 1 blocked"
    );
}

#[test]
fn block_mode_waits_for_headroom_that_others_hold_then_launches() {
    let mut p = plan(&["a", "b"]);
    p.budgets.mode = Mode::Block;
    p.budgets.overall_tokens = Some(1500);
    let mut s = Sim::new(p);
    let fx = s.start();
    assert_eq!(spawns(&fx), vec![0]);
    assert_eq!(s.status(1), Status::Waiting);
    assert!(
        s.reason(1).starts_with("waiting for overall"),
        "{}",
        s.reason(1)
    );
    s.usage(0, 300);
    let fx = s.complete(0);
    assert_eq!(
        spawns(&fx),
        vec![1],
        "a's reservation is released at its exit"
    );
}

#[test]
fn crossing_a_block_mode_limit_terminates_every_running_member() {
    let mut p = plan(&["a", "b"]);
    p.budgets.mode = Mode::Block;
    p.budgets.command_tokens.insert("/test".into(), 5000);
    let mut s = Sim::new(p);
    s.start();
    s.usage(0, 3000);
    let fx = s.usage(1, 2001);
    assert_eq!(terminates(&fx), vec![0, 1]);
    let evs = events(&fx);
    assert!(matches!(
        evs[0],
        RunEvent::Usage {
            id: 1,
            tokens: 2001
        }
    ));
    assert!(has(
        &fx,
        |e| matches!(e, RunEvent::BudgetExceeded { reason, .. } if reason.contains("/test"))
    ));
    assert!(has(&fx, |e| *e == RunEvent::InstanceTerminated { id: 0 }));
    // Stopping shows its reason while the process is still exiting.
    assert!(s.reason(0).contains("/test"), "{}", s.reason(0));
    s.exit_with(0, 143, None);
    s.exit_with(1, 143, None);
    assert_eq!(s.status(0), Status::Terminated);
    assert_eq!(s.status(1), Status::Terminated);
    assert_eq!(s.run.outcome().exit, ExitCode::Budget);
    assert_eq!(
        s.run.outcome().reason,
        "a budget stopped instances: 2 terminated"
    );
}

#[test]
fn warn_mode_warns_at_the_threshold_and_at_the_limit_but_terminates_nothing() {
    let mut p = plan(&["a"]);
    p.budgets.mode = Mode::Warn;
    p.budgets.overall_tokens = Some(1000);
    let mut s = Sim::new(p);
    s.start();
    let fx = s.usage(0, 850);
    let warn = |fx: &[Effect], kind: fn(&WarningKind) -> bool| {
        has(
            fx,
            |e| matches!(e, RunEvent::BudgetWarning { warning, .. } if kind(&warning.kind)),
        )
    };
    assert!(warn(&fx, |k| matches!(k, WarningKind::WarnAt { .. })));
    let fx = s.usage(0, 100);
    assert!(events(&fx).len() == 1, "warned once only: {fx:?}");
    let fx = s.usage(0, 100);
    assert!(warn(&fx, |k| *k == WarningKind::Exceeded));
    assert!(terminates(&fx).is_empty());
    s.complete(0);
    assert_eq!(s.status(0), Status::Completed);
    assert_eq!(s.run.outcome().exit, ExitCode::Success);
}

#[test]
fn an_instance_cap_stops_only_that_instance_and_names_it() {
    let mut p = plan(&["a", "b"]);
    p.budgets.mode = Mode::Block;
    p.instances[1].max_tokens = Some(2000);
    let mut s = Sim::new(p);
    s.start();
    let fx = s.usage(1, 2500);
    assert_eq!(terminates(&fx), vec![1]);
    assert!(s.reason(1).ends_with("of b"), "{}", s.reason(1));
    assert_eq!(s.status(0), Status::Running);
}

#[test]
fn an_instance_whose_result_is_in_is_not_terminated_by_the_crossing_it_caused() {
    // An `output_format: json` instance reports all its usage with its result.
    let mut p = plan(&["a"]);
    p.budgets.mode = Mode::Block;
    p.budgets.overall_tokens = Some(5000);
    let mut s = Sim::new(p);
    s.start();
    let fx = s.observe(0, 6000, true);
    assert!(has(&fx, |e| matches!(e, RunEvent::BudgetExceeded { .. })));
    assert!(terminates(&fx).is_empty());
    s.complete(0);
    assert_eq!(s.status(0), Status::Completed);
}

#[test]
fn usage_without_spend_emits_no_usage_event_but_keeps_the_activity() {
    let mut s = Sim::new(plan(&["a"]));
    s.start();
    let observed = Observed {
        line: Observation {
            activity: Some("Bash: cargo test".into()),
            warning: Some("unknown model x".into()),
            ..Observation::default()
        },
        progress: Progress {
            model: Some("claude-x".into()),
            ..Progress::default()
        },
    };
    let fx = s.input(Input::Observed { id: 0, observed });
    assert_eq!(
        events(&fx),
        vec![RunEvent::Notice {
            id: 0,
            text: "unknown model x".into()
        }]
    );
    assert_eq!(
        s.run.instances[0].activity.as_deref(),
        Some("Bash: cargo test")
    );
    // A later observation without a model keeps the one known.
    s.usage(0, 5);
    assert_eq!(
        s.run.instances[0].progress.model.as_deref(),
        Some("claude-x")
    );
}

#[test]
fn totals_are_the_sum_of_every_instance() {
    let mut s = Sim::new(plan(&["a", "b"]));
    s.start();
    s.usage(0, 100);
    s.usage(1, 250);
    s.usage(0, 50);
    let (usage, cost) = s.run.totals();
    assert_eq!(usage.total(), 400);
    assert_eq!(cost, Usd(400));
}

// ------------------------------------------------------------------ timers

#[test]
fn a_timeout_terminates_then_kills_after_the_grace() {
    let mut p = plan(&["a"]);
    p.instances[0].timeout = Some(Duration::from_secs(10));
    let mut s = Sim::new(p);
    s.start();
    assert_eq!(s.run.next_wake(), Some(s.t0 + Duration::from_secs(10)));
    assert!(s.at(9.9).is_empty());
    let fx = s.at(10.0);
    assert_eq!(terminates(&fx), vec![0]);
    assert_eq!(s.reason(0), "timed out after 10s");
    assert_eq!(s.run.next_wake(), Some(s.t0 + Duration::from_secs(15)));
    assert!(kills(&s.at(14.9)).is_empty());
    let fx = s.at(15.0);
    assert_eq!(kills(&fx), vec![0]);
    assert!(has(&fx, |e| *e == RunEvent::InstanceKilled { id: 0 }));
    assert_eq!(s.run.next_wake(), None);
    s.exit_with(0, 137, None);
    assert_eq!(s.status(0), Status::TimedOut);
    assert_eq!(s.run.outcome().exit, ExitCode::Failed);
}

#[test]
fn an_instance_that_exits_within_the_grace_is_not_killed() {
    let mut p = plan(&["a"]);
    p.instances[0].timeout = Some(Duration::from_secs(1));
    let mut s = Sim::new(p);
    s.start();
    s.at(1.0);
    s.exit_with(0, 143, None);
    assert!(kills(&s.at(10.0)).is_empty());
    assert_eq!(s.status(0), Status::TimedOut);
}

#[test]
fn the_earliest_timer_of_many_instances_is_the_next_wake() {
    let mut p = plan(&["a", "b", "c"]);
    p.instances[0].timeout = Some(Duration::from_secs(30));
    p.instances[1].timeout = Some(Duration::from_secs(7));
    let mut s = Sim::new(p);
    s.start();
    assert_eq!(s.run.next_wake(), Some(s.t0 + Duration::from_secs(7)));
    s.at(7.0);
    // b's kill at 12 s comes before a's timeout at 30 s.
    assert_eq!(s.run.next_wake(), Some(s.t0 + Duration::from_secs(12)));
}

#[test]
fn a_budget_stop_cancels_the_timeout() {
    let mut p = plan(&["a"]);
    p.budgets.mode = Mode::Block;
    p.instances[0].max_tokens = Some(100);
    p.instances[0].timeout = Some(Duration::from_secs(3));
    let mut s = Sim::new(p);
    s.start();
    s.usage(0, 200);
    let fx = s.at(3.0);
    assert!(terminates(&fx).is_empty(), "terminated once only");
    s.exit_with(0, 143, None);
    assert_eq!(s.status(0), Status::Terminated);
}

// ------------------------------------------------------------------ interrupts

#[test]
fn a_first_interrupt_stops_the_running_and_ends_the_queued() {
    let mut p = plan(&["a", "b", "c"]);
    p.options.max_parallel = 1;
    let mut s = Sim::new(p);
    s.start();
    let fx = s.input(Input::Interrupt(Interrupt::Int));
    assert_eq!(terminates(&fx), vec![0]);
    assert_eq!(finished(&fx), vec![1, 2]);
    assert_eq!(s.status(1), Status::Interrupted);
    assert_eq!(s.reason(2), "not started: the run was interrupted");
    // Nothing launches any more, not even into the slot a's exit frees.
    let fx = s.exit_with(0, 143, None);
    assert!(spawns(&fx).is_empty());
    assert_eq!(s.status(0), Status::Interrupted);
    assert!(s.run.is_finished());
    let o = s.run.outcome();
    assert_eq!(o.exit, ExitCode::Signal(Interrupt::Int));
    assert_eq!(o.exit.code(), 130);
    assert_eq!(o.reason, "interrupted (SIGINT); 0 of 3 instances completed");
}

#[test]
fn a_second_interrupt_kills_at_once() {
    let mut s = Sim::new(plan(&["a", "b"]));
    s.start();
    s.input(Input::Interrupt(Interrupt::Term));
    let fx = s.input(Input::Interrupt(Interrupt::Int));
    assert_eq!(kills(&fx), vec![0, 1]);
    assert!(has(&fx, |e| matches!(
        e,
        RunEvent::Interrupted { second: true, .. }
    )));
    // No grace kill is pending any more.
    assert_eq!(s.run.next_wake(), None);
    // The first signal decides the exit code.
    assert_eq!(s.run.outcome().exit.code(), 143);
}

#[test]
fn sighup_is_an_interrupt_with_its_own_exit_code() {
    let mut s = Sim::new(plan(&["a"]));
    s.start();
    s.input(Input::Interrupt(Interrupt::Hup));
    s.exit_with(0, 143, None);
    assert_eq!(s.run.outcome().exit.code(), 129);
}

#[test]
fn an_interrupt_before_the_start_time_ends_every_instance() {
    let mut s = Sim::new(plan(&["a", "b"]));
    s.start_after(Duration::from_secs(3600));
    let fx = s.input(Input::Interrupt(Interrupt::Int));
    assert_eq!(finished(&fx), vec![0, 1]);
    assert!(s.run.is_finished());
    assert_eq!(s.run.next_wake(), None);
}

// ------------------------------------------------------------------ the outcome

#[test]
fn a_budget_stop_outranks_failures_in_the_exit_code() {
    let mut p = plan(&["a", "b"]);
    p.budgets.mode = Mode::Block;
    p.instances[0].max_tokens = Some(10);
    let mut s = Sim::new(p);
    s.start();
    s.usage(0, 20);
    s.exit_with(0, 143, None);
    s.exit_with(1, 1, None);
    assert_eq!(s.run.outcome().exit, ExitCode::Budget);
}

#[test]
fn the_failure_reason_counts_each_kind() {
    let mut p = plan(&["a", "b", "c"]);
    p.instances[2].timeout = Some(Duration::from_secs(1));
    let mut s = Sim::new(p);
    s.start();
    s.exit_with(0, 1, None);
    s.complete(1);
    s.at(1.0);
    s.exit_with(2, 143, None);
    assert_eq!(
        s.run.outcome().reason,
        "not every instance completed: 1 failed, 1 timed out"
    );
}

#[test]
fn run_finished_comes_once_after_the_last_instance_finished() {
    let mut s = Sim::new(plan(&["a", "b"]));
    s.start();
    let fx = s.complete(0);
    assert!(!has(&fx, |e| *e == RunEvent::RunFinished));
    let fx = s.complete(1);
    let evs = events(&fx);
    assert_eq!(evs.last(), Some(&RunEvent::RunFinished));
    assert_eq!(
        evs.iter().filter(|e| **e == RunEvent::RunFinished).count(),
        1
    );
    assert!(s.at(100.0).is_empty());
}

#[test]
fn an_empty_plan_finishes_at_the_start() {
    let mut s = Sim::new(plan(&[]));
    let fx = s.start();
    assert_eq!(events(&fx).last(), Some(&RunEvent::RunFinished));
    assert_eq!(s.run.outcome().exit, ExitCode::Success);
}

#[test]
fn every_instance_gets_exactly_one_finished_event() {
    let mut p = plan(&["a", "b", "c", "d"]);
    p.budgets.mode = Mode::Block;
    p.budgets.overall_tokens = Some(2500);
    p.instances[3].max_tokens = Some(5000); // blocked: its cap is its estimate
    let mut s = Sim::new(p);
    let mut all = s.start();
    all.extend(s.usage(0, 100));
    all.extend(s.complete(0));
    all.extend(s.input(Input::Interrupt(Interrupt::Int)));
    for id in 0..4 {
        if s.status(id) == Status::Running {
            all.extend(s.exit_with(id, 143, None));
        }
    }
    let mut ids = finished(&all);
    ids.sort_unstable();
    assert_eq!(ids, vec![0, 1, 2, 3]);
}

// ------------------------------------------------------------------ rate limits

use crate::core::signal::{LimitStatus, Signal};

impl Sim {
    fn signal(&mut self, id: InstanceId, signal: Signal) -> Vec<Effect> {
        let observed = Observed {
            line: Observation {
                signal: Some(signal),
                ..Observation::default()
            },
            progress: self.run.instances[id].progress.clone(),
        };
        let fx = self.input(Input::Observed { id, observed });
        self.spawn_all(fx)
    }

    /// The instance's process learns its Claude session id (its init line).
    fn session(&mut self, id: InstanceId, session: &str) {
        let mut progress = self.run.instances[id].progress.clone();
        progress.session_id = Some(session.into());
        let observed = Observed {
            progress,
            ..Observed::default()
        };
        let _ = self.input(Input::Observed { id, observed });
    }
}

fn retry(status: u16, delay_ms: u64) -> Signal {
    Signal::Retry {
        status: Some(status),
        attempt: Some(1),
        max: Some(10),
        delay: Duration::from_millis(delay_ms),
        error: None,
    }
}

fn paused(fx: &[Effect]) -> Vec<String> {
    events(fx)
        .into_iter()
        .filter_map(|e| match e {
            RunEvent::LaunchesPaused { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

/// Eight instances, four at once.
fn fleet() -> Sim {
    let names: Vec<String> = (0..8).map(|i| format!("i{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut p = plan(&refs);
    p.options.max_parallel = 4;
    Sim::new(p)
}

#[test]
fn a_429_pauses_launches_for_the_retry_delay_and_halves_parallelism() {
    let mut s = fleet();
    s.start();
    let fx = s.signal(1, retry(429, 4000));
    assert_eq!(paused(&fx), vec!["429 from i1"]);
    assert!(has(&fx, |e| matches!(
        e,
        RunEvent::Parallelism { limit: Some(2), .. }
    )));
    assert_eq!(s.run.parallelism(), (2, true));
    // Another instance retries within the pause: the pause is extended, not repeated,
    // and names both; parallelism is not halved again within the quiet interval.
    s.now = s.t0 + Duration::from_secs(1);
    let fx = s.signal(2, retry(529, 4000));
    assert!(paused(&fx).is_empty());
    assert_eq!(s.run.parallelism(), (2, true));
    let (why, until) = s.run.launch_hold(s.now).expect("paused");
    assert_eq!(why.to_string(), "launches paused: 429 from i1, i2");
    assert_eq!(until, s.t0 + Duration::from_secs(5));
    // A free slot during the pause launches nothing; the queue shows why.
    let fx = s.complete(0);
    assert!(spawns(&fx).is_empty());
    assert_eq!(s.reason(4), "launches paused: 429 from i1, i2");
    // The pause ends: launches resume, within the lowered parallelism (3 running ≥ 2).
    let fx = s.at(5.0);
    assert!(has(&fx, |e| matches!(e, RunEvent::LaunchesResumed { .. })));
    assert!(spawns(&fx).is_empty());
    assert_eq!(s.reason(4), "waiting for a free slot (--max-parallel 2)");
}

#[test]
fn parallelism_comes_back_one_step_per_quiet_interval() {
    let mut s = fleet();
    s.start();
    s.signal(0, retry(529, 500));
    assert_eq!(s.run.parallelism(), (2, true));
    let quiet = 10.0;
    assert_eq!(s.run.next_wake(), Some(s.t0 + Duration::from_millis(500)));
    s.at(0.5);
    assert_eq!(s.run.next_wake(), Some(s.t0 + Duration::from_secs(10)));
    let fx = s.at(quiet);
    assert!(has(&fx, |e| matches!(
        e,
        RunEvent::Parallelism { limit: Some(3), .. }
    )));
    let fx = s.at(2.0 * quiet);
    assert!(has(&fx, |e| matches!(
        e,
        RunEvent::Parallelism { limit: None, .. }
    )));
    assert_eq!(s.run.parallelism(), (4, false));
    assert_eq!(s.run.next_wake(), None);
}

#[test]
fn a_storm_halves_again_after_each_quiet_interval_never_below_one() {
    let mut s = fleet();
    s.start();
    for k in 0..6 {
        s.now = s.t0 + Duration::from_secs(10) * k;
        let _ = s.signal(0, retry(429, 100));
    }
    assert_eq!(s.run.parallelism(), (1, true));
}

#[test]
fn other_retries_and_plain_notices_do_not_slow_the_fleet() {
    let mut s = fleet();
    s.start();
    let fx = s.signal(0, retry(500, 1000));
    assert!(paused(&fx).is_empty());
    let fx = s.signal(
        0,
        Signal::RateLimit {
            status: LimitStatus::Allowed,
            resets_at: None,
            kind: None,
        },
    );
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(s.run.parallelism(), (4, false));
}

#[test]
fn an_allowed_warning_slows_launches_without_pausing_them() {
    let mut s = fleet();
    s.start();
    let fx = s.signal(
        3,
        Signal::RateLimit {
            status: LimitStatus::AllowedWarning,
            resets_at: Some(UNIX0 + 600),
            kind: Some("five_hour".into()),
        },
    );
    assert!(paused(&fx).is_empty());
    assert_eq!(s.run.parallelism(), (2, true));
    assert!(s.run.launch_hold(s.now).is_none());
}

fn usage_limit(s: &mut Sim, id: InstanceId, resets_in: Option<i64>) -> Vec<Effect> {
    s.session(id, &format!("session-{id}"));
    s.usage(id, 300);
    s.signal(
        id,
        Signal::UsageLimit {
            resets_at: resets_in.map(|d| UNIX0 + d),
        },
    );
    s.exit_with(id, 1, None)
}

#[test]
fn a_usage_limit_with_stop_ends_the_instance_and_launches_nothing_more() {
    let mut p = plan(&["a", "b", "c"]);
    p.options.max_parallel = 2;
    let mut s = Sim::new(p);
    s.start();
    let fx = usage_limit(&mut s, 0, Some(3600));
    assert_eq!(s.status(0), Status::RateLimited);
    assert!(
        s.reason(0).starts_with("usage limit reached; resets "),
        "{}",
        s.reason(0)
    );
    assert!(spawns(&fx).is_empty());
    assert!(has(&fx, |e| matches!(e, RunEvent::LaunchesStopped { .. })));
    assert_eq!(s.status(2), Status::RateLimited);
    assert!(s.reason(2).starts_with("not started: usage limit reached"));
    assert_eq!(s.status(1), Status::Running, "what runs goes on");
    s.complete(1);
    let o = s.run.outcome();
    assert_eq!(o.exit, ExitCode::Failed);
    assert_eq!(o.reason, "not every instance completed: 2 rate limited");
}

fn waiting_plan(max_wait: Duration) -> Sim {
    let mut p = plan(&["a", "b"]);
    p.options.on_usage_limit = UsageLimitPolicy::Wait;
    p.options.max_wait = max_wait;
    Sim::new(p)
}

#[test]
fn a_usage_limit_with_wait_resumes_the_session_after_the_reset() {
    let mut s = waiting_plan(Duration::from_secs(3600));
    s.start();
    let fx = usage_limit(&mut s, 0, Some(120));
    assert!(paused(&fx)[0].starts_with("usage limit reached by a; resets "));
    assert_eq!(s.status(0), Status::Waiting);
    assert!(s.reason(0).starts_with("usage limit reached; resets "));
    assert_eq!(s.run.instances[0].resume.as_deref(), Some("session-0"));
    let reset = s.t0 + Duration::from_secs(120) + RESET_MARGIN;
    assert_eq!(s.run.next_wake(), Some(reset));
    assert!(spawns(&s.at(100.0)).is_empty());
    let fx = s.at(122.0);
    assert_eq!(spawns(&fx), vec![0]);
    assert!(has(&fx, |e| matches!(e, RunEvent::LaunchesResumed { .. })));
    // The resumed process counts from zero; the instance adds up both.
    s.run.instances[0].progress.usage = crate::core::usage::Usage::default();
    let fx = s.input(Input::Observed {
        id: 0,
        observed: Observed {
            line: Observation {
                tokens_delta: 200,
                ..Observation::default()
            },
            progress: Progress {
                usage: crate::core::usage::Usage::new(0, 200, 0, 0),
                ..Progress::default()
            },
        },
    });
    assert!(has(&fx, |e| matches!(
        e,
        RunEvent::Usage { id: 0, tokens: 200 }
    )));
    assert_eq!(s.run.instances[0].progress.usage.total(), 500);
    assert_eq!(
        s.run.instances[0].progress.session_id.as_deref(),
        Some("session-0")
    );
    s.complete(0);
    s.complete(1);
    assert_eq!(s.status(0), Status::Completed);
    assert_eq!(s.run.outcome().exit, ExitCode::Success);
}

#[test]
fn a_reset_later_than_max_wait_is_not_waited_for() {
    let mut s = waiting_plan(Duration::from_secs(60));
    s.start();
    usage_limit(&mut s, 0, Some(3600));
    assert_eq!(s.status(0), Status::RateLimited);
    assert!(
        s.reason(0).ends_with("later than --max-wait allows"),
        "{}",
        s.reason(0)
    );
}

#[test]
fn an_unknown_reset_is_tried_again_after_the_probe_interval() {
    let mut s = waiting_plan(Duration::from_secs(3600));
    s.start();
    usage_limit(&mut s, 0, None);
    assert_eq!(s.reason(0), "usage limit reached; waiting to try again");
    assert_eq!(s.run.next_wake(), Some(s.t0 + PROBE));
}

#[test]
fn budgets_hold_across_a_resume() {
    let mut s = waiting_plan(Duration::from_secs(3600));
    s.run.plan.budgets.mode = Mode::Block;
    s.run.ledger = {
        let mut p = s.run.plan.clone();
        p.instances[0].max_tokens = Some(1000);
        p.budgets.mode = Mode::Block;
        Ledger::for_plan(&p, &Pricing::builtin())
    };
    s.start();
    usage_limit(&mut s, 0, Some(10));
    s.at(12.0);
    assert_eq!(s.status(0), Status::Running);
    // 300 before the limit + 701 after it pass the 1000-token cap of the instance.
    let fx = s.usage(0, 701);
    assert_eq!(terminates(&fx), vec![0]);
}

#[test]
fn a_spend_cap_stops_launching_but_terminates_nothing() {
    let mut p = plan(&["a", "b", "c"]);
    p.options.max_parallel = 2;
    let mut s = Sim::new(p);
    s.start();
    let fx = s.signal(0, Signal::SpendCap);
    assert!(terminates(&fx).is_empty());
    assert!(has(
        &fx,
        |e| matches!(e, RunEvent::LaunchesStopped { reason } if reason.contains("spend cap"))
    ));
    assert_eq!(s.status(2), Status::Failed);
    assert!(s
        .reason(2)
        .starts_with("not started: organisation spend cap reached"));
    let fx = s.exit_with(0, 1, None);
    assert!(spawns(&fx).is_empty());
    s.complete(1);
    assert_eq!(s.run.outcome().exit, ExitCode::Failed);
}

// ------------------------------------------------------------------ retries, fail-fast

fn retrying(events_of: &[Effect]) -> Vec<(InstanceId, u32)> {
    events(events_of)
        .into_iter()
        .filter_map(|e| match e {
            RunEvent::InstanceRetrying { id, attempt, .. } => Some((id, attempt)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_failed_instance_is_retried_up_to_n_times_and_spends_add_up() {
    let mut p = plan(&["a"]);
    p.options.retries = 2;
    let mut s = Sim::new(p);
    s.start();
    s.usage(0, 100);
    let fx = s.exit_with(0, 1, None);
    assert_eq!(retrying(&fx), vec![(0, 2)]);
    assert_eq!(spawns(&fx), vec![0], "relaunched at once");
    assert!(finished(&fx).is_empty());
    // The new attempt's tracker counts from zero; the instance keeps both.
    s.run.instances[0].progress.usage = crate::core::usage::Usage::default();
    let observed = Observed {
        line: Observation {
            tokens_delta: 50,
            ..Observation::default()
        },
        progress: Progress {
            usage: crate::core::usage::Usage::new(0, 50, 0, 0),
            ..Progress::default()
        },
    };
    let _ = s.input(Input::Observed { id: 0, observed });
    assert_eq!(s.run.instances[0].progress.usage.total(), 150);
    let fx = s.exit_with(0, 1, None);
    assert_eq!(retrying(&fx), vec![(0, 3)]);
    let fx = s.exit_with(0, 1, None);
    assert!(retrying(&fx).is_empty(), "no third retry");
    assert_eq!(finished(&fx), vec![0]);
    assert_eq!(s.status(0), Status::Failed);
}

#[test]
fn timeouts_are_retried_but_budget_stops_never() {
    let mut p = plan(&["slow", "big"]);
    p.options.retries = 1;
    p.budgets.mode = Mode::Block;
    p.instances[0].timeout = Some(Duration::from_secs(1));
    p.instances[1].max_tokens = Some(100);
    let mut s = Sim::new(p);
    s.start();
    s.at(1.0);
    let fx = s.exit_with(0, 143, None);
    assert_eq!(retrying(&fx), vec![(0, 2)]);
    s.usage(1, 500);
    let fx = s.exit_with(1, 143, None);
    assert!(retrying(&fx).is_empty());
    assert_eq!(s.status(1), Status::Terminated);
}

#[test]
fn a_retry_waits_for_budget_headroom_like_any_launch() {
    let mut p = plan(&["a", "b"]);
    p.options.retries = 1;
    p.budgets.mode = Mode::Block;
    p.budgets.overall_tokens = Some(2500);
    let mut s = Sim::new(p);
    s.start();
    s.usage(0, 600);
    // a failed having used 600; b still holds 1000: a's full estimate (1000) again
    // does not fit next to 600 used + b's 1000.
    let fx = s.exit_with(0, 1, None);
    assert!(spawns(&fx).is_empty());
    assert_eq!(s.status(0), Status::Waiting);
    let fx = s.complete(1);
    assert_eq!(spawns(&fx), vec![0]);
}

#[test]
fn fail_fast_launches_nothing_after_the_first_failure() {
    let mut p = plan(&["a", "b", "c"]);
    p.options.max_parallel = 2;
    p.options.fail_fast = true;
    let mut s = Sim::new(p);
    s.start();
    let fx = s.exit_with(0, 1, None);
    assert!(spawns(&fx).is_empty());
    assert!(has(
        &fx,
        |e| matches!(e, RunEvent::LaunchesStopped { reason } if reason == "--fail-fast after a failed")
    ));
    assert_eq!(s.status(2), Status::Interrupted);
    assert_eq!(s.reason(2), "not started: --fail-fast after a failed");
    assert_eq!(s.status(1), Status::Running, "what runs goes on");
    s.complete(1);
    assert_eq!(s.run.outcome().exit, ExitCode::Failed);
}

#[test]
fn fail_fast_waits_for_retries_to_run_out() {
    let mut p = plan(&["a", "b"]);
    p.options.max_parallel = 1;
    p.options.fail_fast = true;
    p.options.retries = 1;
    let mut s = Sim::new(p);
    s.start();
    let fx = s.exit_with(0, 1, None);
    assert_eq!(retrying(&fx), vec![(0, 2)]);
    s.complete(0);
    assert_eq!(s.status(0), Status::Completed);
    assert_eq!(s.status(1), Status::Running);
}

// ---------------------------------------------------------------- shared budgets (issue 12)

/// A block-mode plan of `names` under a daily token budget of `limit` shared with other
/// runs; each instance's estimate is 1000 tokens.
fn shared_plan(names: &[&str], limit: u64) -> Sim {
    shared_plan_with(names, limit, |_| {})
}

/// [`shared_plan`], with `f` changing the plan first.
fn shared_plan_with(names: &[&str], limit: u64, f: impl FnOnce(&mut Plan)) -> Sim {
    use crate::core::period::{Period, PeriodScope};
    let mut p = plan(names);
    f(&mut p);
    p.budgets.mode = Mode::Block;
    p.budgets.periodic.push(crate::core::plan::PeriodicLimit {
        period: Period::Day,
        scope: PeriodScope::Project,
        tokens: Some(limit),
        usd: None,
    });
    let mut sim = Sim::new(p);
    sim.run.share_budgets(vec![day_key()]);
    sim
}

fn day_key() -> BudgetKey {
    use crate::core::period::{Period, PeriodScope};
    BudgetKey {
        scope: Scope::Periodic(Period::Day, PeriodScope::Project),
        unit: crate::core::budget::Unit::Tokens,
    }
}

fn others(used: u64, reserved: u64) -> Vec<OtherRuns> {
    vec![OtherRuns {
        key: day_key(),
        used: Amount::Tokens(used),
        reserved: Amount::Tokens(reserved),
    }]
}

/// The claims of every batch in `fx`, flattened, in order.
fn claims(fx: &[Effect]) -> Vec<(InstanceId, Vec<ClaimOf>)> {
    batches(fx).into_iter().flatten().collect()
}

fn batches(fx: &[Effect]) -> Vec<Vec<(InstanceId, Vec<ClaimOf>)>> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Claim { batch } => Some(batch.clone()),
            _ => None,
        })
        .collect()
}

fn granted(ids: &[InstanceId], n: usize, others: Vec<OtherRuns>) -> Input {
    Input::Claimed {
        ids: ids.to_vec(),
        answer: Ok((n, others)),
    }
}

#[test]
fn a_shared_budget_launches_only_what_the_ledger_grants_in_one_batch() {
    let mut sim = shared_plan(&["a", "b"], 10_000);
    let fx = sim.start();
    assert!(
        spawns(&fx).is_empty(),
        "nothing launches before the ledger agrees"
    );
    assert_eq!(batches(&fx).len(), 1, "one batch: {fx:?}");
    let c = claims(&fx);
    assert_eq!(c.len(), 2, "both instances in it: {fx:?}");
    assert_eq!(c[0].0, 0);
    assert_eq!(
        c[0].1,
        vec![ClaimOf {
            key: day_key(),
            mine: 1000,
            hold: 1000,
            limit: 10_000
        }]
    );
    // The second claim counts what the first will hold.
    assert_eq!((c[1].0, c[1].1[0].mine, c[1].1[0].hold), (1, 2000, 2000));
    assert_eq!(
        sim.run.holds(),
        vec![(day_key(), 2000)],
        "both are admitted locally while their claims are out"
    );
    let fx = sim.input(granted(&[0, 1], 2, others(0, 0)));
    assert_eq!(spawns(&fx), vec![0, 1]);
}

#[test]
fn a_batch_granted_in_part_launches_the_granted_and_the_rest_wait_for_new_figures() {
    let mut sim = shared_plan(&["a", "b", "c"], 10_000);
    let fx = sim.start();
    let c = claims(&fx);
    assert_eq!(c.iter().map(|c| c.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(
        c.iter().map(|c| c.1[0].mine).collect::<Vec<_>>(),
        vec![1000, 2000, 3000]
    );
    // 7500 held elsewhere: the ledger grants a and b (9500), not c (10500); how many it
    // grants is `store::grant`'s, tested with the stores.
    let fx = sim.input(granted(&[0, 1, 2], 2, others(0, 7_500)));
    assert_eq!(spawns(&fx), vec![0, 1]);
    assert!(claims(&fx).is_empty(), "no new claim before new figures");
    assert_eq!(sim.status(2), Status::Waiting);
    assert_eq!(sim.reason(2), "waiting for daily budget");
    assert_eq!(sim.run.holds(), vec![(day_key(), 2000)], "c holds nothing");
    // The other run let go: c claims again, counting what a and b hold.
    let fx = sim.input(Input::Shared(Ok(others(0, 0))));
    let c = claims(&fx);
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].0, c[0].1[0].mine, c[0].1[0].hold), (2, 3000, 3000));
    let fx = sim.input(granted(&[2], 1, others(0, 0)));
    assert_eq!(spawns(&fx), vec![2]);
}

#[test]
fn a_batch_respects_max_parallel_and_startup_spacing() {
    let mut sim = shared_plan_with(&["a", "b", "c"], 10_000, |p| p.options.max_parallel = 2);
    let fx = sim.start();
    assert_eq!(
        claims(&fx).iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![0, 1],
        "claims count as running: {fx:?}"
    );
    assert_eq!(sim.status(2), Status::Waiting);
    let fx = sim.input(granted(&[0, 1], 2, others(0, 0)));
    assert_eq!(spawns(&fx), vec![0, 1]);
    assert!(claims(&fx).is_empty(), "no slot for c");

    let mut sim = shared_plan_with(&["a", "b"], 10_000, |p| {
        p.options.startup_delay = Duration::from_secs(1)
    });
    let fx = sim.start();
    assert_eq!(
        claims(&fx).iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![0],
        "spaced launches claim one at a time"
    );
    let fx = sim.input(granted(&[0], 1, others(0, 0)));
    assert_eq!(spawns(&fx), vec![0]);
    assert!(claims(&fx).is_empty(), "b waits for its launch time");
}

#[test]
fn a_granted_batch_does_not_launch_past_a_pause_that_came_while_it_was_out() {
    let mut sim = shared_plan(&["a", "b"], 10_000);
    let fx = sim.start();
    assert_eq!(claims(&fx).len(), 2);
    // Another run of the project met a 429 storm while the claims were with the ledger.
    let fx = sim.input(Input::Paused {
        pauses: vec![pause(false, UNIX0 + 5, "429")],
        unix_now_ms: sim.unix_ms(),
    });
    assert_eq!(paused(&fx), vec!["429 from another run of the project"]);
    let fx = sim.input(granted(&[0, 1], 2, others(0, 0)));
    assert!(spawns(&fx).is_empty(), "launched through the pause: {fx:?}");
    assert!(claims(&fx).is_empty(), "no claim while paused");
    assert_eq!(sim.status(0), Status::Waiting);
    assert!(sim.reason(0).contains("429"), "{}", sim.reason(0));
    assert_eq!(
        sim.run.holds(),
        vec![(day_key(), 0)],
        "neither holds anything"
    );
    // The pause over, both claim again and launch.
    let fx = sim.at(5.0);
    assert_eq!(claims(&fx).len(), 2);
    let fx = sim.input(granted(&[0, 1], 2, others(0, 0)));
    assert_eq!(spawns(&fx), vec![0, 1]);
}

#[test]
fn a_refused_claim_waits_for_the_ledgers_next_figures() {
    let mut sim = shared_plan(&["a"], 10_000);
    sim.start();
    // Another run took the headroom meanwhile: 9500 held elsewhere.
    let fx = sim.input(granted(&[0], 0, others(0, 9_500)));
    assert!(spawns(&fx).is_empty());
    assert!(claims(&fx).is_empty(), "no new claim before new figures");
    assert_eq!(sim.status(0), Status::Waiting);
    assert_eq!(sim.reason(0), "waiting for daily budget");
    assert_eq!(sim.run.holds(), vec![(day_key(), 0)], "it holds nothing");
    // Still held elsewhere: it waits, without asking.
    let fx = sim.input(Input::Shared(Ok(others(0, 9_500))));
    assert!(claims(&fx).is_empty());
    // The other run finished using little: room again, so it claims.
    let fx = sim.input(Input::Shared(Ok(others(200, 0))));
    let c = claims(&fx);
    assert_eq!(c.len(), 1);
    let fx = sim.input(granted(&[0], 1, others(200, 0)));
    assert_eq!(spawns(&fx), vec![0]);
}

#[test]
fn use_recorded_by_other_runs_blocks_what_does_not_fit_and_stops_what_runs() {
    let mut sim = shared_plan(&["a", "b"], 10_000);
    sim.start();
    sim.input(granted(&[0, 1], 2, others(0, 0)));
    assert_eq!(sim.status(1), Status::Running);
    sim.usage(0, 600);
    // Other runs' use passes the limit: both instances of this run are stopped.
    let fx = sim.input(Input::Shared(Ok(others(9_500, 0))));
    let mut t = terminates(&fx);
    t.sort_unstable();
    assert_eq!(t, vec![0, 1]);
    assert!(has(&fx, |e| matches!(
        e,
        RunEvent::BudgetExceeded { reason, .. } if reason.starts_with("daily budget exceeded")
    )));
    sim.exit_with(0, 143, None);
    sim.exit_with(1, 143, None);
    assert_eq!(sim.run.outcome().exit, ExitCode::Budget);
}

#[test]
fn an_unreachable_ledger_holds_new_launches_when_closed_and_not_when_open() {
    let mut sim = shared_plan(&["a", "b"], 10_000);
    sim.start();
    let fx = sim.input(Input::Claimed {
        ids: vec![0, 1],
        answer: Err("database is locked".into()),
    });
    assert!(has(&fx, |e| matches!(
        e,
        RunEvent::Ledger {
            unreachable: Some(_)
        }
    )));
    assert!(spawns(&fx).is_empty() && claims(&fx).is_empty());
    assert_eq!(sim.status(0), Status::Waiting);
    assert!(
        sim.reason(0).contains("--ledger-failure closed"),
        "{}",
        sim.reason(0)
    );
    assert_eq!(sim.status(1), Status::Waiting);
    // Back: it claims again.
    let fx = sim.input(Input::Shared(Ok(others(0, 0))));
    assert!(has(&fx, |e| matches!(
        e,
        RunEvent::Ledger { unreachable: None }
    )));
    assert_eq!(claims(&fx).len(), 2);

    let mut sim = shared_plan_with(&["a", "b", "c"], 10_000, |p| p.options.max_parallel = 2);
    sim.run.plan.options.ledger_failure = LedgerFailure::Open;
    sim.start();
    let fx = sim.input(Input::Claimed {
        ids: vec![0, 1],
        answer: Err("database is locked".into()),
    });
    // Open: the batch launches.
    assert_eq!(spawns(&fx), vec![0, 1]);
    // And the next, once it has a slot, without asking the unreachable ledger.
    let fx = sim.exit_with(0, 0, None);
    assert_eq!(spawns(&fx), vec![2]);
    assert!(claims(&fx).is_empty());
}

#[test]
fn an_instance_interrupted_while_its_claim_is_out_never_launches() {
    let mut sim = shared_plan(&["a"], 10_000);
    sim.start();
    sim.input(Input::Interrupt(Interrupt::Int));
    let fx = sim.input(granted(&[0], 1, others(0, 0)));
    assert!(spawns(&fx).is_empty());
    assert_eq!(sim.run.holds(), vec![(day_key(), 0)]);
    assert_eq!(sim.status(0), Status::Interrupted);
}

#[test]
fn warn_mode_shares_figures_but_never_asks_before_launching() {
    let mut sim = shared_plan(&["a"], 10_000);
    sim.run.plan.budgets.mode = Mode::Warn;
    sim.run.ledger = Ledger::for_plan(&sim.run.plan, &Pricing::builtin());
    let fx = sim.start();
    assert_eq!(spawns(&fx), vec![0]);
    assert!(claims(&fx).is_empty());
}

// ---------------------------------------------------------------- pauses shared by runs (issue 14)

fn pause(usage_limit: bool, until_unix: i64, cause: &str) -> SharedPause {
    SharedPause {
        usage_limit,
        until_ms: until_unix * 1000,
        cause: cause.into(),
    }
}

fn published(fx: &[Effect]) -> Vec<SharedPause> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_usage_limit_and_a_retry_pause_are_published_for_the_other_runs() {
    let mut s = waiting_plan(Duration::from_secs(3600));
    s.start();
    let fx = usage_limit(&mut s, 0, Some(120));
    assert_eq!(
        published(&fx),
        vec![pause(true, UNIX0 + 120, "usage limit reached")]
    );
    let mut s = fleet();
    s.start();
    s.now = s.t0 + Duration::from_secs(10);
    let fx = s.signal(0, retry(429, 4000));
    assert_eq!(published(&fx), vec![pause(false, UNIX0 + 14, "429")]);
    // A usage limit without a reset time is not published: there is nothing to wait for.
    let mut s = waiting_plan(Duration::from_secs(3600));
    s.start();
    assert!(published(&usage_limit(&mut s, 0, None)).is_empty());
}

#[test]
fn another_runs_usage_limit_holds_launches_until_the_reset_with_wait() {
    let mut p = plan(&["a", "b"]);
    p.options.on_usage_limit = UsageLimitPolicy::Wait;
    p.options.max_wait = Duration::from_secs(3600);
    p.options.startup_delay = Duration::from_secs(1);
    let mut s = Sim::new(p);
    let fx = s.start();
    assert_eq!(spawns(&fx), vec![0]);
    let fx = s.input(Input::Paused {
        pauses: vec![pause(true, UNIX0 + 60, "usage limit reached")],
        unix_now_ms: s.unix_ms(),
    });
    assert_eq!(
        paused(&fx),
        vec![format!(
            "usage limit reached by another run of the project; resets {}",
            fmt_unix(UNIX0 + 60).unwrap()
        )]
    );
    assert!(spawns(&s.at(30.0)).is_empty());
    assert_eq!(s.status(1), Status::Waiting);
    assert_eq!(s.status(0), Status::Running, "what runs goes on");
    assert_eq!(spawns(&s.at(62.0)), vec![1]);
}

#[test]
fn another_runs_usage_limit_stops_launching_with_stop() {
    let mut p = plan(&["a", "b"]);
    p.options.max_parallel = 1;
    let mut s = Sim::new(p);
    s.start();
    let fx = s.input(Input::Paused {
        pauses: vec![pause(true, UNIX0 + 60, "usage limit reached")],
        unix_now_ms: s.unix_ms(),
    });
    assert!(has(&fx, |e| matches!(e, RunEvent::LaunchesStopped { .. })));
    assert_eq!(s.status(1), Status::RateLimited);
    assert!(
        s.reason(1)
            .contains("usage limit reached by another run of the project"),
        "{}",
        s.reason(1)
    );
    // A pause already over changes nothing.
    let mut s = Sim::new(plan(&["a"]));
    s.start();
    s.at(100.0);
    let fx = s.input(Input::Paused {
        pauses: vec![pause(true, UNIX0 + 60, "usage limit reached")],
        unix_now_ms: s.unix_ms(),
    });
    assert!(fx.is_empty());
}

#[test]
fn another_runs_backoff_pauses_launches_without_lowering_parallelism() {
    let mut p = plan(&["a", "b"]);
    p.options.startup_delay = Duration::from_secs(1);
    let mut s = Sim::new(p);
    s.start();
    let fx = s.input(Input::Paused {
        pauses: vec![pause(false, UNIX0 + 5, "429")],
        unix_now_ms: s.unix_ms(),
    });
    assert_eq!(paused(&fx), vec!["429 from another run of the project"]);
    assert!(spawns(&s.at(2.0)).is_empty());
    assert_eq!(s.run.parallelism(), (0, false));
    assert_eq!(spawns(&s.at(5.0)), vec![1]);
}

#[test]
fn news_from_the_ledger_before_the_start_acts_after_run_started_and_before_any_launch() {
    let mut s = Sim::new(plan(&["a"]));
    let early = s.input(Input::Paused {
        pauses: vec![pause(true, UNIX0 + 60, "usage limit reached")],
        unix_now_ms: UNIX0 * 1000,
    });
    assert!(early.is_empty(), "nothing happens before the start");
    let fx = s.start();
    let ev = events(&fx);
    assert!(matches!(ev[0], RunEvent::RunStarted { .. }), "{ev:?}");
    assert!(matches!(ev[1], RunEvent::LaunchesStopped { .. }), "{ev:?}");
    assert!(spawns(&fx).is_empty());
    assert_eq!(s.status(0), Status::RateLimited);
}
