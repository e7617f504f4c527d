//! `POST https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token` (client credentials, shared
//! secret), with the identity platform's OAuth error shape (not Graph's).

use chrono::Duration;
use serde_json::json;

use super::FakeGraph;
use super::odata::{Ctx, Url, percent_decode, splitmix};
use crate::sim::http_types::{HttpRequest, HttpResponse};

const GRAPH_DEFAULT_SCOPE: &str = "https://graph.microsoft.com/.default";
const TOKEN_LIFETIME_SECS: i64 = 3599;

/// An OAuth error: HTTP status, `error`, AADSTS number, description text.
struct OAuthError(u16, &'static str, u32, String);

impl FakeGraph {
    pub(super) fn token_endpoint(
        &mut self,
        req: &HttpRequest,
        url: &Url,
        ctx: &Ctx,
    ) -> HttpResponse {
        let result = self.issue_token(req, url, ctx);
        match result {
            Ok(resp) => resp,
            Err(OAuthError(status, error, code, text)) => {
                oauth_error(ctx, status, error, code, &text)
            }
        }
    }

    fn issue_token(
        &mut self,
        req: &HttpRequest,
        url: &Url,
        ctx: &Ctx,
    ) -> Result<HttpResponse, OAuthError> {
        let segs: Vec<&str> = url.segments.iter().map(String::as_str).collect();
        let [tenant, "oauth2", "v2.0", "token"] = segs.as_slice() else {
            let text = format!(
                "The fake identity platform implements only POST /{{tenant}}/oauth2/v2.0/token, not {}.",
                url.raw_path
            );
            return Err(OAuthError(404, "invalid_request", 90027, text));
        };
        if req.method != "POST" {
            let text = format!(
                "The endpoint only accepts POST requests. Received a {} request.",
                req.method
            );
            return Err(OAuthError(400, "invalid_request", 900561, text));
        }
        if !tenant.eq_ignore_ascii_case(&self.tenant_id) {
            let text = format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            );
            return Err(OAuthError(400, "invalid_request", 90002, text));
        }
        let form = parse_form(req);
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let missing = |name: &str| {
            let text = format!("The request body must contain the following parameter: '{name}'.");
            OAuthError(400, "invalid_request", 900144, text)
        };
        let grant = field("grant_type").ok_or_else(|| missing("grant_type"))?;
        if grant != "client_credentials" {
            let text = format!("The app requested an unsupported grant type '{grant}'.");
            return Err(OAuthError(400, "unsupported_grant_type", 70003, text));
        }
        let client_id = field("client_id").ok_or_else(|| missing("client_id"))?;
        if !client_id.eq_ignore_ascii_case(&self.client_id) {
            let text = format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                self.tenant_id
            );
            return Err(OAuthError(400, "unauthorized_client", 700016, text));
        }
        let scope = field("scope").ok_or_else(|| missing("scope"))?;
        if scope != GRAPH_DEFAULT_SCOPE {
            let text = format!(
                "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            );
            return Err(OAuthError(400, "invalid_scope", 70011, text));
        }
        let Some(secret) = field("client_secret") else {
            let text = "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.";
            return Err(OAuthError(401, "invalid_client", 7000218, text.into()));
        };
        if secret != self.client_secret {
            let text = format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                self.client_id
            );
            return Err(OAuthError(401, "invalid_client", 7000215, text));
        }
        let token = self.mint_token();
        self.tokens.push((
            token.clone(),
            ctx.now + Duration::seconds(TOKEN_LIFETIME_SECS),
        ));
        let body = json!({
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECS,
            "ext_expires_in": TOKEN_LIFETIME_SECS,
            "access_token": token,
        });
        Ok(HttpResponse::json(200, &body))
    }

    /// An opaque JWT-looking token, unique per issue, derived from the sequence number.
    fn mint_token(&self) -> String {
        let n = self.tokens.len() as u64 + 1;
        let sig = splitmix(n ^ 0x70ce_0000);
        format!(
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoLm1pY3Jvc29mdC5jb20ifQ.fk{n:04}{sig:016x}{:016x}",
            splitmix(sig)
        )
    }
}

/// `application/x-www-form-urlencoded` pairs; any other content type reads as an empty form.
fn parse_form(req: &HttpRequest) -> Vec<(String, String)> {
    let content_type = req
        .header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Vec::new();
    }
    String::from_utf8_lossy(&req.body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

fn oauth_error(ctx: &Ctx, status: u16, error: &str, code: u32, text: &str) -> HttpResponse {
    let stamp = ctx.now.format("%Y-%m-%d %H:%M:%SZ").to_string();
    let trace = &ctx.request_id;
    let correlation = &ctx.client_request_id;
    let body = json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {stamp}"
        ),
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    HttpResponse::json(status, &body)
}
