//! Bounds on what one query may use, for sessions that run other people's SQL.
//!
//! * **Memory.** Each query's session gets a pool of its own ([`QueryPool`]) that also draws
//!   on one pool shared by every query of the server: a query over its own limit, or one that
//!   finds the shared pool used up, fails with `ResourcesExhausted` (operators that can spill
//!   do, where DataFusion can) instead of taking the process's memory.
//! * **Values built by functions.** DataFusion's pools see operators' buffers (sorts, hash
//!   tables, aggregates), not the values that scalar functions allocate. The functions that
//!   can make a value far larger than their input (`repeat`, `lpad`, `rpad`, `replace`,
//!   `regexp_replace`, `array_repeat`, `range`, `generate_series`) are replaced in the session
//!   by the same functions that first check the size of what they would build
//!   ([`BoundedUdf`]); every projection's output batch is checked too ([`SizeCheckExec`]),
//!   so values that grow step by step (`s || s` over a chain of subqueries) stop at the limit.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryLimit, MemoryPool, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::ReplaceChildrenOptions;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::prelude::SessionContext;
use futures::StreamExt;

/// What one query may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Memory one query's operators may reserve.
    pub max_query_memory_bytes: usize,
    /// The largest text, binary or list value a function may build.
    pub max_value_bytes: usize,
    /// The most bytes of text, binary and list values one batch of a projection may hold.
    pub max_batch_value_bytes: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self { max_query_memory_bytes: 256 << 20, max_value_bytes: 16 << 20, max_batch_value_bytes: 256 << 20 }
    }
}

/// The memory every query of a server shares.
#[derive(Debug, Clone)]
pub struct SharedMemory {
    pool: Arc<GreedyMemoryPool>,
    bytes: usize,
}

impl SharedMemory {
    /// A shared pool of `bytes`.
    pub fn new(bytes: usize) -> Self {
        Self { pool: Arc::new(GreedyMemoryPool::new(bytes)), bytes }
    }

    /// Bytes reserved by running queries now.
    pub fn reserved(&self) -> usize {
        self.pool.reserved()
    }
}

/// One query's memory pool: at most its own limit, and only what the shared pool has left.
#[derive(Debug)]
pub struct QueryPool {
    limit: usize,
    used: AtomicUsize,
    shared: SharedMemory,
}

impl QueryPool {
    /// A pool of `limit` bytes drawing on `shared`.
    pub fn new(limit: usize, shared: SharedMemory) -> Self {
        Self { limit, used: AtomicUsize::new(0), shared }
    }
}

impl fmt::Display for QueryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "query pool: {} of {} bytes", self.used.load(Ordering::Relaxed), self.limit)
    }
}

fn mib(bytes: usize) -> usize {
    bytes >> 20
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "usageflow-query"
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
        self.shared.pool.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::Relaxed);
        self.shared.pool.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let used = self.used.fetch_add(additional, Ordering::Relaxed);
        if used + additional > self.limit {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the query needs more than its {} MiB of memory",
                mib(self.limit)
            )));
        }
        if self.shared.pool.try_grow(reservation, additional).is_err() {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the server's {} MiB for queries are in use by other queries; try again",
                mib(self.shared.bytes)
            )));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

/// Why a bounded function or projection refused to build a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LimitExceeded(pub String);

fn exceeded(message: String) -> DataFusionError {
    DataFusionError::External(Box::new(LimitExceeded(message)))
}

/// Bytes of text, binary and list values an array holds (its slice only).
pub fn value_bytes(array: &dyn Array) -> usize {
    match array.data_type() {
        DataType::Utf8 => array
            .as_string::<i32>()
            .offsets()
            .iter()
            .last()
            .map_or(0, |l| usize::try_from(*l - array.as_string::<i32>().offsets()[0]).unwrap_or(usize::MAX)),
        DataType::LargeUtf8 => {
            let o = array.as_string::<i64>().offsets();
            usize::try_from(o[o.len() - 1] - o[0]).unwrap_or(usize::MAX)
        }
        DataType::Binary => {
            let o = array.as_binary::<i32>().offsets();
            usize::try_from(o[o.len() - 1] - o[0]).unwrap_or(usize::MAX)
        }
        DataType::LargeBinary => {
            let o = array.as_binary::<i64>().offsets();
            usize::try_from(o[o.len() - 1] - o[0]).unwrap_or(usize::MAX)
        }
        DataType::Utf8View => array.as_string_view().views().iter().map(|v| (*v as u32) as usize).sum(),
        DataType::BinaryView => array.as_binary_view().views().iter().map(|v| (*v as u32) as usize).sum(),
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            let o = list.offsets();
            let (start, end) = (o[0] as usize, o[o.len() - 1] as usize);
            let values = list.values().slice(start, end - start);
            (end - start).saturating_mul(8).saturating_add(value_bytes(values.as_ref()))
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>();
            let o = list.offsets();
            let (start, end) = (o[0] as usize, o[o.len() - 1] as usize);
            let values = list.values().slice(start, end - start);
            (end - start).saturating_mul(8).saturating_add(value_bytes(values.as_ref()))
        }
        DataType::Struct(_) => array.as_struct().columns().iter().map(|c| value_bytes(c.as_ref())).sum(),
        _ => 0,
    }
}

/// The largest single value of an array of text, binary or lists, in bytes.
fn largest_value(array: &dyn Array) -> usize {
    let widest = |lens: &mut dyn Iterator<Item = usize>| lens.max().unwrap_or(0);
    match array.data_type() {
        DataType::Utf8 => widest(&mut array.as_string::<i32>().offsets().windows(2).map(|w| (w[1] - w[0]) as usize)),
        DataType::LargeUtf8 => {
            widest(&mut array.as_string::<i64>().offsets().windows(2).map(|w| (w[1] - w[0]) as usize))
        }
        DataType::Binary => widest(&mut array.as_binary::<i32>().offsets().windows(2).map(|w| (w[1] - w[0]) as usize)),
        DataType::LargeBinary => {
            widest(&mut array.as_binary::<i64>().offsets().windows(2).map(|w| (w[1] - w[0]) as usize))
        }
        DataType::Utf8View => widest(&mut array.as_string_view().views().iter().map(|v| (*v as u32) as usize)),
        DataType::BinaryView => widest(&mut array.as_binary_view().views().iter().map(|v| (*v as u32) as usize)),
        DataType::List(_) | DataType::LargeList(_) => value_bytes(array),
        _ => 0,
    }
}

/// The functions a session gets in bounded form.
const AMPLIFIERS: [&str; 8] =
    ["repeat", "lpad", "rpad", "replace", "regexp_replace", "array_repeat", "range", "generate_series"];

/// A scalar function that checks the size of what it would build before and after it runs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BoundedUdf {
    inner: ScalarUDF,
    max_value_bytes: usize,
}

/// The largest integer among a function argument's values.
fn max_int(value: &ColumnarValue) -> Option<i64> {
    match value {
        ColumnarValue::Scalar(s) => scalar_int(s),
        ColumnarValue::Array(a) => {
            (0..a.len()).filter_map(|i| ScalarValue::try_from_array(a, i).ok()).filter_map(|s| scalar_int(&s)).max()
        }
    }
}

fn scalar_int(s: &ScalarValue) -> Option<i64> {
    match s.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(v) => v,
        _ => None,
    }
}

/// The largest value of a text argument, in bytes.
fn max_len(value: &ColumnarValue) -> usize {
    match value {
        ColumnarValue::Scalar(s) => s.to_array().map(|a| largest_value(a.as_ref())).unwrap_or(0),
        ColumnarValue::Array(a) => largest_value(a.as_ref()),
    }
}

impl BoundedUdf {
    /// The bytes the call would build at most, where the function can say before it runs.
    fn would_build(&self, args: &[ColumnarValue]) -> Option<u128> {
        let arg = |i: usize| args.get(i);
        let int = |i: usize| arg(i).and_then(max_int).unwrap_or(0).max(0) as u128;
        let len = |i: usize| arg(i).map_or(0, max_len) as u128;
        match self.inner.name() {
            "repeat" => Some(len(0) * int(1)),
            // Characters up to four bytes each, the fill included.
            "lpad" | "rpad" => Some(int(1) * 4),
            "replace" => Some(len(0) + (len(0) + 1) * len(2)),
            "regexp_replace" => Some(len(0) + (len(0) + 1) * len(2)),
            "array_repeat" => Some(int(1) * 16),
            "range" | "generate_series" => {
                let (start, stop, step) = match args.len() {
                    1 => (0, arg(0).and_then(max_int).unwrap_or(0), 1),
                    2 => (arg(0).and_then(max_int).unwrap_or(0), arg(1).and_then(max_int).unwrap_or(0), 1),
                    _ => (
                        arg(0).and_then(max_int).unwrap_or(0),
                        arg(1).and_then(max_int).unwrap_or(0),
                        arg(2).and_then(max_int).unwrap_or(1),
                    ),
                };
                let span = (i128::from(stop) - i128::from(start)).unsigned_abs();
                let step = i128::from(step).unsigned_abs().max(1);
                Some(span / step * 8)
            }
            _ => None,
        }
    }
}

impl ScalarUDFImpl for BoundedUdf {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let inner = self.inner.inner().with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(BoundedUdf { inner, max_value_bytes: self.max_value_bytes }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(bytes) = self.would_build(&args.args)
            && bytes > self.max_value_bytes as u128
        {
            return Err(exceeded(format!(
                "{}() would build a value of up to {bytes} bytes, over the limit of {} bytes",
                self.name(),
                self.max_value_bytes
            )));
        }
        let out = self.inner.invoke_with_args(args)?;
        let largest = max_len(&out);
        if largest > self.max_value_bytes {
            return Err(exceeded(format!(
                "{}() built a value of {largest} bytes, over the limit of {} bytes",
                self.name(),
                self.max_value_bytes
            )));
        }
        Ok(out)
    }
}

/// Checks every batch a projection outputs against the batch limit.
#[derive(Debug)]
pub struct SizeCheckExec {
    input: Arc<dyn ExecutionPlan>,
    limit: usize,
}

impl DisplayAs for SizeCheckExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SizeCheckExec: limit={}", self.limit)
    }
}

impl ExecutionPlan for SizeCheckExec {
    fn name(&self) -> &str {
        "SizeCheckExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .filter(|_| children.is_empty())
            .ok_or_else(|| DataFusionError::Internal("SizeCheckExec has exactly one child".into()))?;
        Ok(Arc::new(SizeCheckExec { input, limit: self.limit }))
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(datafusion::physical_plan::execution_plan::ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let limit = self.limit;
        let schema = input.schema();
        let checked = input.map(move |batch| {
            let batch = batch?;
            let bytes: usize = batch.columns().iter().map(|c: &ArrayRef| value_bytes(c.as_ref())).sum();
            if bytes > limit {
                return Err(exceeded(format!(
                    "a step of the query built {bytes} bytes of values in one batch, over the limit of {limit} bytes"
                )));
            }
            Ok(batch)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, checked)))
    }
}

/// Puts a [`SizeCheckExec`] above every projection.
#[derive(Debug)]
pub struct CheckProjections {
    limit: usize,
}

impl PhysicalOptimizerRule for CheckProjections {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if (node.as_ref() as &dyn Any).is::<ProjectionExec>() {
                Ok(Transformed::yes(
                    Arc::new(SizeCheckExec { input: node, limit: self.limit }) as Arc<dyn ExecutionPlan>
                ))
            } else {
                Ok(Transformed::no(node))
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "usageflow_check_projections"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A session context whose queries are bounded by `limits`, drawing memory from `shared`.
pub fn bounded_context(limits: &QueryLimits, shared: &SharedMemory) -> Result<SessionContext> {
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::execution::session_state::SessionStateBuilder;
    let pool = Arc::new(QueryPool::new(limits.max_query_memory_bytes, shared.clone()));
    let runtime = RuntimeEnvBuilder::new().with_memory_pool(pool).build_arc()?;
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_runtime_env(runtime)
        .with_physical_optimizer_rule(Arc::new(CheckProjections { limit: limits.max_batch_value_bytes }))
        .build();
    let ctx = SessionContext::new_with_state(state);
    for name in AMPLIFIERS {
        if let Some(udf) = ctx.state().scalar_functions().get(name).cloned() {
            let bounded = BoundedUdf { inner: ScalarUDF::clone(&udf), max_value_bytes: limits.max_value_bytes };
            ctx.register_udf(ScalarUDF::new_from_impl(bounded));
        }
    }
    Ok(ctx)
}

/// When in a query's life an error came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Parsing and planning: nothing has been read yet, so the message holds only the query's
    /// own text and the names of tables, columns, functions and types.
    Planning,
    /// Running: the message may quote values of rows, so it is withheld.
    Running,
}

/// An error as a caller may see it: a class, and a message that holds no value of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicError {
    /// `syntax`, `plan`, `resources`, `limit` or `execution`.
    pub class: &'static str,
    /// What the caller may read.
    pub message: String,
}

/// The caller's view of `err`, raised during `phase`.
pub fn public_error(err: &DataFusionError, phase: Phase) -> PublicError {
    let root = err.find_root();
    if let DataFusionError::External(e) = root
        && let Some(limit) = e.downcast_ref::<LimitExceeded>()
    {
        return PublicError { class: "limit", message: limit.0.clone() };
    }
    match (root, phase) {
        (DataFusionError::ResourcesExhausted(m), _) => {
            // Our pool's words, or DataFusion's naming its operators and sizes only.
            PublicError { class: "resources", message: format!("the query ran out of memory: {m}") }
        }
        (DataFusionError::SQL(..), Phase::Planning) => PublicError { class: "syntax", message: root.to_string() },
        (
            DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_),
            Phase::Planning,
        ) => PublicError { class: "plan", message: root.to_string() },
        _ => PublicError {
            class: "execution",
            message: "the query failed while it ran; the message is withheld because it may quote values of rows \
                      (the server's log has it under the request id)"
                .to_owned(),
        },
    }
}
