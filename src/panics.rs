//! Panics as recorded failures: [`catch`] runs a piece of work (an engine's inference, a
//! model call, a parser) and turns a panic into an error message, so one bad image or answer
//! fails its own cell and the run goes on. A panic hook remembers where each caught panic
//! happened, so the message says `panicked at src/x.rs:26: ...`.
//!
//! [`failpoint`] lets tests make named places panic (`IW_LAB_FAILPOINTS=engine.infer=a.png`);
//! it does nothing in release builds.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// How many [`catch`] scopes this thread is inside.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// Where the last caught panic on this thread happened.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs (once) a panic hook that, inside [`catch`], only records the location; outside it
/// the previous hook runs as before.
fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if DEPTH.with(Cell::get) > 0 {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                LOCATION.with(|l| *l.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; a panic's payload is returned, and nothing is printed (for code that unwinds on
/// purpose, such as libjpeg's error handler).
pub fn catch_payload<T>(f: impl FnOnce() -> T) -> Result<T, Box<dyn std::any::Any + Send>> {
    install_hook();
    DEPTH.with(|d| d.set(d.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get() - 1));
    result
}

/// Runs `f`; a panic becomes `Err("panicked at FILE:LINE: MESSAGE")`.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_payload(f).map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        match LOCATION.with(|l| l.borrow_mut().take()) {
            Some(at) => format!("panicked at {at}: {msg}"),
            None => format!("panicked: {msg}"),
        }
    })
}

/// Panics when the environment variable `IW_LAB_FAILPOINTS` names `name` (a comma-separated
/// list of `name` or `name=TEXT`; with `TEXT`, only when `detail` contains it). Debug builds
/// only: the tests use it to prove that a panic anywhere is recorded, never an abort.
#[inline]
pub fn failpoint(name: &str, detail: &str) {
    #[cfg(debug_assertions)]
    if let Ok(spec) = std::env::var("IW_LAB_FAILPOINTS") {
        for item in spec.split(',') {
            let (n, text) = item.split_once('=').unwrap_or((item, ""));
            if n == name && detail.contains(text) {
                panic!("failpoint {name} ({detail})");
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = (name, detail);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_message_with_its_place() {
        assert_eq!(catch(|| 7), Ok(7));
        let e = catch(|| {
            let s = std::hint::black_box("🐥");
            s[..1].to_string()
        })
        .unwrap_err();
        assert!(e.starts_with("panicked at src/panics.rs:"), "{e}");
        assert!(e.contains("char boundary"), "{e}");
        let e = catch(|| panic!("{}", String::from("owned"))).unwrap_err();
        assert!(e.ends_with(": owned"), "{e}");
        // nested scopes, and the thread keeps working afterwards
        assert_eq!(catch(|| catch(|| panic!("inner")).is_err()), Ok(true));
        assert_eq!(catch(|| 1 + 1), Ok(2));
    }
}
