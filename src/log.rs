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
    let message = clean(p, message, &escape::message);
    let fields = fields
        .iter()
        .map(|(k, v)| (clean(p, k, &escape::key), clean(p, v, &escape::field)))
        .collect();
    (message, fields)
}

/// `text` as it may leave the component: scrubbed of `p`'s secrets ([`Platform::scrub`]),
/// then escaped and capped with `escape`. When escaping wrote anything (a control character
/// shown as `\t` or `\u{1b}`, a cut ending `…[+N chars]`), what it wrote may complete a
/// secret (text with a real TAB where the secret has `\t`, from a service that echoed it into
/// JSON unescaped): the result is scrubbed again and escaped again, and a value that would
/// still hold a secret after that is withheld whole ([`redact::REDACTED`]). At most three
/// scrubs and two escapes; one scrub and one escape for a text with nothing to escape.
pub fn clean(p: &dyn Platform, text: &str, escape: &dyn Fn(&str) -> String) -> String {
    let scrubbed = p.scrub(text);
    let escaped = escape(&scrubbed);
    if escaped == scrubbed {
        return escaped;
    }
    let again = p.scrub(&escaped);
    if again == escaped {
        return escaped;
    }
    let out = escape(&again);
    if p.scrub(&out) == out {
        out
    } else {
        redact::REDACTED.to_string()
    }
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
