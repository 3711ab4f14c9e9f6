//! hvctl's library side: the admin-socket client and the renderers, shared with the lab.

pub use hvcluster_common::admin::client;
pub mod guest;
pub mod render;
