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

/// Every string of `v` (an admin action's result) as [`clean`] makes it, with the cap of a
/// log value: display names, upstream error texts and other values from outside reach an
/// admin's screen through it, and no platform is trusted to escape them. String by string,
/// never the serialized text: a secret's form can appear in JSON only because serializing
/// doubled a backslash, and cutting it there would leave an escape (`\u007a`) that decodes
/// into text the scrub never saw, or break the JSON. (Keys are the component's own words.)
pub fn clean_strings(p: &dyn Platform, v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            *s = clean(p, s, &|t| escape::escape(t, escape::FIELD_CAP));
        }
        Value::Array(items) => items.iter_mut().for_each(|x| clean_strings(p, x)),
        Value::Object(m) => m.values_mut().for_each(|x| clean_strings(p, x)),
        _ => {}
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
