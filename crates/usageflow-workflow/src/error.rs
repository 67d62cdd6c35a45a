use usageflow_model::WorkflowError;

/// Errors of the workflow store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The workflow refused the step.
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// The object store failed; retrying may help.
    #[error("object store error at {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// A stored event could not be read back: the log is damaged.
    #[error("corrupt workflow event {path}: {reason}")]
    Corrupt { path: String, reason: String },
    /// Writers kept racing for the same event; the caller may retry.
    #[error("usage file {file} changed {attempts} times while this step was being written; try again")]
    Contention { file: String, attempts: u32 },
    /// No free usage-file id was found.
    #[error("no free usage file id for key `{key}` after {attempts} candidates")]
    NoFreeId { key: String, attempts: u32 },
}

/// Result of the workflow store.
pub type Result<T, E = Error> = std::result::Result<T, E>;
