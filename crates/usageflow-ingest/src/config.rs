use serde::{Deserialize, Serialize};

use crate::InvalidSetting;
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

/// The largest `ingest.max_batch_events`.
pub const MAX_BATCH_EVENTS: usize = 1_000_000_000;

impl IngestConfig {
    /// Checks the values the ingester cannot work with, naming the key of the first.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        let positive = [
            ("ingest.max_batch_events", self.max_batch_events as u64),
            ("ingest.max_batch_bytes", self.max_batch_bytes as u64),
            ("ingest.flush_interval_ms", self.flush_interval_ms),
            ("ingest.progress_interval_secs", self.progress_interval_secs),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(InvalidSetting::new(key, "must be greater than 0"));
        }
        // A batch is held in memory, and a record counts its events of one batch in 32 bits.
        if self.max_batch_events > MAX_BATCH_EVENTS {
            return Err(InvalidSetting::new(
                "ingest.max_batch_events",
                format!("must be at most {MAX_BATCH_EVENTS}, got {}", self.max_batch_events),
            ));
        }
        if !self.instance_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err(InvalidSetting::new(
                "ingest.instance_id",
                format!(
                    "`{}` may only have ASCII letters, digits, `.`, `_` and `-` (it names lake commits and a Kafka transactional id)",
                    self.instance_id
                ),
            ));
        }
        // librdkafka's lower bound, and the broker's default `transaction.max.timeout.ms`.
        if !(1_000..=900_000).contains(&self.transaction_timeout_ms) {
            return Err(InvalidSetting::new(
                "ingest.transaction_timeout_ms",
                format!("must be between 1000 and 900000, got {}", self.transaction_timeout_ms),
            ));
        }
        // An id must be remembered for as long as an event carrying it can still be accepted:
        // a shorter window would count a late duplicate twice.
        let late_days = self.validation.late_max_days.max(self.validation.late_grace_hours.div_ceil(24));
        if self.dedupe_window_days <= late_days {
            return Err(InvalidSetting::new(
                "ingest.dedupe_window_days",
                format!(
                    "is {} but late events up to {late_days} days old are accepted (ingest.validation.late_max_days, \
                     late_grace_hours); duplicates older than the window would be counted twice, so it must be greater",
                    self.dedupe_window_days
                ),
            ));
        }
        if !self.metrics_listen.is_empty() && self.metrics_listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(InvalidSetting::new(
                "ingest.metrics_listen",
                format!(
                    "expected host:port such as 127.0.0.1:9464 (or empty to disable), got `{}`",
                    self.metrics_listen
                ),
            ));
        }
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_and_each_bad_value_is_named() {
        assert_eq!(IngestConfig::default().check(), Ok(()));
        let with = |f: fn(&mut IngestConfig)| {
            let mut c = IngestConfig::default();
            f(&mut c);
            c.check().unwrap_err().key
        };
        assert_eq!(with(|c| c.max_batch_bytes = 0), "ingest.max_batch_bytes");
        assert_eq!(with(|c| c.max_batch_events = MAX_BATCH_EVENTS + 1), "ingest.max_batch_events");
        assert_eq!(with(|c| c.flush_interval_ms = 0), "ingest.flush_interval_ms");
        assert_eq!(with(|c| c.instance_id = "host 1".into()), "ingest.instance_id");
        assert_eq!(with(|c| c.transaction_timeout_ms = 999), "ingest.transaction_timeout_ms");
        assert_eq!(with(|c| c.dedupe_window_days = 92), "ingest.dedupe_window_days");
        // The grace period alone also counts: 100 days of grace outlast a 95-day window.
        assert_eq!(with(|c| c.validation.late_grace_hours = 100 * 24), "ingest.dedupe_window_days");
        assert_eq!(with(|c| c.metrics_listen = "localhost".into()), "ingest.metrics_listen");
        let mut ok = IngestConfig {
            instance_id: "ingest-1.eu_west".into(),
            metrics_listen: String::new(),
            ..IngestConfig::default()
        };
        assert_eq!(ok.check(), Ok(()));
        ok.max_batch_events = MAX_BATCH_EVENTS;
        ok.dedupe_window_days = 93;
        assert_eq!(ok.check(), Ok(()));
    }
}
