//! What every benchmark shares: a row of the printed table, a progress bar, and work fanned out
//! over threads.

use indicatif::{ProgressBar, ProgressStyle};

/// One line of a benchmark's table: what was measured, how many, in how long, and a note.
pub struct Row {
    pub name: String,
    pub count: usize,
    pub seconds: f64,
    pub note: String,
}

impl Row {
    pub fn new(name: &str, count: usize, seconds: f64, note: String) -> Row {
        Row { name: name.to_owned(), count, seconds, note }
    }

    pub fn rate(&self) -> f64 {
        self.count as f64 / self.seconds.max(1e-9)
    }
}

/// Runs `work(t)` for t in 0..threads on scoped threads and returns the first error.
pub fn fan_out(threads: usize, work: impl Fn(usize) -> anyhow::Result<()> + Sync) -> anyhow::Result<()> {
    std::thread::scope(|scope| {
        let work = &work;
        let workers: Vec<_> = (0..threads).map(|t| scope.spawn(move || work(t))).collect();
        for worker in workers {
            worker.join().map_err(|_| anyhow::anyhow!("a benchmark thread panicked"))??;
        }
        Ok(())
    })
}

pub fn progress(count: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(count as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg:<32} {bar:30} {pos}/{len} {per_sec}") {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

/// Prints `rows` as a table (`count` names the count column) or, with `json`, as a JSON array.
pub fn print(rows: &[Row], json: bool, count: &str) {
    if json {
        let value: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::json!({ "benchmark": r.name, "count": r.count, "seconds": r.seconds, "per_second": r.rate(), "note": r.note }))
            .collect();
        println!("{}", serde_json::Value::Array(value));
        return;
    }
    let width = rows.iter().map(|r| r.name.chars().count()).max().unwrap_or(9).max(9);
    println!("{:<width$} {:>10} {:>9} {:>11}  note", "benchmark", count, "seconds", "per second");
    for r in rows {
        println!("{:<width$} {:>10} {:>9.3} {:>11.0}  {}", r.name, r.count, r.seconds, r.rate(), r.note);
    }
}
