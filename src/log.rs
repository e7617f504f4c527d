//! Structured log lines through the platform's `log` import.

use crate::platform::{Level, Platform};

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
