//! The provisioning rules, pure: no I/O, no platform. What an Entra user is, how a ZenQMS
//! directory is matched and planned against, roles, scope, the one mass-deactivation guard,
//! link checks and the inbox's shape.

pub mod address;
pub mod entra;
pub mod guard;
pub mod inbox;
pub mod links;
pub mod plan;
pub mod roles;
pub mod scope;
