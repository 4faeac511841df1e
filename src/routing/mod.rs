//! How a message finds its session: a core's sid → session table and its
//! groups, the router that takes each downstream `Msg` to the core that owns
//! its session, the per-user admission owned by one core per uid, and the
//! cross-core channel meshes they travel on.
//!
//! # Layout
//!
//! - [`router`]: downstream `Msg` → owning core → session.
//! - [`admission`]: per-user limit (owner core per uid).
//! - [`sessions`]: a core's sid → session table, groups, and the bounded send queues.
//! - [`mesh`]: receiving from the cross-core channel meshes.

pub mod admission;
pub mod mesh;
pub mod router;
pub mod sessions;
