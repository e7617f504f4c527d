//! Why a call failed, and whether retrying it can help.

pub mod upstream;

use crate::platform::HttpError;

/// A failed call: a readable message (never a secret) and whether a retry may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub retryable: bool,
}

impl Failure {
    /// An admin must act (configuration, credentials, permissions).
    pub fn fatal(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            retryable: false,
        }
    }

    /// A retry later may succeed (outage, throttling, timeout).
    pub fn transient(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            retryable: true,
        }
    }

    /// A request that got no response at all.
    pub fn http(service: &str, err: &HttpError) -> Self {
        let retryable = !matches!(err, HttpError::Denied(_));
        Failure {
            message: format!("{service}: {err}"),
            retryable,
        }
    }

    /// An HTTP status that ended the call: 429 and 5xx are worth retrying, the rest are not.
    pub fn status(service: &str, status: u16, detail: &str) -> Self {
        // Graph's 403 is a missing permission or admin consent, or, creating a subscription, an
        // exceeded quota, whose message names the limit (shared/reference/graph/
        // 01-subscriptions-and-notifications.md, section 1): say where to look.
        let graph_403 = status == 403 && service == "Microsoft Graph";
        let hint = if graph_403 && detail.to_ascii_lowercase().contains("quota") {
            " (a Graph subscription quota is exceeded: at most 1,000 user or group subscriptions per tenant across all apps, 100 per app in a tenant; remove subscriptions left by other apps or instances)"
        } else if graph_403 {
            " (the app registration lacks a Graph application permission or its admin consent: User.Read.All, Group.Read.All, GroupMember.Read.All; the action test-connection names which)"
        } else {
            ""
        };
        Failure {
            message: format!("{service} answered {status}: {detail}{hint}"),
            retryable: status == 429 || status >= 500,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_graph_403_names_the_quota_when_graph_says_quota_and_else_the_permissions() {
        let quota = Failure::status(
            "Microsoft Graph",
            403,
            "ExtensionError: subscription quota exceeded for tenant (1000)",
        );
        assert!(
            quota.message.contains("subscription quota is exceeded"),
            "{quota}"
        );
        assert!(
            !quota
                .message
                .contains("lacks a Graph application permission")
        );
        let consent = Failure::status("Microsoft Graph", 403, "Authorization_RequestDenied");
        assert!(
            consent
                .message
                .contains("lacks a Graph application permission")
        );
        assert!(
            !Failure::status("ZenQMS", 403, "quota")
                .message
                .contains("Graph")
        );
    }
}
