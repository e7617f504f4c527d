//! Users, groups and membership: `/users`, `/users/{id}`, `/users/{id}/checkMemberGroups`,
//! `/users/{id}/getMemberGroups`, `/groups/{id}`, `/groups/{id}/members`,
//! `/groups/{id}/transitiveMembers` (with the OData casts); routes `/users/delta`,
//! `/groups/delta` (see `delta.rs`), `/groups` (see `group_list.rs`) and
//! `/{users|groups}/{id}/[transitive]memberOf` (see `member_of.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use serde_json::{Map, Value, json};

use super::FakeGraph;
use super::odata::{
    Ctx, GraphError, GraphResult, Selection, Url, collection, decode_skiptoken,
    eventual_consistency, find_name, is_guid, json_body, paginate, parse_query,
};
use crate::sim::http_types::{HttpRequest, HttpResponse};
use crate::sim::seed::ObjectType;

/// Properties of `microsoft.graph.user` (v1.0) that `$select` accepts.
const USER_PROPS: &[&str] = &[
    "aboutMe",
    "accountEnabled",
    "ageGroup",
    "assignedLicenses",
    "assignedPlans",
    "authorizationInfo",
    "birthday",
    "businessPhones",
    "city",
    "companyName",
    "consentProvidedForMinor",
    "country",
    "createdDateTime",
    "creationType",
    "customSecurityAttributes",
    "deletedDateTime",
    "department",
    "displayName",
    "employeeHireDate",
    "employeeId",
    "employeeLeaveDateTime",
    "employeeOrgData",
    "employeeType",
    "externalUserState",
    "externalUserStateChangeDateTime",
    "faxNumber",
    "givenName",
    "hireDate",
    "id",
    "identities",
    "imAddresses",
    "interests",
    "isResourceAccount",
    "jobTitle",
    "lastPasswordChangeDateTime",
    "legalAgeGroupClassification",
    "licenseAssignmentStates",
    "mail",
    "mailboxSettings",
    "mailNickname",
    "mobilePhone",
    "mySite",
    "officeLocation",
    "onPremisesDistinguishedName",
    "onPremisesDomainName",
    "onPremisesExtensionAttributes",
    "onPremisesImmutableId",
    "onPremisesLastSyncDateTime",
    "onPremisesProvisioningErrors",
    "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "onPremisesUserPrincipalName",
    "otherMails",
    "passwordPolicies",
    "passwordProfile",
    "pastProjects",
    "postalCode",
    "preferredDataLocation",
    "preferredLanguage",
    "preferredName",
    "provisionedPlans",
    "proxyAddresses",
    "responsibilities",
    "schools",
    "securityIdentifier",
    "showInAddressList",
    "signInActivity",
    "signInSessionsValidFromDateTime",
    "skills",
    "state",
    "streetAddress",
    "surname",
    "usageLocation",
    "userPrincipalName",
    "userType",
];

/// Returned when a user is read without `$select` (user-list docs). Not `accountEnabled`.
pub(super) const USER_DEFAULT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "id",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
];

/// Only readable one user at a time: selecting them on a collection is a 501 in real Graph.
const USER_SINGLE_ONLY: &[&str] = &[
    "aboutMe",
    "birthday",
    "hireDate",
    "interests",
    "mailboxSettings",
    "mySite",
    "pastProjects",
    "preferredName",
    "responsibilities",
    "schools",
    "skills",
];

/// Collection-valued properties: Graph returns `[]`, never null.
const COLLECTION_PROPS: &[&str] = &[
    "assignedLicenses",
    "assignedPlans",
    "businessPhones",
    "groupTypes",
    "identities",
    "imAddresses",
    "interests",
    "otherMails",
    "pastProjects",
    "provisionedPlans",
    "proxyAddresses",
    "responsibilities",
    "schools",
    "skills",
    "licenseAssignmentStates",
    "onPremisesProvisioningErrors",
];

pub(super) const GROUP_PROPS: &[&str] = &[
    "classification",
    "createdDateTime",
    "deletedDateTime",
    "description",
    "displayName",
    "expirationDateTime",
    "groupTypes",
    "id",
    "isAssignableToRole",
    "mail",
    "mailEnabled",
    "mailNickname",
    "membershipRule",
    "membershipRuleProcessingState",
    "onPremisesLastSyncDateTime",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "preferredDataLocation",
    "preferredLanguage",
    "proxyAddresses",
    "renewedDateTime",
    "securityEnabled",
    "securityIdentifier",
    "theme",
    "visibility",
];

const GROUP_DEFAULT: &[&str] = &[
    "createdDateTime",
    "description",
    "displayName",
    "groupTypes",
    "id",
    "mail",
    "mailEnabled",
    "mailNickname",
    "securityEnabled",
    "visibility",
];

/// Real navigation properties / functions this fake does not simulate.
const USER_UNIMPLEMENTED: &[&str] = &["manager", "directreports", "ownedobjects", "photo", "$ref"];
const GROUP_UNIMPLEMENTED: &[&str] = &["owners", "$ref", "$count"];

/// `delta` as a path segment: plain, as a function call, or namespace-qualified.
fn is_delta(segment: &str) -> bool {
    let bare = segment.trim_start_matches("microsoft.graph.");
    bare == "delta" || bare == "delta()"
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    User,
    Group,
    /// A device, service principal or org contact (`entra.objects`).
    Object(ObjectType),
}

impl Kind {
    pub(super) fn odata_type(self) -> &'static str {
        match self {
            Kind::User => "#microsoft.graph.user",
            Kind::Group => "#microsoft.graph.group",
            Kind::Object(ObjectType::Device) => "#microsoft.graph.device",
            Kind::Object(ObjectType::ServicePrincipal) => "#microsoft.graph.servicePrincipal",
            Kind::Object(ObjectType::OrgContact) => "#microsoft.graph.orgContact",
        }
    }
}

impl FakeGraph {
    pub(super) fn users_route(
        &self,
        req: &HttpRequest,
        url: &Url,
        rest: &[&str],
        ctx: &Ctx,
    ) -> GraphResult<HttpResponse> {
        let lower: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
        let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
        let body = match lower.as_slice() {
            [] => {
                read_only(req)?;
                self.list_users(url)?
            }
            [delta] if is_delta(delta) => {
                read_only(req)?;
                return self.users_delta(url, ctx);
            }
            [delta, extra, ..] if is_delta(delta) => return Err(GraphError::segment(extra)),
            ["$count", ..] => {
                return Err(GraphError::not_implemented(&format!("/users/{}", rest[0])));
            }
            [_] => {
                read_only(req)?;
                self.get_user(url, rest[0])?
            }
            [_, action] if action.trim_start_matches("microsoft.graph.") == "checkmembergroups" => {
                action_method(req)?;
                self.check_member_groups(req, url, rest[0])?
            }
            [_, action] if action.trim_start_matches("microsoft.graph.") == "getmembergroups" => {
                action_method(req)?;
                self.get_member_groups(req, url, rest[0])?
            }
            [_, rel @ ("memberof" | "transitivememberof"), tail @ ..] if tail.len() <= 1 => {
                read_only(req)?;
                let (uid, _) = self
                    .find_user(rest[0])
                    .ok_or_else(|| GraphError::not_found(rest[0]))?;
                self.list_member_of(
                    req,
                    url,
                    uid,
                    *rel == "transitivememberof",
                    rest.get(2).copied(),
                )?
            }
            [_, "memberof" | "transitivememberof", _, extra, ..] => {
                return Err(GraphError::segment(extra));
            }
            [_, nav, ..] if USER_UNIMPLEMENTED.contains(nav) => {
                return Err(GraphError::not_implemented(&format!(
                    "/users/{{id}}/{}",
                    rest[1]
                )));
            }
            [_, _] => return Err(GraphError::segment(rest[1])),
            [_, _, extra, ..] => return Err(GraphError::segment(extra)),
        };
        Ok(ctx.json(200, &body))
    }

    pub(super) fn groups_route(
        &self,
        req: &HttpRequest,
        url: &Url,
        rest: &[&str],
        ctx: &Ctx,
    ) -> GraphResult<HttpResponse> {
        let lower: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
        let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
        let body = match lower.as_slice() {
            [delta] if is_delta(delta) => {
                read_only(req)?;
                return self.groups_delta(url, ctx);
            }
            [delta, extra, ..] if is_delta(delta) => return Err(GraphError::segment(extra)),
            [] => {
                read_only(req)?;
                self.list_groups(req, url)?
            }
            ["$count", ..] => {
                return Err(GraphError::not_implemented(&format!(
                    "{} {}",
                    req.method, url.raw_path
                )));
            }
            [_] => {
                read_only(req)?;
                self.get_group(url, rest[0])?
            }
            [_, rel @ ("members" | "transitivemembers"), tail @ ..] if tail.len() <= 1 => {
                if tail.first().is_some_and(|t| t.starts_with('$')) {
                    return Err(GraphError::not_implemented(&format!(
                        "/groups/{{id}}/{}/{}",
                        rest[1], rest[2]
                    )));
                }
                read_only(req)?;
                self.list_members(
                    req,
                    url,
                    rest[0],
                    *rel == "transitivemembers",
                    rest.get(2).copied(),
                )?
            }
            [_, rel @ ("memberof" | "transitivememberof"), tail @ ..] if tail.len() <= 1 => {
                read_only(req)?;
                let gid = self
                    .find_group(rest[0])
                    .ok_or_else(|| GraphError::not_found(rest[0]))?;
                self.list_member_of(
                    req,
                    url,
                    gid,
                    *rel == "transitivememberof",
                    rest.get(2).copied(),
                )?
            }
            [_, nav, ..] if GROUP_UNIMPLEMENTED.contains(nav) => {
                return Err(GraphError::not_implemented(&format!(
                    "/groups/{{id}}/{}",
                    rest[1]
                )));
            }
            [
                _,
                "members" | "transitivemembers" | "memberof" | "transitivememberof",
                _,
                extra,
                ..,
            ] => {
                return Err(GraphError::segment(extra));
            }
            [_, _, ..] => return Err(GraphError::segment(rest[1])),
        };
        Ok(ctx.json(200, &body))
    }

    fn list_users(&self, url: &Url) -> GraphResult<Value> {
        let q = self.page_top(parse_query(url, &["select", "top", "skiptoken", "filter"])?);
        let filter = super::filter::user_filter(url, |n| self.user_prop(n).is_some())?;
        let sel = Selection::resolve(q.select.as_ref(), "user", |n| self.user_prop(n))?;
        collection_select(&sel)?;
        // Render only this page and one more item (to know whether a next page exists):
        // rendering the whole directory per page made a full listing quadratic in N.
        let after = q
            .skiptoken
            .as_deref()
            .map(|t| decode_skiptoken(t, "users"))
            .transpose()?;
        let from = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let take = q.top.unwrap_or(100).saturating_add(1);
        let render_all = |users: &mut dyn Iterator<Item = (&String, &Map<String, Value>)>| {
            users
                .filter(|(_, u)| filter.as_ref().is_none_or(|f| f.matches(u)))
                .take(take)
                .map(|(id, u)| (id.clone(), render(u, Kind::User, &sel)))
                .collect()
        };
        let items = match &filter {
            // The users the filter may match, by the index, in the same order as the scan.
            Some(f) => {
                let ids = self.user_index().candidates(f);
                render_all(
                    &mut ids
                        .range::<str, _>((from, Bound::Unbounded))
                        .filter_map(|id| self.users.get_key_value(id)),
                )
            }
            None => render_all(&mut self.users.range::<str, _>((from, Bound::Unbounded))),
        };
        let page = paginate(items, url, &q, "users")?;
        Ok(collection(
            &format!("users{}", sel.context_suffix()),
            None,
            page,
        ))
    }

    fn get_user(&self, url: &Url, key: &str) -> GraphResult<Value> {
        let q = parse_query(url, &["select"])?;
        let (_, user) = self
            .find_user(key)
            .ok_or_else(|| GraphError::not_found(key))?;
        let sel = Selection::resolve(q.select.as_ref(), "user", |n| self.user_prop(n))?;
        Ok(with_context(
            render(user, Kind::User, &sel),
            &format!("users{}/$entity", sel.context_suffix()),
        ))
    }

    fn get_group(&self, url: &Url, key: &str) -> GraphResult<Value> {
        let q = parse_query(url, &["select"])?;
        let id = self
            .find_group(key)
            .ok_or_else(|| GraphError::not_found(key))?;
        let sel = Selection::resolve(q.select.as_ref(), "group", |n| {
            find_name(n, GROUP_PROPS.iter().copied())
        })?;
        let body = render(&self.group_object(id), Kind::Group, &sel);
        Ok(with_context(
            body,
            &format!("groups{}/$entity", sel.context_suffix()),
        ))
    }

    /// `/groups/{id}/members` or `/transitiveMembers`, optionally cast to users or groups.
    fn list_members(
        &self,
        req: &HttpRequest,
        url: &Url,
        key: &str,
        transitive: bool,
        cast: Option<&str>,
    ) -> GraphResult<Value> {
        let gid = self
            .find_group(key)
            .ok_or_else(|| GraphError::not_found(key))?;
        let members = if transitive {
            self.transitive_members(gid)
        } else {
            self.direct_members(gid)
        };
        let relation = if transitive {
            "transitiveMembers"
        } else {
            "members"
        };
        self.list_objects(req, url, members, cast, &format!("{relation}:{gid}"))
    }

    /// A directoryObject collection (members, memberOf, ...): OData cast, `$select`, `$top`,
    /// `$count` (advanced query only), paging. `scope` binds skiptokens to this listing.
    pub(super) fn list_objects(
        &self,
        req: &HttpRequest,
        url: &Url,
        objects: BTreeMap<String, Kind>,
        cast: Option<&str>,
        scope: &str,
    ) -> GraphResult<Value> {
        let cast = match cast.map(str::to_ascii_lowercase).as_deref() {
            None => None,
            Some("microsoft.graph.user") => Some(Kind::User),
            Some("microsoft.graph.group") => Some(Kind::Group),
            Some(
                "microsoft.graph.device"
                | "microsoft.graph.serviceprincipal"
                | "microsoft.graph.orgcontact",
            ) => {
                return Err(GraphError::not_implemented(&format!(
                    "the OData cast '{}' on a membership",
                    cast.unwrap_or_default()
                )));
            }
            Some(_) => return Err(GraphError::segment(cast.unwrap_or_default())),
        };
        let q = self.page_top(parse_query(url, &["select", "top", "skiptoken", "count"])?);
        let eventual = eventual_consistency(req);
        if cast.is_some() && !(eventual && q.count == Some(true)) {
            return Err(GraphError::bad_request(
                "Request_UnsupportedQuery",
                "OData cast on a membership requires the 'ConsistencyLevel: eventual' header and '$count=true'.",
            ));
        }
        if q.count == Some(true) && !eventual {
            return Err(GraphError::bad_request(
                "Request_BadRequest",
                "$count is not currently supported.",
            ));
        }
        let (type_name, context) = match cast {
            Some(Kind::User) => ("user", "users"),
            Some(Kind::Group) => ("group", "groups"),
            Some(Kind::Object(_)) | None => ("directoryObject", "directoryObjects"),
        };
        let sel = Selection::resolve(q.select.as_ref(), type_name, |n| match cast {
            Some(Kind::User) => self.user_prop(n),
            Some(Kind::Group) => find_name(n, GROUP_PROPS.iter().copied()),
            Some(Kind::Object(_)) | None => self
                .user_prop(n)
                .or_else(|| find_name(n, GROUP_PROPS.iter().copied()))
                .or_else(|| {
                    find_name(
                        n,
                        self.objects
                            .values()
                            .flat_map(|(_, o)| o.keys().map(String::as_str)),
                    )
                }),
        })?;
        let items: Vec<(String, Value)> = objects
            .into_iter()
            .filter(|(_, kind)| cast.is_none_or(|c| c == *kind))
            .map(|(id, kind)| {
                let value = self.render_member(&id, kind, &sel);
                (id, value)
            })
            .collect();
        let total = items.len();
        let scope = format!("{scope}:{type_name}");
        let count = (q.count == Some(true) && q.skiptoken.is_none()).then_some(total);
        let page = paginate(items, url, &q, &scope)?;
        Ok(collection(
            &format!("{context}{}", sel.context_suffix()),
            count,
            page,
        ))
    }

    fn check_member_groups(&self, req: &HttpRequest, url: &Url, key: &str) -> GraphResult<Value> {
        parse_query(url, &[])?;
        let (uid, _) = self
            .find_user(key)
            .ok_or_else(|| GraphError::not_found(key))?;
        let body = json_body(req)?;
        reject_unknown_params(&body, &["groupIds"], "checkMemberGroups")?;
        let ids = body
            .get("groupIds")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                GraphError::bad_request(
                    "Request_BadRequest",
                    "The parameter 'groupIds' is required and must be a collection of strings.",
                )
            })?;
        if ids.is_empty() || ids.len() > 20 {
            return Err(GraphError::bad_request(
                "Request_BadRequest",
                format!(
                    "The 'groupIds' collection must contain between 1 and 20 ids; it has {}.",
                    ids.len()
                ),
            ));
        }
        let mut wanted = Vec::new();
        for id in ids {
            let id = id.as_str().ok_or_else(|| {
                GraphError::bad_request(
                    "Request_BadRequest",
                    "Every value in 'groupIds' must be a string.",
                )
            })?;
            // Real Graph rejects ids that are not GUIDs; fixture ids of known groups are accepted too.
            if !is_guid(id) && self.find_group(id).is_none() {
                return Err(GraphError::bad_request(
                    "Request_BadRequest",
                    format!("Invalid object identifier '{id}'."),
                ));
            }
            wanted.push(id);
        }
        let member_of = self.groups_of(uid);
        let mut hits: Vec<String> = Vec::new();
        for id in wanted {
            if let Some(gid) = self.find_group(id)
                && member_of.contains(gid)
                && !hits.iter().any(|h| h.eq_ignore_ascii_case(id))
            {
                hits.push(id.to_string());
            }
        }
        Ok(string_collection(hits))
    }

    fn get_member_groups(&self, req: &HttpRequest, url: &Url, key: &str) -> GraphResult<Value> {
        parse_query(url, &[])?;
        let (uid, _) = self
            .find_user(key)
            .ok_or_else(|| GraphError::not_found(key))?;
        let body = json_body(req)?;
        reject_unknown_params(&body, &["securityEnabledOnly"], "getMemberGroups")?;
        if !body
            .get("securityEnabledOnly")
            .is_some_and(Value::is_boolean)
        {
            return Err(GraphError::bad_request(
                "Request_BadRequest",
                "The parameter 'securityEnabledOnly' is required and must be a boolean.",
            ));
        }
        // Every simulated group is a security group, so the flag does not change the answer.
        Ok(string_collection(self.groups_of(uid).into_iter().collect()))
    }

    /// A user by id or userPrincipalName, case-insensitively.
    pub(super) fn find_user(&self, key: &str) -> Option<(&String, &Map<String, Value>)> {
        let id = self.user_index().find(key)?;
        self.users.get_key_value(id)
    }

    pub(super) fn find_group(&self, key: &str) -> Option<&String> {
        self.groups.keys().find(|id| id.eq_ignore_ascii_case(key))
    }

    /// Canonical user property name: the v1.0 schema plus any property a stored user carries.
    pub(super) fn user_prop(&self, name: &str) -> Option<String> {
        find_name(name, USER_PROPS.iter().copied()).or_else(|| {
            find_name(
                name,
                self.users
                    .values()
                    .flat_map(|u| u.keys().map(String::as_str)),
            )
        })
    }

    pub(super) fn group_object(&self, id: &str) -> Map<String, Value> {
        let display_name = self
            .groups
            .get(id)
            .map(|g| g.display_name.clone())
            .unwrap_or_default();
        let value = json!({
            "id": id, "displayName": display_name, "description": null, "mail": null,
            "mailEnabled": false, "mailNickname": display_name.replace(' ', ""), "securityEnabled": true,
            "groupTypes": [], "visibility": null, "createdDateTime": null,
        });
        value.as_object().cloned().unwrap_or_default()
    }

    pub(super) fn kind_of(&self, id: &str) -> Option<Kind> {
        if self.users.contains_key(id) {
            Some(Kind::User)
        } else if self.groups.contains_key(id) {
            Some(Kind::Group)
        } else {
            self.objects.get(id).map(|(t, _)| Kind::Object(*t))
        }
    }

    pub(super) fn direct_members(&self, gid: &str) -> BTreeMap<String, Kind> {
        let Some(group) = self.groups.get(gid) else {
            return BTreeMap::new();
        };
        group
            .members
            .iter()
            .filter_map(|m| Some((m.clone(), self.kind_of(m)?)))
            .collect()
    }

    /// Nested membership flattened: users and nested groups, each once; cycles are safe and the
    /// group itself is never its own member.
    fn transitive_members(&self, gid: &str) -> BTreeMap<String, Kind> {
        let mut found = BTreeMap::new();
        let mut visited: BTreeSet<String> = BTreeSet::from([gid.to_string()]);
        let mut stack = vec![gid.to_string()];
        while let Some(current) = stack.pop() {
            for (id, kind) in self.direct_members(&current) {
                if kind == Kind::Group && visited.insert(id.clone()) {
                    stack.push(id.clone());
                }
                if id != gid {
                    found.insert(id, kind);
                }
            }
        }
        found
    }

    /// Every group that transitively contains the user.
    fn groups_of(&self, uid: &str) -> BTreeSet<String> {
        self.groups
            .keys()
            .filter(|g| self.transitive_members(g).contains_key(uid))
            .cloned()
            .collect()
    }

    fn render_member(&self, id: &str, kind: Kind, sel: &Selection) -> Value {
        let object = match kind {
            Kind::User => self.users.get(id).cloned().unwrap_or_default(),
            Kind::Group => self.group_object(id),
            Kind::Object(_) => {
                let mut o = self
                    .objects
                    .get(id)
                    .map(|(_, o)| o.clone())
                    .unwrap_or_default();
                o.insert("id".into(), json!(id));
                o
            }
        };
        let mut value = render(&object, kind, sel);
        if let Value::Object(map) = &mut value {
            map.insert("@odata.type".into(), json!(kind.odata_type()));
        }
        value
    }
}

/// Rejects `$select` of user properties Graph only serves one user at a time (a 501).
pub(super) fn collection_select(sel: &Selection) -> GraphResult<()> {
    match sel {
        Selection::Props(props) => match props
            .iter()
            .find(|p| USER_SINGLE_ONLY.contains(&p.as_str()))
        {
            Some(p) => Err(GraphError::new(
                501,
                "NotImplemented",
                format!(
                    "The property '{p}' can only be read for a single user, not in a collection."
                ),
            )),
            None => Ok(()),
        },
        Selection::Default => Ok(()),
    }
}

/// GET only. A read-only app writing to the directory gets what real Graph gives it: 403.
pub(super) fn read_only(req: &HttpRequest) -> GraphResult<()> {
    match req.method.as_str() {
        "GET" => Ok(()),
        "POST" | "PATCH" | "PUT" | "DELETE" => Err(GraphError::access_denied()),
        _ => Err(GraphError::method_not_allowed()),
    }
}

/// OData actions are POST only.
fn action_method(req: &HttpRequest) -> GraphResult<()> {
    if req.method == "POST" {
        Ok(())
    } else {
        Err(GraphError::method_not_allowed())
    }
}

/// Projects a stored object: the type's default set, or the selected properties that exist on
/// its type (absent ones as null, or `[]` for collections). `id` is always included. A directory
/// object of `entra.objects` has no schema here: all its properties by default, else the
/// selected ones it has (the others left out).
pub(super) fn render(object: &Map<String, Value>, kind: Kind, sel: &Selection) -> Value {
    let defaults = match kind {
        Kind::User => USER_DEFAULT,
        Kind::Group => GROUP_DEFAULT,
        Kind::Object(_) => {
            let mut out: Map<String, Value> = object
                .iter()
                .filter(|(k, _)| match sel {
                    Selection::Default => true,
                    Selection::Props(props) => *k == "id" || props.contains(k),
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            out.insert(
                "id".into(),
                object.get("id").cloned().unwrap_or(Value::Null),
            );
            return Value::Object(out);
        }
    };
    let names: Vec<&str> = match sel {
        Selection::Default => defaults.to_vec(),
        Selection::Props(props) => props
            .iter()
            .map(String::as_str)
            .filter(|p| match kind {
                // Custom properties carried by stored users count as user properties.
                Kind::User => USER_PROPS.contains(p) || !GROUP_PROPS.contains(p),
                Kind::Group => GROUP_PROPS.contains(p),
                Kind::Object(_) => false,
            })
            .collect(),
    };
    let mut out = Map::new();
    for name in names.into_iter().chain(["id"]) {
        let value = object.get(name).cloned().unwrap_or_else(|| {
            if COLLECTION_PROPS.contains(&name) {
                json!([])
            } else {
                Value::Null
            }
        });
        out.insert(name.to_string(), value);
    }
    Value::Object(out)
}

fn with_context(mut value: Value, context: &str) -> Value {
    if let Value::Object(map) = &mut value {
        map.insert(
            "@odata.context".into(),
            json!(format!(
                "https://graph.microsoft.com/v1.0/$metadata#{context}"
            )),
        );
    }
    value
}

fn string_collection(ids: Vec<String>) -> Value {
    json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)",
        "value": ids,
    })
}

/// OData's answer to an action parameter the operation does not declare.
fn reject_unknown_params(
    body: &Map<String, Value>,
    known: &[&str],
    operation: &str,
) -> GraphResult<()> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(GraphError::bad_request(
            "BadRequest",
            format!(
                "The parameter '{k}' in the request payload is not a valid parameter for the operation '{operation}'."
            ),
        )),
        None => Ok(()),
    }
}
