//! `[breakglass]`: how long emergency access may last and by when it must be approved after the
//! fact (one hour and 24 hours without the section).

use super::*;

pub(super) fn breakglass(file: &RulesFile, text: &str) -> Result<Breakglass, PolicyError> {
    let at = |span: std::ops::Range<usize>| line_of(text, span.start);
    let breakglass = match &file.breakglass {
        Some(spec) => {
            let line = at(spec.span());
            let err = |reason: String| PolicyError::invalid(FILE, line, &format!("[breakglass]: {reason}"));
            Breakglass {
                max_duration: duration(&spec.get_ref().max_duration).map_err(&err)?,
                approval_deadline: duration(&spec.get_ref().approval_deadline).map_err(&err)?,
            }
        }
        None => Breakglass { max_duration: Duration::hours(1), approval_deadline: Duration::hours(24) },
    };
    Ok(breakglass)
}
