//! `vdrill report DIR...`: one static HTML page from one or more run folders.
//!
//! The page stands alone: inline CSS, no script, no fonts or images from elsewhere,
//! so it opens from `file://` and can be attached to a CI run. Per run, every cell
//! with its verdict, its steps with their times, and each failure with its evidence
//! (the message, the failed assertions and the end of the step's log); above them,
//! the RTO of each drill across the runs as an inline SVG bar chart.
//!
//! Plain `write!` with escaping from `html-escape`: the page is one fixed layout,
//! and a template engine (askama) would bring a derive macro and its parser for it.
//! The chart is hand-written SVG for the same reason: plotting crates (plotters)
//! carry a drawing backend tree for a few dozen rectangles.

use std::fmt::Write;

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

use super::junit::share_percent;
use super::merge::RunFolder;
use super::{CellReport, Stage, Status, human, slug};

/// Lines of a failed step's log shown as evidence (the whole log is in the artifacts).
const LOG_TAIL_LINES: usize = 40;

/// Bar colours, one per run (cycled).
pub const RUN_COLOURS: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
];

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { margin: 0 0 .2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .4em 0; }
th, td { text-align: left; padding: 2px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 0 6px; border-radius: 3px; color: #fff; font-size: 12px; }
.passed .badge, .badge.passed { background: #2e7d32; } .failed .badge, .badge.failed { background: #c62828; }
.error .badge, .badge.error { background: #6a1b9a; } .skipped .badge, .badge.skipped { background: #757575; }
tr.failed td { background: #fdecea; } tr.error td { background: #f3e5f5; } tr.skipped td { color: #777; }
article.cell { border: 1px solid #ddd; border-radius: 4px; padding: .4em 1em; margin: 1em 0; }
article.cell h3 { margin: .3em 0; font-family: ui-monospace, monospace; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0 1em; margin: .3em 0; }
dl.facts dt { color: #555; } dl.facts dd { margin: 0; font-family: ui-monospace, monospace; }
.failure { border-left: 4px solid #c62828; padding: .2em .8em; margin: .6em 0; background: #fffafa; }
.failure.error { border-left-color: #6a1b9a; }
pre { white-space: pre-wrap; word-break: break-word; background: #f6f6f6; padding: .4em; margin: .3em 0; font-size: 12px; }
.verdict { font-weight: 600; }
svg text { font: 12px system-ui, sans-serif; fill: #222; }
.legend span { display: inline-block; margin-right: 1em; } .legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
"#;

/// The page for these runs (in the order given; the chart's bars follow it).
pub fn render(runs: &[RunFolder]) -> String {
    let mut h = String::new();
    let cells: usize = runs.iter().map(|r| r.run.cells.len()).sum();
    let count = |s: Status| -> usize {
        runs.iter()
            .flat_map(|r| &r.run.cells)
            .filter(|c| c.status == s)
            .count()
    };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>vdrill report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>vdrill report</h1>\n<p class=\"summary\">{} run(s), {cells} cell(s): {} passed, {} failed, \
         {} environment error(s), {} skipped.</p>\n",
        runs.len(),
        count(Status::Passed),
        count(Status::Failed),
        count(Status::Error),
        count(Status::Skipped),
    );
    attention(&mut h, runs);
    chart(&mut h, runs);
    for (n, folder) in runs.iter().enumerate() {
        run_section(&mut h, n, folder);
    }
    h.push_str("</body>\n</html>\n");
    h
}

/// The cells that did not pass, first: what someone opening the page looks for.
fn attention(h: &mut String, runs: &[RunFolder]) {
    let bad: Vec<(usize, &RunFolder, &CellReport)> = runs
        .iter()
        .enumerate()
        .flat_map(|(n, r)| r.run.cells.iter().map(move |c| (n, r, c)))
        .filter(|(_, _, c)| matches!(c.status, Status::Failed | Status::Error))
        .collect();
    if bad.is_empty() {
        return;
    }
    h.push_str("<section id=\"attention\">\n<h2>Not passed</h2>\n<ul>\n");
    for (n, r, c) in bad {
        let _ = writeln!(
            h,
            "<li class=\"{st}\"><span class=\"badge {st}\">{st}</span> <a href=\"#{}\">{}</a> (run {}): {}</li>",
            attr(&cell_anchor(n, c)),
            text(&c.id),
            text(&r.run.run_id),
            text(
                &c.verdict
                    .as_deref()
                    .map(super::junit::headline)
                    .unwrap_or_default()
            ),
            st = c.status.as_str(),
        );
    }
    h.push_str("</ul>\n</section>\n");
}

fn colour(n: usize) -> &'static str {
    RUN_COLOURS[n % RUN_COLOURS.len()]
}

/// The RTO of each drill (cell id) in each run: a group of horizontal bars per drill.
fn chart(h: &mut String, runs: &[RunFolder]) {
    let mut drills: Vec<&str> = runs
        .iter()
        .flat_map(|r| r.run.cells.iter().map(|c| c.id.as_str()))
        .collect();
    drills.sort_unstable();
    drills.dedup();
    let rto = |run: &RunFolder, drill: &str| -> Option<f64> {
        run.run
            .cells
            .iter()
            .find(|c| c.id == drill)
            .and_then(|c| c.rto)
            .map(|d| d.as_secs_f64())
    };
    let max = runs
        .iter()
        .flat_map(|r| r.run.cells.iter().filter_map(|c| c.rto))
        .map(|d| d.as_secs_f64())
        .fold(0.0_f64, f64::max);
    h.push_str("<section id=\"rto\">\n<h2>RTO per drill</h2>\n");
    h.push_str(
        "<p>Recovery time of each drill: from the start of the disaster step to the end of a clean \
         <code>assert-restored</code>. One bar per run; a drill without an RTO (it failed before, or \
         has no disaster step) has none.</p>\n<p class=\"legend\">",
    );
    for (n, r) in runs.iter().enumerate() {
        let _ = write!(
            h,
            "<span><i style=\"background:{}\"></i>run {}</span>",
            colour(n),
            text(&r.run.run_id)
        );
    }
    h.push_str("</p>\n");
    let label_w = 20 + 7 * drills.iter().map(|d| d.len()).max().unwrap_or(10).min(60);
    let bar_h = 14;
    let group_h = runs.len().max(1) * bar_h + 12;
    let plot_w = 480;
    let width = label_w + plot_w + 90;
    let height = 30 + drills.len() * group_h;
    let _ = writeln!(
        h,
        "<svg id=\"rto-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"RTO per drill across runs\">"
    );
    // The axis: 0 and the largest RTO.
    let _ = writeln!(
        h,
        "<line x1=\"{label_w}\" y1=\"20\" x2=\"{label_w}\" y2=\"{height}\" stroke=\"#999\"/>\
         <text x=\"{label_w}\" y=\"14\">0 s</text>\
         <text x=\"{}\" y=\"14\" text-anchor=\"end\">{:.1} s</text>",
        label_w + plot_w,
        max
    );
    for (i, drill) in drills.iter().enumerate() {
        let y0 = 24 + i * group_h;
        let _ = writeln!(
            h,
            "<text class=\"drill\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            label_w - 6,
            y0 + group_h / 2,
            text(drill)
        );
        for (n, run) in runs.iter().enumerate() {
            let y = y0 + n * bar_h;
            match rto(run, drill) {
                Some(secs) => {
                    let w = if max > 0.0 {
                        ((secs / max) * plot_w as f64).max(1.0)
                    } else {
                        1.0
                    };
                    let _ = writeln!(
                        h,
                        "<rect class=\"bar\" data-cell=\"{}\" data-run=\"{}\" data-rto=\"{secs:.6}\" x=\"{label_w}\" \
                         y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{}\"><title>{} in run {}: {secs:.1} s</title></rect>\
                         <text x=\"{:.1}\" y=\"{}\">{secs:.1} s</text>",
                        attr(drill),
                        attr(&run.run.run_id),
                        bar_h - 3,
                        colour(n),
                        text(drill),
                        text(&run.run.run_id),
                        label_w as f64 + w + 4.0,
                        y + bar_h - 4,
                    );
                }
                None if run.run.cells.iter().any(|c| c.id == *drill) => {
                    let _ = writeln!(
                        h,
                        "<text class=\"no-rto\" x=\"{}\" y=\"{}\" fill=\"#777\">no RTO</text>",
                        label_w + 4,
                        y + bar_h - 4
                    );
                }
                None => {}
            }
        }
    }
    h.push_str("</svg>\n</section>\n");
}

fn run_section(h: &mut String, n: usize, folder: &RunFolder) {
    let run = &folder.run;
    let _ = writeln!(
        h,
        "<section class=\"run\" id=\"run-{n}\" data-run=\"{}\">\n<h2><i style=\"display:inline-block;width:12px;height:12px;background:{}\"></i> Run {}</h2>",
        attr(&run.run_id),
        colour(n),
        text(&run.run_id)
    );
    let (p, f, e, s) = run.counts();
    let _ = writeln!(
        h,
        "<p>{} &middot; started {} &middot; {} &middot; vdrill {} &middot; {p} passed, {f} failed, {e} environment error(s), {s} skipped{}{}</p>",
        text(&folder.dir.display().to_string()),
        run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        human(run.duration),
        text(&run.vdrill_version),
        if run.interrupted {
            " &middot; <strong>interrupted</strong>"
        } else {
            ""
        },
        if run.merged_from.is_empty() {
            String::new()
        } else {
            format!(
                " &middot; merged from {}",
                text(&run.merged_from.join(", "))
            )
        }
    );
    h.push_str(
        "<table class=\"cells\"><tr><th>cell</th><th>result</th><th class=\"num\">time</th>\
         <th class=\"num\">RTO</th><th class=\"num\">vdrill</th><th>verdict</th></tr>\n",
    );
    for c in &run.cells {
        let _ = writeln!(
            h,
            "<tr class=\"{st}\"><td><a href=\"#{anchor}\">{id}</a></td><td><span class=\"badge {st}\">{st}</span></td>\
             <td class=\"num\">{time}</td><td class=\"num\">{rto}</td><td class=\"num\">{share:.1}%</td><td>{verdict}</td></tr>",
            st = c.status.as_str(),
            anchor = attr(&cell_anchor(n, c)),
            id = text(&c.id),
            time = human(c.duration),
            rto = c.rto.map(human).unwrap_or_else(|| "-".into()),
            share = share_percent(c),
            verdict = text(
                &c.verdict
                    .as_deref()
                    .map(super::junit::headline)
                    .unwrap_or_default()
            ),
        );
    }
    h.push_str("</table>\n");
    for c in &run.cells {
        cell_article(h, n, folder, c);
    }
    h.push_str("</section>\n");
}

fn cell_anchor(run: usize, c: &CellReport) -> String {
    format!("run-{run}-{}", slug(&c.id))
}

fn cell_article(h: &mut String, n: usize, folder: &RunFolder, c: &CellReport) {
    let st = c.status.as_str();
    let _ = writeln!(
        h,
        "<article class=\"cell {st}\" id=\"{}\" data-cell=\"{}\" data-status=\"{st}\">\n\
         <h3>{} <span class=\"badge\">{st}</span></h3>",
        attr(&cell_anchor(n, c)),
        attr(&c.id),
        text(&c.id)
    );
    if let Some(v) = &c.verdict {
        let _ = writeln!(h, "<p class=\"verdict\">{}</p>", text(v));
    }
    let mut facts: Vec<(&str, String)> = vec![
        ("scenario", format!("{} ({})", c.scenario, c.file.display())),
        ("Velero", c.velero_version.clone()),
    ];
    for (p, v) in &c.velero_plugins {
        facts.push(("plugin", format!("{p} {v}")));
    }
    if let Some(k) = &c.kubernetes_version {
        facts.push(("Kubernetes", k.clone()));
    }
    facts.push((
        "environment",
        format!("{} cluster, {} storage", c.cluster, c.storage),
    ));
    if !c.key_providers.is_empty() {
        facts.push(("keys", c.key_providers.join(", ")));
    }
    facts.push(("time", human(c.duration)));
    facts.push(("RTO", c.rto.map(human).unwrap_or_else(|| "-".into())));
    facts.push((
        "vdrill's share",
        format!("{:.1}% ({})", share_percent(c), human(c.overhead)),
    ));
    facts.push((
        "artifacts",
        folder.dir.join(&c.artifacts).display().to_string(),
    ));
    if let Some(k) = &c.kept {
        facts.push(("kept", k.clone()));
    }
    h.push_str("<dl class=\"facts\">");
    for (k, v) in facts {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", text(k), text(&v));
    }
    h.push_str("</dl>\n");

    h.push_str(
        "<table class=\"steps\"><tr><th>stage</th><th class=\"num\">#</th><th>step</th><th>result</th>\
         <th>started</th><th class=\"num\">time</th><th>message</th></tr>\n",
    );
    for s in &c.steps {
        let _ = writeln!(
            h,
            "<tr class=\"step {st}\"><td>{stage}</td><td class=\"num\">{idx}</td><td>{title}</td>\
             <td><span class=\"badge {st}\">{st}</span></td><td>{at}</td><td class=\"num\">{time}</td><td>{msg}</td></tr>",
            st = s.status.as_str(),
            stage = stage(s.stage),
            idx = s.index,
            title = text(&s.title),
            at = s.started_at.format("%H:%M:%S"),
            time = human(s.duration),
            msg = text(&super::junit::headline(&s.message)),
        );
    }
    h.push_str("</table>\n");

    for s in c
        .steps
        .iter()
        .filter(|s| matches!(s.status, Status::Failed | Status::Error))
    {
        let _ = writeln!(
            h,
            "<div class=\"failure {}\"><h4>{} {}: {}{}</h4>\n<pre class=\"message\">{}</pre>",
            s.status.as_str(),
            stage(s.stage),
            s.index,
            text(&s.title),
            s.failure_type
                .as_deref()
                .map(|t| format!(" ({})", text(t)))
                .unwrap_or_default(),
            text(&s.message)
        );
        let failed: Vec<_> = s
            .assertions
            .iter()
            .filter(|a| a.status == Status::Failed)
            .collect();
        if !failed.is_empty() {
            h.push_str("<ul class=\"assertions\">");
            for a in failed {
                let _ = write!(
                    h,
                    "<li><strong>{}</strong>: {}</li>",
                    text(&a.name),
                    text(&a.message)
                );
            }
            h.push_str("</ul>\n");
        }
        if let Some(rel) = &s.log_file {
            let path = folder.dir.join(rel);
            match std::fs::read_to_string(&path) {
                Ok(log) => {
                    let lines: Vec<&str> = log.lines().collect();
                    let from = lines.len().saturating_sub(LOG_TAIL_LINES);
                    let _ = writeln!(
                        h,
                        "<details class=\"log\" open><summary>{} ({} of {} lines)</summary><pre>{}</pre></details>",
                        text(rel),
                        lines.len() - from,
                        lines.len(),
                        text(&lines[from..].join("\n"))
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        h,
                        "<p class=\"log-missing\">{}: {}</p>",
                        text(&path.display().to_string()),
                        text(&e.to_string())
                    );
                }
            }
        }
        h.push_str("</div>\n");
    }
    h.push_str("</article>\n");
}

fn stage(s: Stage) -> &'static str {
    match s {
        Stage::Setup => "setup",
        Stage::Step => "step",
        Stage::Finally => "finally",
        Stage::Teardown => "teardown",
    }
}
