//! The synchronous refusal of a call, shared by the master and agent state machines.
//!
//! Each shell maps these to HTTP status codes in one place; the state machines only say which
//! kind of refusal it is and why. Asynchronous failures (task errors, stream errors) are events,
//! not `CallError`s.

/// A call refused synchronously.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// 400 Bad Request.
    #[error("{0}")]
    BadRequest(String),
    /// 403 Forbidden.
    #[error("{0}")]
    Forbidden(String),
    /// 404 Not Found (an operator call naming an agent the master does not know).
    #[error("{0}")]
    NotFound(String),
    /// 409 Conflict (an operator operation the agent's resources cannot take).
    #[error("{0}")]
    Conflict(String),
}
