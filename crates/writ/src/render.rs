//! Output: JSON for scripts (`--json`) or the text people read (`writ_api::text`).

use serde_json::Value;

/// Prints `value` as JSON, or the text `text()` builds.
pub fn print(json: bool, value: Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        let text = text();
        if !text.is_empty() {
            println!("{text}");
        }
    }
}
