//! What every ledger backend must do, written once: each backend's tests call these
//! functions with a fresh, empty store of their kind (SQLite in `sqlite.rs`, PostgreSQL
//! in `postgres.rs`). Its fixtures ([`run`], [`ended`], [`budget`]) serve the backends'
//! own tests too.

use super::*;
use crate::core::usage::{Usage, Usd};

pub fn run(id: &str, project: &str, started_ms: i64) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        project: project.into(),
        host: "h".into(),
        started_ms,
        mode: "block".into(),
        budgets_json: "[]".into(),
        simulated: true,
        version: "0".into(),
    }
}

fn inst(index: u32, command: &str, tokens: u64, nanos: i64) -> InstanceRecord {
    InstanceRecord {
        index,
        name: format!("i{index}"),
        command: command.into(),
        base_command: crate::core::plan::base_command(command).map(str::to_string),
        status: "running".into(),
        usage: Usage::new(tokens, 0, 0, 0),
        cost: Usd(nanos),
        ..Default::default()
    }
}

pub fn budget(key: &str, project: Option<&str>, command: Option<&str>, usd: bool) -> SharedBudget {
    SharedBudget {
        key: key.into(),
        since_ms: 1_000,
        until_ms: 2_000,
        project: project.map(str::to_string),
        base_command: command.map(str::to_string),
        usd,
    }
}

fn share(
    s: &mut dyn UsageStore,
    run_id: &str,
    now_ms: i64,
    holds: &[Hold],
    budgets: &[SharedBudget],
) -> Shared {
    s.share(&ShareRequest {
        run_id,
        project: "p",
        now_ms,
        lease_until_ms: now_ms + 30_000,
        instances: &[],
        unflushed: &[],
        holds,
        pause: None,
        budgets,
    })
    .expect("share")
}

/// Used elsewhere: the other runs that started in the window, of the budget's project and
/// command; never the asking run itself.
pub fn used_elsewhere_counts_other_runs_in_the_window(s: &mut dyn UsageStore) {
    s.begin_run(&run("me", "p", 1_500), &[inst(0, "/a", 1_000_000, 9)])
        .expect("begin");
    s.begin_run(
        &run("r1", "p", 1_000),
        &[inst(0, "/a x", 100, 1), inst(1, "/b", 20, 2)],
    )
    .expect("begin");
    s.begin_run(&run("r2", "q", 1_999), &[inst(0, "/a", 3, 4)])
        .expect("begin");
    // Outside the window: before it, and at its (exclusive) end.
    s.begin_run(&run("old", "p", 999), &[inst(0, "/a", 5_000, 50)])
        .expect("begin");
    s.begin_run(&run("next", "p", 2_000), &[inst(0, "/a", 7_000, 70)])
        .expect("begin");
    s.record("r1", 1_600, &[inst(1, "/b", 25, 3)])
        .expect("record");
    let got = share(
        s,
        "me",
        1_700,
        &[],
        &[
            budget("t project", Some("p"), None, false),
            budget("c project", Some("p"), None, true),
            budget("t all", None, None, false),
            budget("t /a", Some("p"), Some("/a"), false),
            budget("c /a all", None, Some("/a"), true),
        ],
    );
    let used: Vec<i64> = got.elsewhere.iter().map(|e| e.used).collect();
    assert_eq!(used, vec![125, 4, 128, 100, 5]);
    assert!(got.elsewhere.iter().all(|e| e.reserved == 0));
    // Read-only, for a run id that never ran: every run counts.
    let all = s
        .elsewhere(
            "nobody",
            1_700,
            &[budget("t project", Some("p"), None, false)],
        )
        .expect("elsewhere");
    assert_eq!(all[0].used, 1_000_125);
}

/// Holds count for other runs while their lease lasts; a run's own holds never count for
/// itself; every share replaces the run's holds; finishing drops them.
pub fn holds_count_while_leased_and_go_with_the_run(s: &mut dyn UsageStore) {
    let b = [budget("k", Some("p"), None, false)];
    for id in ["a", "b", "me"] {
        s.begin_run(&run(id, "p", 1_500), &[]).expect("begin");
    }
    let hold = |amount| {
        [Hold {
            key: "k".into(),
            amount,
        }]
    };
    share(s, "a", 1_000, &hold(300), &[]);
    share(s, "b", 1_000, &hold(40), &[]);
    share(s, "me", 1_000, &hold(5), &[]);
    assert_eq!(
        share(s, "me", 1_000, &hold(5), &b).elsewhere[0].reserved,
        340
    );
    assert_eq!(
        s.elsewhere("nobody", 1_000, &b).expect("read")[0].reserved,
        345
    );
    // `a` renews later with a smaller hold; `b` does not renew, and its lease runs out.
    share(s, "a", 20_000, &hold(200), &[]);
    assert_eq!(share(s, "me", 30_999, &[], &b).elsewhere[0].reserved, 240);
    assert_eq!(share(s, "me", 31_000, &[], &b).elsewhere[0].reserved, 200);
    s.finish_run(
        "a",
        &RunEnd {
            ended_ms: 31_000,
            exit_code: 0,
            exit_reason: "ok".into(),
        },
    )
    .expect("finish");
    assert_eq!(share(s, "me", 31_000, &[], &b).elsewhere[0].reserved, 0);
}

/// A claim is granted only when every budget it names fits, and writes the holds only
/// then: two runs asking for the last headroom cannot both get it.
pub fn claims_take_headroom_once(s: &mut dyn UsageStore) {
    let b = budget("k", Some("p"), None, false);
    let c = budget("c", Some("p"), None, true);
    s.begin_run(&run("u", "p", 1_500), &[inst(0, "/a", 600, 0)])
        .expect("begin");
    for id in ["x", "y"] {
        s.begin_run(&run(id, "p", 1_500), &[]).expect("begin");
    }
    let claim = |b: &SharedBudget, hold: i64| Claim {
        budget: b.clone(),
        mine: hold,
        hold,
        limit: 1_000,
    };
    let (ok, e) = s
        .claim("x", 1_000, 31_000, &[claim(&b, 300), claim(&c, 10)])
        .expect("claim");
    assert!(ok);
    assert_eq!(
        e,
        vec![
            Elsewhere {
                used: 600,
                reserved: 0
            },
            Elsewhere::default()
        ]
    );
    // 600 used + 300 held by x: y's 200 does not fit; nothing of y's is written.
    let (ok, e) = s
        .claim("y", 1_000, 31_000, &[claim(&c, 10), claim(&b, 200)])
        .expect("claim");
    assert!(!ok);
    assert_eq!(
        e[1],
        Elsewhere {
            used: 600,
            reserved: 300
        }
    );
    let got = share(s, "u", 1_000, &[], &[b.clone(), c.clone()]);
    assert_eq!(got.elsewhere[0].reserved, 300);
    assert_eq!(got.elsewhere[1].reserved, 10);
    // 100 fits exactly.
    let (ok, _) = s
        .claim("y", 1_000, 31_000, &[claim(&b, 100)])
        .expect("claim");
    assert!(ok);
}

/// A batch of claims (one entry per instance, each counting the ones before it) is
/// granted from the first entry for as long as every claim fits; the holds are those of
/// the last granted entry; a batch whose first entry does not fit changes nothing.
pub fn batched_claims_grant_the_entries_that_fit_in_order(s: &mut dyn UsageStore) {
    let b = budget("k", Some("p"), None, false);
    let c = budget("c /a", Some("p"), Some("/a"), false);
    for id in ["x", "me", "u"] {
        s.begin_run(&run(id, "p", 1_500), &[]).expect("begin");
    }
    let claim = |b: &SharedBudget, hold: i64| Claim {
        budget: b.clone(),
        mine: hold,
        hold,
        limit: 100,
    };
    let (ok, _) = s
        .claim("x", 1_000, 31_000, &[claim(&b, 50)])
        .expect("claim");
    assert!(ok);
    // 50 held by x: 20, then 40 fit; 60 does not, nor anything after it (even what
    // would fit on its own: plan order is kept).
    let batch = vec![
        vec![claim(&b, 20), claim(&c, 20)],
        vec![claim(&b, 40)],
        vec![claim(&b, 60), claim(&c, 40)],
        vec![claim(&c, 60)],
    ];
    let (granted, e) = s.claim_many("me", 1_000, 31_000, &batch).expect("claim");
    assert_eq!(granted, 2);
    assert_eq!(
        e,
        vec![
            Elsewhere {
                used: 0,
                reserved: 50
            },
            Elsewhere::default()
        ],
        "one answer per budget, in the order they first appear"
    );
    let got = share(s, "u", 1_000, &[], &[b.clone(), c.clone()]);
    assert_eq!(
        got.elsewhere[0].reserved, 90,
        "x's 50 and the last granted 40"
    );
    assert_eq!(got.elsewhere[1].reserved, 20);
    // Nothing fits: nothing changes.
    let (granted, _) = s
        .claim_many(
            "me",
            1_000,
            31_000,
            &[vec![claim(&b, 51)], vec![claim(&b, 52)]],
        )
        .expect("claim");
    assert_eq!(granted, 0);
    let got = share(s, "u", 1_000, &[], &[b.clone(), c.clone()]);
    assert_eq!(
        (got.elsewhere[0].reserved, got.elsewhere[1].reserved),
        (90, 20)
    );
    // An empty batch, and an entry with no claim, are granted.
    assert_eq!(s.claim_many("me", 1_000, 31_000, &[]).expect("claim").0, 0);
    assert_eq!(
        s.claim_many("me", 1_000, 31_000, &[vec![]])
            .expect("claim")
            .0,
        1
    );
}

/// A run's use that its instance rows do not show yet (written with each share) counts
/// for the other runs like rows of its project, command and start; a share that writes
/// the rows replaces it in the same transaction, so nothing is counted twice or missed;
/// it stays when the run ends without rows that show it.
pub fn unflushed_use_counts_until_the_rows_show_it(s: &mut dyn UsageStore) {
    let b = [
        budget("t project", Some("p"), None, false),
        budget("c /a", Some("p"), Some("/a"), true),
        budget("t q", Some("q"), None, false),
    ];
    s.begin_run(&run("me", "p", 1_500), &[]).expect("begin");
    s.begin_run(&run("r", "p", 1_500), &[inst(0, "/a", 100, 10)])
        .expect("begin");
    let used = |s: &mut dyn UsageStore| -> Vec<i64> {
        share(s, "me", 1_600, &[], &b)
            .elsewhere
            .iter()
            .map(|e| e.used)
            .collect()
    };
    assert_eq!(used(s), vec![100, 10, 0]);
    let put = |s: &mut dyn UsageStore, instances: &[InstanceRecord], unflushed: &[Unflushed]| {
        s.share(&ShareRequest {
            run_id: "r",
            project: "p",
            now_ms: 1_600,
            lease_until_ms: 31_600,
            instances,
            unflushed,
            holds: &[],
            pause: None,
            budgets: &[],
        })
        .expect("share");
    };
    let un = |command: Option<&str>, tokens, nanos| Unflushed {
        base_command: command.map(str::to_string),
        tokens,
        nanos,
    };
    // 50 tokens more of /a and 7 of free text since its rows were written.
    put(s, &[], &[un(Some("/a"), 50, 5), un(None, 7, 1)]);
    assert_eq!(used(s), vec![157, 15, 0]);
    // Replaced, not added to.
    put(s, &[], &[un(Some("/a"), 60, 6)]);
    assert_eq!(used(s), vec![160, 16, 0]);
    // The rows take it over in the same transaction.
    put(s, &[inst(0, "/a", 160, 16)], &[]);
    assert_eq!(used(s), vec![160, 16, 0]);
    // A run that stops without writing its rows keeps counting what it said.
    put(s, &[], &[un(Some("/a"), 40, 4)]);
    s.finish_run(
        "r",
        &RunEnd {
            ended_ms: 1_700,
            exit_code: 137,
            exit_reason: "killed".into(),
        },
    )
    .expect("finish");
    assert_eq!(used(s), vec![200, 20, 0]);
    // Never its own.
    let mine = s
        .elsewhere("r", 1_600, &b[..1])
        .expect("elsewhere")
        .first()
        .map(|e| e.used);
    assert_eq!(mine, Some(0));
}

/// A pause published by one run reaches the other runs of its project until it ends,
/// and a later pause of the same kind extends it, never shortens it.
pub fn pauses_reach_the_other_runs_of_the_project(s: &mut dyn UsageStore) {
    for id in ["a", "me"] {
        s.begin_run(&run(id, "p", 1_500), &[]).expect("begin");
    }
    let pause = |until_ms| FleetPause {
        project: "p".into(),
        kind: "usage_limit".into(),
        until_ms,
        reason: "resets 4:20am".into(),
        run_id: "a".into(),
    };
    let publish = |s: &mut dyn UsageStore, p: &FleetPause| {
        s.share(&ShareRequest {
            run_id: "a",
            project: "p",
            now_ms: 1_000,
            lease_until_ms: 31_000,
            instances: &[],
            unflushed: &[],
            holds: &[],
            pause: Some(p),
            budgets: &[],
        })
        .expect("share")
    };
    assert!(publish(s, &pause(9_000)).pauses.is_empty(), "not to itself");
    publish(s, &pause(5_000));
    assert_eq!(share(s, "me", 8_999, &[], &[]).pauses, vec![pause(9_000)]);
    assert!(share(s, "me", 9_000, &[], &[]).pauses.is_empty());
    let other = s
        .share(&ShareRequest {
            run_id: "me",
            project: "elsewhere",
            now_ms: 1_000,
            lease_until_ms: 31_000,
            instances: &[],
            unflushed: &[],
            holds: &[],
            pause: None,
            budgets: &[],
        })
        .expect("share");
    assert!(
        other.pauses.is_empty(),
        "another project's runs are not paused"
    );
}

/// An instance as the ledger tests before the shared budgets wrote them: a model, a
/// status, all four token classes and an end.
pub fn ended(index: u32, command: &str, status: &str, tokens: u64, nanos: i64) -> InstanceRecord {
    InstanceRecord {
        index,
        name: format!("i{index}"),
        command: command.into(),
        base_command: crate::core::plan::base_command(command).map(str::to_string),
        configured_model: None,
        model: Some("claude-sonnet-4".into()),
        status: status.into(),
        usage: Usage::new(tokens, 1, 2, 3),
        cost: Usd(nanos),
        tool_calls: 2,
        ended_ms: Some(i64::from(index)),
        ..Default::default()
    }
}

/// Writes carry absolute values: repeating one (or the run's start) never adds.
pub fn repeated_writes_never_double_count(s: &mut dyn UsageStore) {
    s.begin_run(&run("r1", "p", 1000), &[ended(0, "/a", "pending", 0, 0)])
        .expect("begin");
    for _ in 0..3 {
        s.record("r1", 2000, &[ended(0, "/a", "completed", 10, 7)])
            .expect("record");
    }
    s.begin_run(&run("r1", "p", 1000), &[])
        .expect("begin again");
    let g = s
        .usage(&UsageQuery::everything(GroupBy::Project))
        .expect("usage");
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].instances, 1);
    assert_eq!(g[0].runs, 1);
    assert_eq!(g[0].usage, Usage::new(10, 1, 2, 3));
    assert_eq!(g[0].cost, Usd(7));
    assert_eq!(g[0].completed_tokens, vec![16]);
}

/// `--by command`: free text groups under `(prompt)`, which sorts first.
pub fn groups_by_command_with_free_text_under_prompt(s: &mut dyn UsageStore) {
    s.begin_run(
        &run("r1", "p", 0),
        &[
            ended(0, "/a x", "completed", 10, 1),
            ended(1, "fix it", "failed", 20, 2),
            ended(2, "/a y", "completed", 30, 3),
        ],
    )
    .expect("begin");
    let g = s
        .usage(&UsageQuery::everything(GroupBy::Command))
        .expect("usage");
    let keys: Vec<&str> = g.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, vec![PROMPT_KEY, "/a"]);
    assert_eq!(g[1].instances, 2);
    assert_eq!(g[1].completed, 2);
    assert_eq!(g[1].cost, Usd(4));
    assert_eq!(g[0].completed, 0);
    assert!(g[0].completed_tokens.is_empty());
}

/// An estimate's history: the newest completed instances of the same project, command
/// and model.
pub fn history_is_newest_completed_of_the_same_key(s: &mut dyn UsageStore) {
    let mut list: Vec<InstanceRecord> = (0..5)
        .map(|i| ended(i, "/a", "completed", u64::from(i) * 100, 0))
        .collect();
    list.push(ended(5, "/a", "failed", 9999, 0));
    list.push(ended(6, "/b", "completed", 9999, 0));
    s.begin_run(&run("r1", "p", 0), &list).expect("begin");
    let key = HistoryKey {
        project: "p".into(),
        base_command: Some("/a".into()),
        model: None,
    };
    let h = s.history(&key, 3).expect("history");
    assert_eq!(h, vec![406, 306, 206]);
    let other = HistoryKey {
        project: "q".into(),
        ..key
    };
    assert!(s.history(&other, 3).expect("history").is_empty());
}

/// `newest_periodic`: the newest run of the project whose recorded budgets hold a
/// periodic one (a later run without one, another project's run, an instance named
/// "periodic" do not count), read back with its zone.
pub fn the_newest_periodic_budgets_of_a_project_are_read_back(s: &mut dyn UsageStore) {
    use crate::core::period::{Period, PeriodScope, Zone};
    assert_eq!(s.newest_periodic("p").expect("read"), None);
    let with = |id: &str, project: &str, started_ms: i64, budgets: &str| RunRecord {
        budgets_json: budgets.into(),
        ..run(id, project, started_ms)
    };
    let day = r#"[{"scope":"overall","key":null,"unit":"tokens","limit":9},
        {"scope":"periodic","key":"day","unit":"tokens","limit":100,"zone":"Europe/Berlin"},
        {"scope":"periodic","key":"day","unit":"usd","limit":2.5,"zone":"Europe/Berlin"},
        {"scope":"periodic","key":"month /review","unit":"usd","limit":40,"zone":"Europe/Berlin"}]"#;
    let week = r#"[{"scope":"periodic","key":"week","unit":"tokens","limit":5}]"#;
    let instance = r#"[{"scope":"instance","key":"periodic","unit":"tokens","limit":5}]"#;
    for (id, project, started_ms, budgets) in [
        ("old", "p", 1_000, week),
        ("mine", "p", 2_000, day),
        ("later", "p", 3_000, "[]"),
        ("named", "p", 4_000, instance),
        ("other", "q", 5_000, day),
    ] {
        s.begin_run(&with(id, project, started_ms, budgets), &[])
            .expect("begin");
    }
    let got = s.newest_periodic("p").expect("read").expect("found");
    assert_eq!(got.run_id, "mine");
    assert_eq!(got.started_ms, 2_000);
    assert_eq!(got.zone, Zone::parse("Europe/Berlin").expect("zone"));
    assert_eq!(got.periodic.len(), 2, "{got:?}");
    assert_eq!(got.periodic[0].period, Period::Day);
    assert_eq!(got.periodic[0].scope, PeriodScope::Project);
    assert_eq!(got.periodic[0].tokens, Some(100));
    assert_eq!(got.periodic[0].usd, Some(Usd::from_dollars(2.5)));
    assert_eq!(got.periodic[1].period, Period::Month);
    assert_eq!(
        got.periodic[1].scope,
        PeriodScope::Command("/review".into())
    );
    assert_eq!(got.periodic[1].usd, Some(Usd::from_dollars(40.0)));
    // A run that recorded no zone counts in UTC.
    s.begin_run(
        &with(
            "newest",
            "p",
            6_000,
            r#"[{"scope":"periodic","key":"week all","unit":"tokens","limit":5}]"#,
        ),
        &[],
    )
    .expect("begin");
    let got = s.newest_periodic("p").expect("read").expect("found");
    assert_eq!((got.run_id.as_str(), got.zone), ("newest", Zone::Utc));
    assert_eq!(got.periodic[0].scope, PeriodScope::All);
}

/// Eight connections open (create, migrate) one fresh ledger at the same moment and each
/// writes its run 50 times: nothing fails and nothing is lost. `open` opens a new
/// connection to that ledger.
pub fn many_connections_opening_and_writing_one_fresh_ledger_lose_nothing(
    open: impl Fn() -> Result<Box<dyn UsageStore>, StoreError> + Send + Sync + 'static,
) {
    let open = std::sync::Arc::new(open);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (open, barrier) = (open.clone(), barrier.clone());
            std::thread::spawn(move || -> Result<(), StoreError> {
                barrier.wait();
                let mut s = open()?;
                let id = format!("run-{t}");
                s.begin_run(&run(&id, "p", 0), &[])?;
                for step in 1..=50u64 {
                    let list: Vec<InstanceRecord> = (0..4)
                        .map(|i| ended(i, "/a", "running", step, i64::from(i) + 1))
                        .collect();
                    s.record(&id, i64::try_from(step).unwrap_or(0), &list)?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread").expect("no write may fail");
    }
    let g = open()
        .expect("open")
        .usage(&UsageQuery::everything(GroupBy::Run))
        .expect("usage");
    assert_eq!(g.len(), 8);
    for g in &g {
        assert_eq!(g.instances, 4);
        assert_eq!(g.usage.input_tokens, 200);
        assert_eq!(g.cost, Usd(10));
    }
}
