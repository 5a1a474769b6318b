//! The figures of a run, and how they are written: markdown tables (one
//! per scenario, each figure's median over the rounds with its range) and
//! a CSV with every round's value.

use conformance::stats::median_and_range;
use std::fmt::Write as _;

/// One figure: a value per round.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The scenario's id (`uncontended`, `hot-key`, ...).
    pub scenario: String,
    /// The backend's name (`redis`, ...).
    pub backend: String,
    /// Who was measured (`lock-redis`, `rslock`, `raw: ...`).
    pub subject: String,
    /// What was measured, with its unit (`p50 µs`).
    pub metric: String,
    /// One value per round.
    pub values: Vec<f64>,
}

/// A ratio between two figures, round by round, with the target it is
/// held to, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratio {
    /// The figure: subject is `a / b`, metric the compared one.
    pub figure: Figure,
    /// The highest value that meets the target.
    pub target: Option<f64>,
}

/// A scenario's heading and what its figures mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Its id, as figures name it.
    pub id: String,
    /// Its heading.
    pub title: String,
    /// What it measures, and how.
    pub about: String,
    /// Remarks added while it ran (a store that refused, a skipped part).
    pub notes: Vec<String>,
}

/// Everything a run writes.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `(what, value)` lines describing the machine and the servers.
    pub machine: Vec<(String, String)>,
    /// The command that produced the report.
    pub command: String,
    /// Lines written after the tables (wall time and the like).
    pub footer: Vec<String>,
    sections: Vec<Section>,
    figures: Vec<Figure>,
    ratios: Vec<Ratio>,
}

/// `v` with as many digits as it deserves.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        "–".to_owned()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The median of `values`, and their range when there are several rounds.
pub fn cell(values: &[f64]) -> String {
    match median_and_range(values) {
        None => String::new(),
        Some((m, _, _)) if values.len() == 1 => format_value(m),
        Some((m, lo, hi)) => format!(
            "{} ({}–{})",
            format_value(m),
            format_value(lo),
            format_value(hi)
        ),
    }
}

impl Report {
    /// Adds (or keeps) a scenario's section; its tables come in this order.
    pub fn section(&mut self, id: &str, title: &str, about: &str) {
        if self.sections.iter().all(|s| s.id != id) {
            self.sections.push(Section {
                id: id.to_owned(),
                title: title.to_owned(),
                about: about.to_owned(),
                notes: Vec::new(),
            });
        }
    }

    /// Adds a remark under a section's tables.
    pub fn note(&mut self, id: &str, text: impl Into<String>) {
        if let Some(s) = self.sections.iter_mut().find(|s| s.id == id) {
            s.notes.push(text.into());
        }
    }

    /// Records one round's value of a figure.
    pub fn record(&mut self, scenario: &str, backend: &str, subject: &str, metric: &str, v: f64) {
        let found = self.figures.iter_mut().find(|f| {
            f.scenario == scenario
                && f.backend == backend
                && f.subject == subject
                && f.metric == metric
        });
        match found {
            Some(f) => f.values.push(v),
            None => self.figures.push(Figure {
                scenario: scenario.to_owned(),
                backend: backend.to_owned(),
                subject: subject.to_owned(),
                metric: metric.to_owned(),
                values: vec![v],
            }),
        }
    }

    /// A figure's values per round.
    pub fn values(
        &self,
        scenario: &str,
        backend: &str,
        subject: &str,
        metric: &str,
    ) -> Option<&[f64]> {
        self.figures
            .iter()
            .find(|f| {
                f.scenario == scenario
                    && f.backend == backend
                    && f.subject == subject
                    && f.metric == metric
            })
            .map(|f| f.values.as_slice())
    }

    /// All figures.
    pub fn figures(&self) -> &[Figure] {
        &self.figures
    }

    /// All ratios.
    pub fn ratios(&self) -> &[Ratio] {
        &self.ratios
    }

    /// Adds the ratio of figure `a` to figure `b` (each a subject and a
    /// metric), round by round (rounds measured together are divided
    /// together), if both exist.
    pub fn ratio(
        &mut self,
        scenario: &str,
        backend: &str,
        a: (&str, &str),
        b: (&str, &str),
        target: Option<f64>,
    ) {
        let (Some(x), Some(y)) = (
            self.values(scenario, backend, a.0, a.1),
            self.values(scenario, backend, b.0, b.1),
        ) else {
            return;
        };
        let values = x.iter().zip(y).map(|(x, y)| x / y).collect();
        let metric = if a.1 == b.1 {
            a.1.to_owned()
        } else {
            format!("{} ÷ {}", a.1, b.1)
        };
        self.ratios.push(Ratio {
            figure: Figure {
                scenario: scenario.to_owned(),
                backend: backend.to_owned(),
                subject: format!("{} / {}", a.0, b.0),
                metric,
                values,
            },
            target,
        });
    }

    /// The markdown document.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# dlock benchmarks\n");
        let _ = writeln!(
            out,
            "Generated by `dlock-bench` (crate `bench/`) in one run: every backend, its \
             store's raw round trips and its peers on the same servers, measured \
             interleaved so that load on the machine hits them alike. Each cell is the \
             median over the rounds, with the lowest and highest round in parentheses. \
             Latencies are in microseconds (µs).\n"
        );
        let _ = writeln!(out, "Regenerate with:\n\n```sh\n{}\n```\n", self.command);
        let _ = writeln!(out, "## Machine\n\n| | |\n| --- | --- |");
        for (k, v) in &self.machine {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        out.push('\n');
        for section in &self.sections {
            self.write_section(&mut out, section);
        }
        for line in &self.footer {
            let _ = writeln!(out, "{line}");
        }
        out
    }

    fn write_section(&self, out: &mut String, section: &Section) {
        let _ = writeln!(out, "## {}\n\n{}\n", section.title, section.about);
        let figures: Vec<&Figure> = self
            .figures
            .iter()
            .filter(|f| f.scenario == section.id)
            .collect();
        let mut metrics: Vec<&str> = Vec::new();
        let mut rows: Vec<(&str, &str)> = Vec::new();
        for f in &figures {
            if !metrics.contains(&f.metric.as_str()) {
                metrics.push(&f.metric);
            }
            if !rows.contains(&(f.backend.as_str(), f.subject.as_str())) {
                rows.push((&f.backend, &f.subject));
            }
        }
        if !rows.is_empty() {
            let _ = writeln!(out, "| backend | measured | {} |", metrics.join(" | "));
            let _ = writeln!(out, "| --- | --- |{}", " ---: |".repeat(metrics.len()));
            for (backend, subject) in rows {
                let cells: Vec<String> = metrics
                    .iter()
                    .map(|m| {
                        figures
                            .iter()
                            .find(|f| {
                                f.backend == backend && f.subject == subject && f.metric == *m
                            })
                            .map_or(String::new(), |f| cell(&f.values))
                    })
                    .collect();
                let _ = writeln!(out, "| {backend} | {subject} | {} |", cells.join(" | "));
            }
            out.push('\n');
        }
        let ratios: Vec<&Ratio> = self
            .ratios
            .iter()
            .filter(|r| r.figure.scenario == section.id)
            .collect();
        if !ratios.is_empty() {
            let _ = writeln!(out, "| backend | ratio | of | median (range) | target |");
            let _ = writeln!(out, "| --- | --- | --- | ---: | --- |");
            for r in ratios {
                let f = &r.figure;
                let target = match (r.target, median_and_range(&f.values)) {
                    (Some(t), Some((m, _, _))) if m <= t => format!("≤ {t}: met"),
                    (Some(t), _) => format!("≤ {t}: **not met**"),
                    (None, _) => String::new(),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {target} |",
                    f.backend,
                    f.subject,
                    f.metric,
                    cell(&f.values)
                );
            }
            out.push('\n');
        }
        for note in &section.notes {
            let _ = writeln!(out, "- {note}");
        }
        if !section.notes.is_empty() {
            out.push('\n');
        }
    }

    /// The CSV: one line per figure and per ratio, with every round.
    pub fn csv(&self) -> String {
        let mut out = String::from("scenario,backend,measured,metric,median,min,max,rounds\n");
        let all = self
            .figures
            .iter()
            .chain(self.ratios.iter().map(|r| &r.figure));
        for f in all {
            let (m, lo, hi) = median_and_range(&f.values).unwrap_or((f64::NAN, f64::NAN, f64::NAN));
            let rounds: Vec<String> = f.values.iter().map(|v| format!("{v:.3}")).collect();
            let _ = writeln!(
                out,
                "{},{},{},{},{m:.3},{lo:.3},{hi:.3},{}",
                quote(&f.scenario),
                quote(&f.backend),
                quote(&f.subject),
                quote(&f.metric),
                rounds.join(" ")
            );
        }
        out
    }
}

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_rounded_to_their_size() {
        assert_eq!(format_value(1234.56), "1235");
        assert_eq!(format_value(12.345), "12.3");
        assert_eq!(format_value(1.2345), "1.23");
        assert_eq!(format_value(f64::NAN), "–");
        assert_eq!(cell(&[3.0, 1.0, 2.0]), "2.00 (1.00–3.00)");
        assert_eq!(cell(&[150.0]), "150");
    }

    #[test]
    fn tables_pivot_metrics_and_ratios_divide_rounds() {
        let mut r = Report::default();
        r.section("u", "Uncontended", "What it measures.");
        for (a, b) in [(120.0, 100.0), (130.0, 100.0), (110.0, 100.0)] {
            r.record("u", "redis", "lock-redis", "p50 µs", a);
            r.record("u", "redis", "raw, 2 EVALSHA", "p50 µs", b);
        }
        r.record("u", "redis", "lock-redis", "p99 µs", 300.0);
        let p50 = "p50 µs";
        r.ratio(
            "u",
            "redis",
            ("lock-redis", p50),
            ("raw, 2 EVALSHA", p50),
            Some(1.2),
        );
        r.ratio("u", "redis", ("lock-redis", p50), ("missing", p50), None);
        assert_eq!(r.ratios().len(), 1);
        let md = r.markdown();
        assert!(
            md.contains("| backend | measured | p50 µs | p99 µs |"),
            "{md}"
        );
        assert!(
            md.contains("| redis | lock-redis | 120 (110–130) | 300 |"),
            "{md}"
        );
        assert!(
            md.contains("| redis | raw, 2 EVALSHA | 100 (100–100) |  |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| redis | lock-redis / raw, 2 EVALSHA | p50 µs | 1.20 (1.10–1.30) | ≤ 1.2: met |"
            ),
            "{md}"
        );
        let csv = r.csv();
        assert!(
            csv.contains(
                "u,redis,\"raw, 2 EVALSHA\",p50 µs,100.000,100.000,100.000,100.000 100.000 100.000"
            ),
            "{csv}"
        );
    }
}
