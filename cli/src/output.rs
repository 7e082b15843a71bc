//! Where the REPL's and `qpc chat`'s lines go: straight to stdout, above the
//! line being typed when the line editor is active (so an incoming message
//! never garbles it), or, for `--json`, as JSON objects only: a line meant
//! for people becomes `{"type":"notice","text":...}`.

use std::io::Write;
use std::sync::Mutex;

use rustyline::ExternalPrinter;
use serde_json::{json, Value};

type Printer = Box<dyn ExternalPrinter + Send>;

struct Output {
    json: bool,
    printer: Option<Printer>,
}

static OUTPUT: Mutex<Output> = Mutex::new(Output { json: false, printer: None });

fn with<T>(f: impl FnOnce(&mut Output) -> T) -> T {
    let mut out = OUTPUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut out)
}

/// From now on, every line is a JSON object.
pub fn set_json(json: bool) {
    with(|o| o.json = json);
}

pub fn is_json() -> bool {
    with(|o| o.json)
}

/// From now on, lines are printed above the line editor's prompt.
pub fn set_printer(printer: Printer) {
    with(|o| o.printer = Some(printer));
}

fn write_line(o: &mut Output, line: String) {
    if let Some(printer) = o.printer.as_mut() {
        if printer.print(format!("{line}\n")).is_ok() {
            return;
        }
    }
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// A line for people (a notice object under `--json`).
pub fn say_line(line: String) {
    with(|o| {
        let line = if o.json { json!({"type": "notice", "text": line}).to_string() } else { line };
        write_line(o, line);
    });
}

/// A JSON object, printed only under `--json`.
pub fn emit(value: Value) {
    with(|o| {
        if o.json {
            write_line(o, value.to_string());
        }
    });
}

/// `say!("...", args)`: [`say_line`] with `format!` arguments.
macro_rules! say {
    ($($arg:tt)*) => { $crate::output::say_line(format!($($arg)*)) };
}
pub(crate) use say;
