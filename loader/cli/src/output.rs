//! What the commands print: stdout that ends quietly on a closed pipe, and tables.

use std::io;
use std::process::ExitCode;

/// The CLI's advice where a plugin name is unknown (library errors carry no CLI advice).
pub(crate) const LIST_HINT: &str = "`berth list` shows the plugins";

/// `println!` that ends the command quietly when its output is closed (`berth list | head -1`), as ripgrep does,
/// instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = writeln!(std::io::stdout(), $($arg)*) {
            $crate::output::output_failed(error);
        }
    }};
}

/// Prints a JSON document (`berth::json`), pretty, as the command's whole output.
pub(crate) fn print_json(document: &impl serde::Serialize) -> Result<(), String> {
    say!("{}", serde_json::to_string_pretty(document).map_err(|e| e.to_string())?);
    Ok(())
}

/// Prints one JSON line (`berth run --json`).
pub(crate) fn print_json_line(line: &berth::json::EventLine) {
    match serde_json::to_string(line) {
        Ok(text) => say!("{text}"),
        Err(error) => eprintln!("berth: cannot write a JSON line: {error}"),
    }
}

/// A write to stdout failed: a closed pipe ends the command with success and no word, anything else with the
/// error.
pub(crate) fn output_failed(error: io::Error) -> ! {
    if error.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("berth: cannot write the output: {error}");
    std::process::exit(1)
}

/// Writes what `generate` makes to standard output (a closed pipe ends quietly).
pub(crate) fn write_generated(generate: impl FnOnce(&mut dyn io::Write) -> io::Result<()>) -> Result<ExitCode, String> {
    let mut out = Vec::new();
    generate(&mut out).map_err(|e| e.to_string())?;
    if let Err(error) = io::Write::write_all(&mut io::stdout(), &out) {
        output_failed(error);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_table(rows: &[[String; 6]]) {
    let mut widths = [0; 6];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:width$}")).collect();
        say!("{}", line.join("  ").trim_end());
    }
}
