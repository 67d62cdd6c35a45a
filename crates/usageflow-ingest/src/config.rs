use serde::{Deserialize, Serialize};

use crate::validate::ValidationConfig;

/// Settings of the ingester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// A batch is flushed to the lake when it holds this many events...
    pub max_batch_events: usize,
    /// ...or this many bytes of message payload...
    pub max_batch_bytes: usize,
    /// ...or when it is this old.
    pub flush_interval_ms: u64,
    /// Name of this instance in lake commits and in its Kafka transactional id; empty = the
    /// host name. It must be stable across restarts of one instance (a restarted instance then
    /// fences and aborts its predecessor's open transaction at once) and differ between
    /// instances that run at the same time.
    pub instance_id: String,
    /// Event ids are remembered for de-duplication while the event's start is at most this
    /// many days old; it must exceed `validation.late_max_days`, since older events are
    /// rejected as late anyway.
    pub dedupe_window_days: u32,
    /// `host:port` for the Prometheus metrics endpoint; empty to disable.
    pub metrics_listen: String,
    /// Seconds between progress lines in the log.
    pub progress_interval_secs: u64,
    /// How long a Kafka transaction (dead-letter events and offsets) may take. An instance
    /// taking over the partitions of one that died waits up to this long for the broker to
    /// abort the dead one's open transaction.
    pub transaction_timeout_ms: u64,
    /// Wait before restarting after a failure (broker down, lost ownership of a partition).
    pub restart_backoff_ms: u64,
    /// Threads that decode, validate, de-duplicate and aggregate events; 0 = one per CPU.
    /// Each Kafka partition is processed by one worker at a time, in offset order, so more
    /// workers than assigned partitions stay idle.
    pub workers: usize,
    /// Which events are accepted.
    pub validation: ValidationConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_batch_events: 500_000,
            max_batch_bytes: 128 * 1024 * 1024,
            flush_interval_ms: 5_000,
            instance_id: String::new(),
            dedupe_window_days: 95,
            metrics_listen: "127.0.0.1:9464".to_owned(),
            progress_interval_secs: 10,
            transaction_timeout_ms: 10_000,
            restart_backoff_ms: 2_000,
            workers: 0,
            validation: ValidationConfig::default(),
        }
    }
}

impl IngestConfig {
    /// The number of processing workers (`workers`, or one per CPU).
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    }

    /// The instance id, defaulting to the host name.
    pub fn instance(&self) -> String {
        if !self.instance_id.is_empty() {
            return self.instance_id.clone();
        }
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        if host.is_empty() { "localhost".to_owned() } else { host }
    }
}
