//! Entra users as Graph returns them, and the field mapping to ZenQMS.

use serde_json::Value;

use crate::domain::address::{self, Address, AddressError};

/// The user properties the sync reads; every Graph user read uses exactly this `$select`.
/// `userType` tells members (whose UPN suffixes are verified domains) from guests.
pub const USER_SELECT: &str =
    "id,mail,givenName,surname,jobTitle,accountEnabled,userPrincipalName,userType";

/// An Entra user, parsed leniently: a property Graph left out or returned as null is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraUser {
    /// Object id, lowercase.
    pub id: String,
    pub upn: String,
    pub mail: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub job_title: Option<String>,
    pub account_enabled: Option<bool>,
    /// `Member` or `Guest` (Graph); `None` when not returned.
    pub user_type: Option<String>,
    /// Within the configured scope (`scope_groups`): a transitive member of a scope group, or
    /// no scope set. Graph does not return it; the sync sets it from the scope groups'
    /// members (true as parsed).
    pub in_scope: bool,
}

/// The ZenQMS fields an Entra user maps to, normalised (trimmed; email lowercase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub title: String,
}

impl EntraUser {
    /// Parses one user object; `None` when it has no usable `id`.
    pub fn from_json(value: &Value) -> Option<EntraUser> {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
        let id = text("id")?.trim().to_ascii_lowercase();
        if id.is_empty() {
            return None;
        }
        Some(EntraUser {
            upn: text("userPrincipalName").unwrap_or_default(),
            mail: text("mail"),
            given_name: text("givenName"),
            surname: text("surname"),
            job_title: text("jobTitle"),
            account_enabled: value.get("accountEnabled").and_then(Value::as_bool),
            user_type: text("userType"),
            in_scope: true,
            id,
        })
    }

    /// Required Graph properties that are missing or blank, in Graph's names.
    pub fn missing_fields(&self) -> Vec<&'static str> {
        // Blank also when only invisible characters are left (a zero-width space, a BOM, a
        // Hangul filler): such a name is not a name, and an incomplete user never links.
        let blank = |v: &Option<String>| {
            v.as_deref().is_none_or(|s| {
                s.chars().all(|c| {
                    c.is_whitespace() || c.is_control() || crate::domain::address::is_invisible(c)
                })
            })
        };
        let mut missing = Vec::new();
        for (name, v) in [
            ("mail", &self.mail),
            ("givenName", &self.given_name),
            ("surname", &self.surname),
            ("jobTitle", &self.job_title),
        ] {
            if blank(v) {
                missing.push(name);
            }
        }
        missing
    }

    /// The normalised ZenQMS values, when every required field is present and `mail` passes
    /// the address rule ([`address::parse`]).
    pub fn mapped(&self) -> Option<Mapped> {
        if !self.missing_fields().is_empty() {
            return None;
        }
        let email = self.address()?.ok()?;
        let t = |v: &Option<String>| v.as_deref().unwrap_or_default().trim().to_string();
        Some(Mapped {
            email: email.as_str().to_string(),
            first_name: t(&self.given_name),
            last_name: t(&self.surname),
            title: t(&self.job_title),
        })
    }

    /// `mail` under the address rule; `None` when `mail` is missing or blank.
    pub fn address(&self) -> Option<Result<Address, AddressError>> {
        self.mail
            .as_deref()
            .filter(|m| !m.trim().is_empty())
            .map(address::parse)
    }

    /// Why `mail` is refused by the address rule, if it is.
    pub fn address_error(&self) -> Option<AddressError> {
        self.address().and_then(Result::err)
    }

    /// The address used for matching: `mail` when it passes the address rule.
    pub fn match_address(&self) -> Option<Address> {
        self.address().and_then(Result::ok)
    }

    /// The verified domain this user's UPN proves, when it is a member (not a guest).
    pub fn member_domain(&self) -> Option<String> {
        address::upn_domain(&self.upn, self.user_type.as_deref())
    }
}

/// How a stored (ZenQMS) email is compared: surrounding spaces trimmed, ASCII case folded,
/// nothing else ([`address::fold`]).
pub fn normalize_email(email: &str) -> String {
    address::fold(email)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_selected_user() {
        let u = EntraUser::from_json(&json!({
            "id": "6EA91A8D-E32E-41A1-B7BD-D2D185EED0E0", "userPrincipalName": "AdeleV@contoso.com",
            "mail": "  AdeleV@Contoso.com ", "givenName": "Adele", "surname": "Vance",
            "jobTitle": "Retail Manager", "accountEnabled": true
        }))
        .unwrap();
        assert_eq!(u.id, "6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0");
        let m = u.mapped().unwrap();
        assert_eq!(m.email, "adelev@contoso.com");
        assert_eq!(u.account_enabled, Some(true));
    }

    #[test]
    fn missing_fields_named_in_graph_terms() {
        let u = EntraUser::from_json(
            &json!({"id": "x", "mail": null, "givenName": " ", "surname": "S"}),
        )
        .unwrap();
        assert_eq!(u.missing_fields(), vec!["mail", "givenName", "jobTitle"]);
        assert!(u.mapped().is_none());
        assert_eq!(u.account_enabled, None);
    }

    #[test]
    fn no_id_no_user() {
        assert!(EntraUser::from_json(&json!({"mail": "a@b.c"})).is_none());
        assert!(EntraUser::from_json(&json!({"id": 5})).is_none());
        assert!(EntraUser::from_json(&json!("text")).is_none());
    }

    #[test]
    fn names_of_invisible_characters_are_blank() {
        for blank in [
            "\u{200b}",
            "\u{feff}",
            "\u{3164}",
            " \u{00a0}\t",
            "\u{0}",
            "\u{2028}",
        ] {
            let mut v = serde_json::json!({"id": "u1", "mail": "a@contoso.com", "givenName": "G",
                "surname": "S", "jobTitle": "T", "accountEnabled": false});
            v["givenName"] = serde_json::json!(blank);
            let u = EntraUser::from_json(&v).unwrap();
            assert_eq!(u.missing_fields(), vec!["givenName"], "{blank:?}");
        }
    }
}
