use std::path::PathBuf;

/// Errors of the object-storage layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store URL is not one Usageflow can open.
    #[error("invalid object store URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// The local directory for a `file://` store could not be created.
    #[error("cannot create the local object store directory {path}: {source}")]
    LocalDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The object store client rejected its configuration.
    #[error("cannot open object store `{url}`: {source}")]
    Open {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

/// Result of the object-storage layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
