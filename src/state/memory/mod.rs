//! The in-memory side of the shared state: the embedded default for one
//! process. Nothing here is seen by another replica.

pub mod lockout;
pub mod once;
pub mod refresh;
pub mod sessions;

use std::sync::Arc;

/// Everything the memory store keeps; each part documents its own lock.
pub struct Memory {
    pub sessions: Arc<sessions::MemoryStore>,
    pub refresh: Arc<refresh::MemoryRefresh>,
}
