//! Snapshot tests of whole reports: exact expected text, plain and coloured.

use super::*;
use crate::core::budget::BudgetState;

fn inst(name: &'static str, status: Status) -> InstanceLine<'static> {
    InstanceLine {
        name,
        status,
        model: None,
        duration: None,
        usage: Usage::default(),
        cost: Usd::ZERO,
        tools: 0,
        budget_percent: None,
        activity: None,
        result: None,
        reason: None,
        ended_ago: None,
    }
}

fn sample() -> Snapshot<'static> {
    Snapshot {
        elapsed: Duration::from_millis(65_400),
        mode: Mode::Block,
        totals: Usage::new(3_200, 1_450, 1_200, 900),
        total_cost: Usd::from_dollars(0.0713),
        budgets: vec![
            BudgetLine {
                label: "overall".into(),
                unit_is_usd: false,
                limit: 5000.0,
                used: 6234.0,
                state: BudgetState::Exceeded,
            },
            BudgetLine {
                label: "overall (USD)".into(),
                unit_is_usd: true,
                limit: 0.1,
                used: 0.0713,
                state: BudgetState::Warned,
            },
            BudgetLine {
                label: "/test".into(),
                unit_is_usd: false,
                limit: 1000.0,
                used: 400.0,
                state: BudgetState::Ok,
            },
        ],
        instances: vec![
            InstanceLine {
                model: Some("claude-sonnet-4-5"),
                duration: Some(Duration::from_millis(42_300)),
                usage: Usage::new(2_000, 1_234, 1_200, 900),
                cost: Usd::from_dollars(0.0512),
                tools: 7,
                budget_percent: Some(124.68),
                activity: Some("Bash: cargo test --workspace"),
                result: Some("All 42 tests passed.\nNo warnings."),
                ..inst("unit-tests", Status::Completed)
            },
            InstanceLine {
                model: Some("claude-haiku-4-5"),
                duration: Some(Duration::from_millis(65_000)),
                usage: Usage::new(1_200, 216, 0, 0),
                cost: Usd::from_dollars(0.0201),
                tools: 2,
                budget_percent: Some(40.0),
                activity: Some("api_retry attempt 2 (529)"),
                ..inst("lint", Status::Running)
            },
            InstanceLine {
                reason: Some("overall budget exceeded: 6.2K/5.0K tokens".into()),
                ..inst("e2e", Status::Blocked)
            },
        ],
        visuals: true,
        starts_in: None,
        launches: None,
    }
}

fn plain_status(width: usize) -> String {
    render_status(&sample(), &Styles::plain(), width, 500)
}

const STATUS_120: &str = "\
=== orchestrator status · run time 1m05s · 2/3 done · ETA ~32.7s ===
instances 3: 1 running, 1 completed, 1 blocked
total 6.8K tokens · $0.0713

BUDGET STATUS · block mode
  overall        [████████████████████] 124.7% (6.2K/5.0K tokens) · 5.7K/min
  overall (USD)  [██████████████░░░░░░] 71.3% ($0.0713/$0.1000) · $0.0654/min · out in ~26.3s
  /test          [████████░░░░░░░░░░░░] 40.0% (400/1.0K tokens) · 367/min · out in ~1m38s

STATUS     NAME        MODEL               TIME  TOKENS     IN/OUT  CACHE W/R  TOOLS     COST  BUDGET  ACTIVITY
completed  unit-tests  claude-sonnet-4-5  42.3s    5.3K  2.0K/1.2K   1.2K/900      7  $0.0512  124.7%  Bash: cargo test…
running    lint        claude-haiku-4-5   1m05s    1.4K   1.2K/216        0/0      2  $0.0201   40.0%  api_retry attemp…
blocked    e2e         -                      -       0        0/0        0/0      0  $0.0000       -
";

#[test]
fn status_report_plain_snapshot() {
    assert_eq!(plain_status(120), STATUS_120);
}

#[test]
fn status_report_drops_columns_on_a_narrow_terminal() {
    let want = "\
status · 1m05s · 2/3 done · ETA ~32.7s
instances 3: 1 running, 1 completed, 1 blocked
total 6.8K tokens · $0.0713

BUDGET STATUS · block mode
  overall        [██████████] 124.7% (6.2K/5.0K tokens)
  overall (USD)  [███████░░░] 71.3% ($0.0713/$0.1000)
  /test          [████░░░░░░] 40.0% (400/1.0K tokens)

STATUS     NAME         TIME  TOKENS     COST
completed  unit-tests  42.3s    5.3K  $0.0512
running    lint        1m05s    1.4K  $0.0201
blocked    e2e             -       0  $0.0000
";
    assert_eq!(plain_status(60), want);
}

#[test]
fn no_line_is_ever_wider_than_the_terminal() {
    let mut s = sample();
    s.instances.push(InstanceLine {
        model: Some("claude-opus-4-1-20250805[1m]"),
        activity: Some("日本語のテキスト\nsecond line\twith tab 🚀🚀🚀🚀"),
        ..inst(
            "名前がとても長いインスタンス-with-a-very-long-ascii-tail",
            Status::Waiting,
        )
    });
    for styles in [Styles::plain(), Styles::colored()] {
        for width in 0..=160 {
            let text = render_status(&s, &styles, width, 500);
            for line in text.lines() {
                let w = display_width(&strip_escapes(line));
                assert!(w <= width, "width {width}: {w} columns in {line:?}");
            }
            assert_eq!(line_count(&text, width.max(1)), text.lines().count());
        }
    }
}

#[test]
fn plain_output_has_no_escape_codes() {
    let s = sample();
    let status = render_status(&s, &Styles::plain(), 120, 500);
    let summary = render_summary(&s, &Styles::plain(), 120, 500, 3, "budget");
    assert!(!status.contains('\x1b'));
    assert!(!summary.contains('\x1b'));
}

#[test]
fn text_from_claude_cannot_inject_escape_codes() {
    let mut s = sample();
    s.instances[0].activity = Some("\x1b[2J\x1b[Hwiped");
    s.instances[0].result = Some("\x1b]0;title\x07done");
    let status = render_status(&s, &Styles::plain(), 120, 500);
    let summary = render_summary(&s, &Styles::plain(), 120, 500, 0, "ok");
    assert!(!status.contains('\x1b') && !summary.contains('\x1b'));
    assert!(status.contains("[2J[Hwiped"));
}

#[test]
fn coloured_status_report_is_the_plain_one_plus_escape_codes() {
    let colored = render_status(&sample(), &Styles::colored(), 120, 500);
    assert_eq!(strip_escapes(&colored), STATUS_120);
    let red = "\x1b[31m";
    let yellow = "\x1b[33m";
    let green = "\x1b[32m";
    let cyan = "\x1b[36m";
    let end = "\x1b[39m";
    for want in [
        format!("  overall        [{red}████████████████████{end}] {red}124.7%{end} (6.2K/5.0K tokens) · 5.7K/min\n"),
        format!("  overall (USD)  [{yellow}██████████████{end}░░░░░░] {yellow}71.3%{end} ($0.0713/$0.1000) · $0.0654/min · out in ~26.3s\n"),
        format!("  /test          [{green}████████{end}░░░░░░░░░░░░] {green}40.0%{end} (400/1.0K tokens) · 367/min · out in ~1m38s\n"),
        format!("\n{green}completed{end}  unit-tests  "),
        format!("\n{cyan}running{end}    lint  "),
        format!("\n{yellow}blocked{end}    e2e  "),
        format!("instances 3: 1 {cyan}running{end}, 1 {green}completed{end}, 1 {yellow}blocked{end}\n"),
        format!("$0.0512  {red}124.7%{end}  \x1b[2mBash: cargo test…\x1b[0m\n"),
        "\x1b[1mBUDGET STATUS · block mode\x1b[0m\n".to_string(),
    ] {
        assert!(colored.contains(&want), "missing {want:?} in\n{colored:?}");
    }
}

#[test]
fn status_colours_by_state() {
    let c = Styles::colored();
    let cases = [
        (Status::Running, "\x1b[36mrunning\x1b[39m"),
        (Status::Completed, "\x1b[32mcompleted\x1b[39m"),
        (Status::Failed, "\x1b[31mfailed\x1b[39m"),
        (Status::TimedOut, "\x1b[31mtimed_out\x1b[39m"),
        (Status::Terminated, "\x1b[31mterminated\x1b[39m"),
        (Status::Blocked, "\x1b[33mblocked\x1b[39m"),
        (Status::Interrupted, "\x1b[33minterrupted\x1b[39m"),
        (Status::Waiting, "\x1b[2mwaiting\x1b[0m"),
        (Status::Pending, "\x1b[2mpending\x1b[0m"),
    ];
    for (status, want) in cases {
        let s = Snapshot {
            instances: vec![inst("x", status)],
            ..sample()
        };
        let text = render_status(&s, &c, 120, 500);
        let row = text.lines().last().unwrap_or("");
        assert!(row.starts_with(want), "{status:?}: {row:?}");
    }
}

#[test]
fn counts_show_only_statuses_present() {
    let s = Snapshot {
        instances: vec![
            inst("a", Status::Failed),
            inst("b", Status::Pending),
            inst("c", Status::Failed),
        ],
        ..sample()
    };
    let text = render_status(&s, &Styles::plain(), 120, 500);
    assert_eq!(
        text.lines().nth(1),
        Some("instances 3: 1 pending, 2 failed")
    );
    let empty = Snapshot {
        instances: vec![],
        ..sample()
    };
    let text = render_status(&empty, &Styles::plain(), 120, 500);
    assert_eq!(text.lines().nth(1), Some("instances 0"));
}

#[test]
fn no_budget_set() {
    let mut s = sample();
    s.budgets.clear();
    let text = render_status(&s, &Styles::plain(), 120, 500);
    assert!(
        text.contains("BUDGET STATUS · block mode\n  overall  [NO BUDGET SET]\n"),
        "{text}"
    );
    s.budgets.push(BudgetLine {
        label: "/lint".into(),
        unit_is_usd: false,
        limit: 0.0,
        used: 50.0,
        state: BudgetState::Ok,
    });
    let text = render_status(&s, &Styles::plain(), 120, 500);
    assert!(
        text.contains("BUDGET STATUS · block mode\n  /lint    [NO BUDGET SET]\n"),
        "{text}"
    );
}

#[test]
fn without_visuals_budgets_are_numbers_only() {
    let mut s = sample();
    s.visuals = false;
    let text = render_status(&s, &Styles::plain(), 120, 500);
    assert!(
        text.contains(
            "BUDGET STATUS · block mode
  overall        6.2K/5.0K tokens (124.7%) · 5.7K/min
  overall (USD)  $0.0713/$0.1000 (71.3%) · $0.0654/min · out in ~26.3s
  /test          400/1.0K tokens (40.0%) · 367/min · out in ~1m38s
"
        ),
        "{text}"
    );
    assert!(!text.contains('█') && !text.contains('░'));
    s.budgets.clear();
    let text = render_status(&s, &Styles::plain(), 120, 500);
    assert!(
        text.contains("BUDGET STATUS · block mode\n  overall  no budget set\n"),
        "{text}"
    );
}

const SUMMARY_120: &str = "\
=== orchestrator summary · run time 1m05s · 2/3 done · ETA ~32.7s ===
instances 3: 1 running, 1 completed, 1 blocked
total 6.8K tokens · $0.0713

STATUS     NAME        MODEL               TIME  TOKENS     IN/OUT  CACHE W/R  TOOLS     COST  BUDGET  ACTIVITY
completed  unit-tests  claude-sonnet-4-5  42.3s    5.3K  2.0K/1.2K   1.2K/900      7  $0.0512  124.7%  Bash: cargo test…
running    lint        claude-haiku-4-5   1m05s    1.4K   1.2K/216        0/0      2  $0.0201   40.0%  api_retry attemp…
blocked    e2e         -                      -       0        0/0        0/0      0  $0.0000       -

RESULTS
  unit-tests [completed]: All 42 tests passed. No warni…
  lint [running]: (no result)
  e2e [blocked]: overall budget exceeded: 6.2K…

BUDGETS · block mode
  overall        exceeded  [████████████████████] 124.7% (6.2K/5.0K tokens) · 5.7K/min
  overall (USD)  warned    [██████████████░░░░░░] 71.3% ($0.0713/$0.1000) · $0.0654/min · out in ~26.3s
  /test          ok        [████████░░░░░░░░░░░░] 40.0% (400/1.0K tokens) · 367/min · out in ~1m38s

efficiency: cache hit 17.0%, 750 tokens per tool call, $0.0713 per completed instance

exit code 3: a budget blocked or terminated an instance
";

fn summary(styles: &Styles) -> String {
    render_summary(
        &sample(),
        styles,
        120,
        30,
        3,
        "a budget blocked or terminated an instance",
    )
}

#[test]
fn summary_plain_snapshot() {
    assert_eq!(summary(&Styles::plain()), SUMMARY_120);
}

#[test]
fn summary_shows_reason_and_result_when_both_exist() {
    let mut s = sample();
    s.instances[0].status = Status::Failed;
    s.instances[0].reason = Some("exit status 1".into());
    let text = render_summary(&s, &Styles::plain(), 120, 500, 1, "an instance failed");
    assert!(
        text.contains(
            "  unit-tests [failed]: exit status 1\n    result: All 42 tests passed. No warnings.\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("\nexit code 1: an instance failed\n"));
}

#[test]
fn summary_without_budgets() {
    let mut s = sample();
    s.budgets.clear();
    let text = render_summary(&s, &Styles::plain(), 120, 500, 0, "all instances completed");
    assert!(
        text.ends_with("BUDGETS · block mode\n  no budget set\n\nefficiency: cache hit 17.0%, 750 tokens per tool call, $0.0713 per completed instance\n\nexit code 0: all instances completed\n"),
        "{text}"
    );
}

#[test]
fn coloured_summary_is_the_plain_one_plus_escape_codes() {
    let colored = summary(&Styles::colored());
    assert_eq!(strip_escapes(&colored), SUMMARY_120);
    for want in [
        "  overall        \x1b[31mexceeded\x1b[39m  [\x1b[31m████████████████████\x1b[39m] \x1b[31m124.7%\x1b[39m (6.2K/5.0K tokens) · 5.7K/min\n",
        "  /test          \x1b[32mok\x1b[39m        [\x1b[32m████████\x1b[39m░░░░░░░░░░░░] \x1b[32m40.0%\x1b[39m (400/1.0K tokens) · 367/min · out in ~1m38s\n",
        "  \x1b[1me2e\x1b[0m [\x1b[33mblocked\x1b[39m]: overall budget exceeded: 6.2K…\n",
        "\x1b[31mexit code 3: a budget blocked or terminated an instance\x1b[39m\n",
    ] {
        assert!(colored.contains(want), "missing {want:?} in\n{colored:?}");
    }
    let ok = render_summary(
        &sample(),
        &Styles::colored(),
        120,
        30,
        0,
        "all instances completed",
    );
    assert!(ok.ends_with("\x1b[32mexit code 0: all instances completed\x1b[39m\n"));
}

#[test]
fn live_region_moves_up_over_what_was_drawn() {
    assert_eq!(live_region(0, "a\nb\n"), "a\nb\n");
    assert_eq!(live_region(3, "a\nb\n"), "\x1b[3A\x1b[Ja\nb\n");
    let first = plain_status(120);
    let n = line_count(&first, 120);
    assert_eq!(n, 13);
    assert!(live_region(n, &first).starts_with("\x1b[13A\x1b[J=== orchestrator status"));
}

#[test]
fn line_count_counts_wrapped_rows_and_ignores_colour() {
    assert_eq!(line_count("", 80), 0);
    assert_eq!(line_count("\n", 80), 1);
    assert_eq!(line_count("abc\n", 80), 1);
    assert_eq!(line_count("abc", 80), 1);
    assert_eq!(line_count("abcdef\nx\n", 3), 3);
    assert_eq!(line_count("abcdefg\n", 3), 3);
    assert_eq!(line_count("\x1b[32mabc\x1b[39m\n", 3), 1);
    assert_eq!(line_count("日本\n", 3), 2);
}

#[test]
fn long_names_and_activity_shrink_before_columns_vanish() {
    let mut s = sample();
    s.instances.push(InstanceLine {
        model: Some("claude-opus-4-1-20250805[1m]"),
        activity: Some("日本語のテキスト\nsecond line"),
        ..inst(
            "名前がとても長いインスタンス-with-a-long-ascii-tail",
            Status::Waiting,
        )
    });
    let text = render_status(&s, &Styles::plain(), 100, 500);
    let table: Vec<&str> = text.lines().skip(9).collect();
    assert_eq!(
        table,
        [
            "STATUS     NAME              MODEL            TIME  TOKENS  TOOLS     COST  BUDGET  ACTIVITY",
            "completed  unit-tests        claude-sonnet…  42.3s    5.3K      7  $0.0512  124.7%  Bash: cargo tes…",
            "running    lint              claude-haiku-…  1m05s    1.4K      2  $0.0201   40.0%  api_retry attem…",
            "blocked    e2e               -                   -       0      0  $0.0000       -",
            "waiting    名前がとても長…   claude-opus-4…      -       0      0  $0.0000       -  日本語のテキス…",
        ]
    );
}

#[test]
fn activity_respects_max_line_length() {
    let text = render_status(&sample(), &Styles::plain(), 120, 6);
    assert!(text.contains("124.7%  Bash:…\n"), "{text}");
}

#[test]
fn header_shows_progress_eta_and_burn_rate() {
    // 12 of 60 done after 2 minutes: 48 left at 10 s each.
    let mut s = sample();
    s.elapsed = Duration::from_secs(120);
    s.instances = (0..60)
        .map(|i| {
            inst(
                "x",
                if i < 12 {
                    Status::Completed
                } else {
                    Status::Running
                },
            )
        })
        .collect();
    s.budgets = vec![BudgetLine {
        label: "overall".into(),
        unit_is_usd: false,
        limit: 50_000.0,
        used: 10_000.0,
        state: BudgetState::Ok,
    }];
    let text = render_status(&s, &Styles::plain(), 100, 500);
    let head: Vec<&str> = text.lines().take(7).collect();
    assert_eq!(
        head,
        [
            "=== orchestrator status · run time 2m00s · 12/60 done · ETA ~8m00s ===",
            "instances 60: 48 running, 12 completed",
            "total 6.8K tokens · $0.0713",
            "",
            "BUDGET STATUS · block mode",
            "  overall  [████░░░░░░░░░░░░░░░░] 20.0% (10.0K/50.0K tokens) · 5.0K/min · out in ~8m00s",
            "",
        ]
    );
    // At 80 columns the forecast stays and the bar gets shorter.
    let text = render_status(&s, &Styles::plain(), 80, 500);
    assert!(
        text.contains(
            "\n  overall  [██░░░░░░░░] 20.0% (10.0K/50.0K tokens) · 5.0K/min · out in ~8m00s\n"
        ),
        "{text}"
    );
    // No forecast in the first seconds, nor an ETA before anything finished.
    s.elapsed = Duration::from_secs(2);
    let text = render_status(&s, &Styles::plain(), 100, 500);
    assert!(
        text.starts_with("=== orchestrator status · run time 2.0s · 12/60 done ===\n"),
        "{text}"
    );
    assert!(text.contains("(10.0K/50.0K tokens)\n"), "{text}");
}

#[test]
fn live_view_fits_the_terminal_with_header_and_bars_pinned() {
    let mut s = sample();
    s.elapsed = Duration::from_secs(120);
    s.instances = (0..60)
        .map(|i| InstanceLine {
            ended_ago: (i < 12).then(|| Duration::from_secs(60 - i as u64)),
            ..inst(
                NAMES[i],
                if i < 12 {
                    Status::Completed
                } else if i < 20 {
                    Status::Running
                } else {
                    Status::Pending
                },
            )
        })
        .collect();
    let text = render_live(&s, &Styles::plain(), 80, 24, 500);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 23, "{text}");
    assert!(lines[0].starts_with("=== orchestrator status · run time 2m00s · 12/60 done"));
    assert!(
        lines.iter().any(|l| l.starts_with("  overall        [")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("  /test          [")),
        "{text}"
    );
    assert!(lines.iter().all(|l| display_width(l) <= 80), "{text}");
    // Running first in launch order, then the most recently finished.
    let rows: Vec<&str> = lines
        .iter()
        .skip_while(|l| !l.starts_with("STATUS"))
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        &rows[..9],
        ["n12", "n13", "n14", "n15", "n16", "n17", "n18", "n19", "n11"]
    );
    assert_eq!(lines[22], format!("… {} more", 60 - (rows.len() - 1)));
    // Tiny terminals still get the header first and never more rows than they have.
    for h in 1..12 {
        let t = render_live(&s, &Styles::plain(), 80, h, 500);
        assert!(
            t.lines().count() <= h.saturating_sub(1).max(1),
            "height {h}:\n{t}"
        );
        assert!(t.starts_with("=== orchestrator status"), "height {h}");
    }
}

#[test]
fn live_columns_do_not_change_as_numbers_grow() {
    let mut s = sample();
    let header = |s: &Snapshot<'_>| {
        render_live(s, &Styles::plain(), 80, 40, 500)
            .lines()
            .find(|l| l.starts_with("STATUS"))
            .map(str::to_string)
    };
    let before = header(&s);
    s.instances[1].usage = Usage::new(900_000, 90_000, 900_000, 900_000);
    s.instances[1].cost = Usd::from_dollars(12.5);
    s.instances[1].duration = Some(Duration::from_secs(3000));
    s.instances[2].model = Some("claude-opus-4-1-20250805");
    s.instances[2].activity = Some("a much longer activity text than before");
    assert_eq!(header(&s), before);
}

const NAMES: [&str; 60] = [
    "n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10", "n11", "n12", "n13", "n14",
    "n15", "n16", "n17", "n18", "n19", "n20", "n21", "n22", "n23", "n24", "n25", "n26", "n27",
    "n28", "n29", "n30", "n31", "n32", "n33", "n34", "n35", "n36", "n37", "n38", "n39", "n40",
    "n41", "n42", "n43", "n44", "n45", "n46", "n47", "n48", "n49", "n50", "n51", "n52", "n53",
    "n54", "n55", "n56", "n57", "n58", "n59",
];

#[test]
fn header_counts_down_to_start_at() {
    let mut s = sample();
    s.instances = vec![inst("a", Status::Pending), inst("b", Status::Pending)];
    s.elapsed = Duration::from_secs(5);
    s.starts_in = Some(Duration::from_secs(7195));
    let text = render_status(&s, &Styles::plain(), 100, 500);
    assert!(
        text.starts_with(
            "=== orchestrator status · run time 5.0s · 0/2 done · starts in 1h59m ===\n"
        ),
        "{text}"
    );
}
