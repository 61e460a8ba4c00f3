//! `data convert`.

use super::input::{open, unusable, Input};
use crate::cli::exit;
use std::process::ExitCode;
use tunelab::data::convert::{self, ConvertError, OnError};
use tunelab::data::Format;

pub(super) fn convert_cmd(
    input: &Input,
    to: Format,
    output: &std::path::Path,
    on_error: OnError,
) -> anyhow::Result<ExitCode> {
    let ds = match open(input) {
        Ok(d) => d,
        Err(e) => return Ok(unusable(&e)),
    };
    let started = std::time::Instant::now();
    let bar = crate::cli::progress::counter("records");
    let outcome = convert::convert(&ds, output, to, on_error, &mut |read| {
        if let Some(b) = &bar {
            b.set_position(read);
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = match outcome {
        Ok(r) => r,
        Err(ConvertError::Data(e)) => return Ok(unusable(&e)),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::PROBLEMS));
        }
    };
    let secs = started.elapsed().as_secs_f64();
    // A pair written as unpaired data becomes two records.
    let counts = if report.written > report.read {
        format!("{} records read, {} written", report.read, report.written)
    } else {
        format!("{} of {} records written", report.written, report.read)
    };
    eprintln!(
        "{} ({}) → {} ({}): {counts} in {:.2}s ({:.1} MB/s)",
        ds.file.path.display(),
        ds.format,
        output.display(),
        to,
        secs,
        ds.file.bytes as f64 / 1e6 / secs.max(1e-9)
    );
    for (note, n) in report.notes.iter() {
        eprintln!("  note: {note} ({n} records)");
    }
    if report.skipped > 0 {
        eprintln!("  skipped {} records:", report.skipped);
        for p in &report.problems {
            eprintln!("    {}: {p}", ds.file.path.display());
        }
        if report.skipped as usize > report.problems.len() {
            eprintln!("    … and more");
        }
    }
    Ok(ExitCode::from(exit::OK))
}
