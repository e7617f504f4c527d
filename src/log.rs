//! Structured log lines through the platform's `log` import.
//!
//! Call sites write plain text; the platform layer makes every line safe to show
//! ([`sanitize`]: secrets scrubbed, then control, bidi and separator characters escaped and each
//! value capped), so no call site can forget it.

pub mod escape;
pub mod redact;

use crate::platform::{Level, Platform};

/// One log line as it may leave the component: every registered secret of `p` scrubbed, then the
/// message and each field key and value escaped and capped ([`escape::message`],
/// [`escape::field`]). Applying it again changes nothing.
pub fn sanitize(
    p: &dyn Platform,
    message: &str,
    fields: &[(&str, &str)],
) -> (String, Vec<(String, String)>) {
    let message = clean(p, message, escape::message);
    let fields = fields
        .iter()
        .map(|(k, v)| (clean(p, k, escape::key), clean(p, v, escape::field)))
        .collect();
    (message, fields)
}

/// `text` as it may leave the component: scrubbed of `p`'s secrets ([`scrub`]), then escaped
/// and capped with `escape`. When escaping wrote anything (a control character shown as `\t`
/// or `\u{1b}`, a cut), the result is scrubbed again, and escaped again if that replaced
/// anything: an escape can complete a secret that holds a backslash sequence (text with a real
/// TAB where the secret has `\t`, from a service that echoed it into JSON unescaped).
pub fn clean(p: &dyn Platform, text: &str, escape: impl Fn(&str) -> String) -> String {
    let scrubbed = scrub(p, text);
    let escaped = escape(&scrubbed);
    if escaped == scrubbed {
        return escaped;
    }
    let again = scrub(p, &escaped);
    if again == escaped {
        escaped
    } else {
        escape(&again)
    }
}

/// The most scrubs [`scrub`] makes of one text: as many as the platform layers made, one each,
/// before a line was sanitized once.
pub const SCRUB_PASSES: usize = 3;

/// `text` scrubbed of `p`'s secrets ([`Platform::scrub`]), and scrubbed again while a pass
/// replaces anything, [`SCRUB_PASSES`] at most: a replacement can complete another secret's
/// form with the marker's own characters (`[redacte` + `d]Kx9…`, where `d]Kx9…` is a secret).
/// Bounded, as a secret that is part of the marker (`red`) would be found in every pass. A
/// text with no secret in it costs one pass.
pub fn scrub(p: &dyn Platform, text: &str) -> String {
    let mut out = p.scrub(text);
    let mut changed = out != text;
    for _ in 1..SCRUB_PASSES {
        if !changed {
            break;
        }
        let next = p.scrub(&out);
        changed = next != out;
        out = next;
    }
    out
}

/// A thin writer over the platform log.
#[derive(Clone, Copy)]
pub struct Log<'a> {
    platform: &'a dyn Platform,
}

impl<'a> Log<'a> {
    pub fn new(platform: &'a dyn Platform) -> Self {
        Log { platform }
    }

    pub fn write(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        self.platform.log(level, message, fields);
    }

    pub fn debug(&self, message: &str, fields: &[(&str, &str)]) {
        self.write(Level::Debug, message, fields);
    }

    pub fn info(&self, message: &str, fields: &[(&str, &str)]) {
        self.write(Level::Info, message, fields);
    }

    pub fn warn(&self, message: &str, fields: &[(&str, &str)]) {
        self.write(Level::Warn, message, fields);
    }

    pub fn error(&self, message: &str, fields: &[(&str, &str)]) {
        self.write(Level::Error, message, fields);
    }
}
