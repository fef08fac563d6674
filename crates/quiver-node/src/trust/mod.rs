//! What a node trusts and proves, below every Raft group: API tokens' secrets and hashes
//! (`token`), the cluster secret members share (`secret`), and the proof a member sends
//! with each call to another (`member`). Deciding who may call what is `auth`'s.

pub mod member;
pub mod secret;
pub use quiver_store::token;
