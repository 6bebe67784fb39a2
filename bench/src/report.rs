//! How a benchmark shows itself: a progress bar per phase, and its table
//! printed and written to a file.

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar for one phase of one server.
pub fn progress(name: &str, what: &str, total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64).with_prefix(format!("{name}: {what}"));
    bar.set_style(
        ProgressStyle::with_template("{prefix:32} [{bar:30}] {pos}/{len} {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Prints a result table, and writes it to `out` (creating its folder).
pub fn publish(table: &str, out: Option<&Path>) -> std::io::Result<()> {
    println!("{table}");
    if let Some(out) = out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, table)?;
    }
    Ok(())
}
