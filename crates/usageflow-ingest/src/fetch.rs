//! Batched consumption from librdkafka.
//!
//! `BaseConsumer::poll` hands out one message per call, and each call pays for an event
//! wrapper, a reference-counted allocation and librdkafka's poll bookkeeping (several clock
//! reads): measured, about a third of the poll thread's time. rdkafka 0.39 has no batch API, so
//! this module uses librdkafka's own: the fetch queues of the assigned partitions are forwarded
//! into one queue of ours ([`FetchQueue`]), read with `rd_kafka_consume_batch_queue`, up to
//! [`BATCH`] messages per call.
//!
//! The consumer's own queue keeps everything else (rebalances, errors, commits), so the
//! consumer must still be polled (every batch, non-blocking), as before. A partition's fetch
//! queue must be forwarded *before* it is assigned ([`Router::forward`] in the rebalance's
//! pre-assign callback): librdkafka then keeps the application's forwarding when the fetch
//! starts, and every message of the partition arrives here, in offset order. Messages fetched
//! for a partition that is later revoked carry an outdated version and librdkafka drops them
//! inside the batch call, as it does on the consumer's queue.
//!
//! This is the one module of the project with `unsafe` code: foreign calls into librdkafka,
//! each with the invariant it relies on.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_void};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Messages read per batch call at most.
pub const BATCH: usize = 1024;

/// The queue handle, shared with [`Router`]s; `None` once the queue is destroyed.
struct Shared {
    rk: NonNull<rdsys::rd_kafka_t>,
    queue: Mutex<Option<NonNull<rdsys::rd_kafka_queue_t>>>,
}

// SAFETY: librdkafka's client and queue handles are thread-safe (every queue operation takes
// the queue's lock); the pointer is only used while the mutex says the queue exists.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

/// One application queue receiving the messages of the partitions routed to it.
///
/// It borrows the consumer, so it is destroyed before the consumer's client is.
pub struct FetchQueue<'c> {
    shared: Arc<Shared>,
    batch: Vec<*mut rdsys::rd_kafka_message_t>,
    _consumer: PhantomData<&'c ()>,
}

impl std::fmt::Debug for FetchQueue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchQueue").finish_non_exhaustive()
    }
}

/// Forwards partitions' fetch queues into a [`FetchQueue`]; cheap to clone, usable from
/// rebalance callbacks. After the queue is destroyed it does nothing.
#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

impl Router {
    /// Routes the messages of `topic`'s `partitions` into the queue. Call it before the
    /// partitions are assigned.
    pub fn forward(&self, topic: &str, partitions: &[i32]) {
        let Ok(topic) = CString::new(topic) else { return };
        let queue = self.shared.queue.lock().expect("fetch queue");
        let Some(queue) = *queue else { return };
        for &partition in partitions {
            // SAFETY: `rk` is alive (the `FetchQueue` that owns `queue` borrows the consumer, and
            // `queue` is still `Some`); `topic` is NUL-terminated. The returned handle is a new
            // reference to the partition's fetch queue (created if missing), released below.
            let source =
                unsafe { rdsys::rd_kafka_queue_get_partition(self.shared.rk.as_ptr(), topic.as_ptr(), partition) };
            if source.is_null() {
                continue;
            }
            // SAFETY: both handles are valid; forwarding takes its own reference on `queue`.
            unsafe {
                rdsys::rd_kafka_queue_forward(source, queue.as_ptr());
                rdsys::rd_kafka_queue_destroy(source);
            }
        }
    }
}

/// A message read from the queue, valid during the callback of [`FetchQueue::consume`].
pub struct Fetched<'a> {
    msg: &'a rdsys::rd_kafka_message_t,
}

impl std::fmt::Debug for Fetched<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched").field("partition", &self.partition()).field("offset", &self.offset()).finish()
    }
}

/// A byte range owned by librdkafka, as a slice (empty for a null pointer).
///
/// # Safety
/// `ptr` must point at `len` readable bytes that outlive `'a`, or be null.
unsafe fn bytes<'a>(ptr: *const c_void, len: usize) -> &'a [u8] {
    if ptr.is_null() {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }
    }
}

impl<'a> Fetched<'a> {
    /// The error this entry carries instead of a message (end of partition, consumer error).
    pub fn error(&self) -> Option<KafkaError> {
        if self.msg.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        let code = RDKafkaErrorCode::from(self.msg.err);
        Some(match code {
            RDKafkaErrorCode::PartitionEOF => KafkaError::PartitionEOF(self.msg.partition),
            RDKafkaErrorCode::Fatal => KafkaError::MessageConsumptionFatal(code),
            _ => KafkaError::MessageConsumption(code),
        })
    }

    /// Partition of the message.
    pub fn partition(&self) -> i32 {
        self.msg.partition
    }

    /// Offset of the message.
    pub fn offset(&self) -> i64 {
        self.msg.offset
    }

    /// Payload (empty for a null payload).
    pub fn payload(&self) -> &'a [u8] {
        // SAFETY: librdkafka keeps `len` bytes at `payload` until the message is destroyed,
        // which happens after the callback that holds `'a`.
        unsafe { bytes(self.msg.payload, self.msg.len) }
    }

    /// Key, if the message has one.
    pub fn key(&self) -> Option<&'a [u8]> {
        // SAFETY: as for the payload.
        (!self.msg.key.is_null()).then(|| unsafe { bytes(self.msg.key, self.msg.key_len) })
    }

    /// Timestamp in milliseconds since the epoch, if the message has one.
    pub fn timestamp_millis(&self) -> Option<i64> {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is valid; `kind` is a valid out pointer.
        let ts = unsafe { rdsys::rd_kafka_message_timestamp(self.msg, &mut kind) };
        (kind != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts >= 0).then_some(ts)
    }

    /// Calls `f` with each header's name and value, in order.
    pub fn for_each_header(&self, mut f: impl FnMut(&'a [u8], Option<&'a [u8]>)) {
        let mut headers: *mut rdsys::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: the message is valid; the headers stay owned by the message (parsed lazily,
        // once, on the first call).
        let err = unsafe { rdsys::rd_kafka_message_headers(self.msg, &mut headers) };
        if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return;
        }
        for idx in 0.. {
            let (mut name, mut value, mut size): (*const c_char, *const c_void, usize) =
                (std::ptr::null(), std::ptr::null(), 0);
            // SAFETY: `headers` belongs to the live message; the out pointers are valid.
            let err = unsafe { rdsys::rd_kafka_header_get_all(headers, idx, &mut name, &mut value, &mut size) };
            if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                return;
            }
            // SAFETY: header names are NUL-terminated and values `size` bytes, both owned by
            // the message.
            let (name, value) =
                unsafe { (CStr::from_ptr(name).to_bytes(), (!value.is_null()).then(|| bytes(value, size))) };
            f(name, value);
        }
    }
}

impl<'c> FetchQueue<'c> {
    /// A new, empty queue on the consumer's client.
    pub fn new<C: ConsumerContext>(consumer: &'c BaseConsumer<C>) -> Result<Self, KafkaError> {
        let rk = NonNull::new(consumer.client().native_ptr())
            .ok_or_else(|| KafkaError::ClientCreation("the consumer has no client".into()))?;
        // SAFETY: `rk` is the consumer's live client; the queue is destroyed in `drop`, before
        // the consumer (borrowed for `'c`) can be.
        let queue = NonNull::new(unsafe { rdsys::rd_kafka_queue_new(rk.as_ptr()) })
            .ok_or_else(|| KafkaError::ClientCreation("librdkafka refused a new queue".into()))?;
        Ok(Self {
            shared: Arc::new(Shared { rk, queue: Mutex::new(Some(queue)) }),
            batch: Vec::with_capacity(BATCH),
            _consumer: PhantomData,
        })
    }

    /// A router into this queue, for the rebalance callbacks.
    pub fn router(&self) -> Router {
        Router { shared: self.shared.clone() }
    }

    /// Reads up to [`BATCH`] messages, waiting up to `timeout` for the first, and calls `f`
    /// with each in order. Returns how many were read.
    pub fn consume(&mut self, timeout: Duration, mut f: impl FnMut(&Fetched<'_>)) -> usize {
        let Some(queue) = *self.shared.queue.lock().expect("fetch queue") else { return 0 };
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        self.batch.clear();
        // SAFETY: `queue` is alive (owned by `self`); `batch` has room for `BATCH` pointers,
        // of which librdkafka fills the first `n`.
        let n = unsafe {
            let n = rdsys::rd_kafka_consume_batch_queue(queue.as_ptr(), timeout_ms, self.batch.as_mut_ptr(), BATCH);
            let n = usize::try_from(n).unwrap_or(0).min(BATCH);
            self.batch.set_len(n);
            n
        };
        for &msg in &self.batch {
            // SAFETY: librdkafka returned a valid message, ours until destroyed below.
            let fetched = Fetched { msg: unsafe { &*msg } };
            f(&fetched);
        }
        for msg in self.batch.drain(..) {
            // SAFETY: each message is destroyed once, after its last use above.
            unsafe { rdsys::rd_kafka_message_destroy(msg) };
        }
        n
    }
}

impl Drop for FetchQueue<'_> {
    fn drop(&mut self) {
        if let Some(queue) = self.shared.queue.lock().expect("fetch queue").take() {
            // SAFETY: the consumer is still alive (borrowed for `'c`); the queue is ours. Partition
            // queues still forwarding here hold their own references, and librdkafka fails any
            // further message routed to the destroyed queue instead of keeping it.
            unsafe { rdsys::rd_kafka_queue_destroy(queue.as_ptr()) };
        }
    }
}
