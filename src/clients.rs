//! The services the component talks to, over the platform's HTTP: Microsoft Graph (token,
//! users, groups, delta, `$batch`), its change-notification subscriptions, ZenQMS, and the
//! retry layer every client runs on.

pub mod graph;
pub mod retry;
pub mod subscriptions;
pub mod zenqms;
