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
    let message = escape::message(&p.scrub(message));
    let fields = fields
        .iter()
        .map(|(k, v)| (escape::key(&p.scrub(k)), escape::field(&p.scrub(v))))
        .collect();
    (message, fields)
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
