//! A tenant's share of a table, cut at the scan.
//!
//! [`ScopedTable`] wraps a table (the lake's committed files) with the tenant's row predicate.
//! Its scan reads the inner table with that predicate alone (for pruning) and filters every
//! batch by it in a node of its own ([`ScopeExec`]) before anything above sees a row. It takes
//! no filter of the caller (every pushdown is declined) and lets no filter, projection or
//! dynamic filter of the plan above through to the inner scan, so no expression of the caller
//! is ever evaluated on another tenant's rows, or on statistics of files that hold them,
//! whatever the optimizer does with the rest of the plan.

use std::fmt;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, ReplaceChildrenOptions};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::StreamExt;

/// A table that yields only the rows its predicate keeps.
pub struct ScopedTable {
    inner: Arc<dyn TableProvider>,
    predicate: Expr,
}

impl fmt::Debug for ScopedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedTable").field("predicate", &self.predicate).finish_non_exhaustive()
    }
}

impl ScopedTable {
    /// `inner`, cut to the rows where `predicate` (over `inner`'s columns) is true.
    pub fn new(inner: Arc<dyn TableProvider>, predicate: Expr) -> Self {
        Self { inner, predicate }
    }
}

#[async_trait]
impl TableProvider for ScopedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // The caller's filters run above the scope, on the tenant's rows only.
        Ok(vec![TableProviderFilterPushDown::Unsupported; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.inner.schema();
        let wanted: Vec<usize> = projection.cloned().unwrap_or_else(|| (0..schema.fields().len()).collect());
        // Read the wanted columns and those of the predicate.
        let mut read = wanted.clone();
        for column in self.predicate.column_refs() {
            let index = schema.index_of(&column.name)?;
            if !read.contains(&index) {
                read.push(index);
            }
        }
        let input = self.inner.scan(state, Some(&read), std::slice::from_ref(&self.predicate), None).await?;
        let input_schema = input.schema();
        let predicate =
            state.create_physical_expr(self.predicate.clone(), &DFSchema::try_from(input_schema.clone())?)?;
        let output: Vec<usize> = wanted
            .iter()
            .map(|i| input_schema.index_of(schema.field(*i).name()))
            .collect::<std::result::Result<_, _>>()?;
        Ok(Arc::new(ScopeExec::new(input, predicate, output)?))
    }
}

/// Filters its input by the scope predicate and keeps the output columns. Declines every
/// pushdown from above (the trait's defaults), so it is a barrier for the optimizer.
#[derive(Debug)]
pub struct ScopeExec {
    input: Arc<dyn ExecutionPlan>,
    predicate: Arc<dyn PhysicalExpr>,
    output: Vec<usize>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl ScopeExec {
    fn new(input: Arc<dyn ExecutionPlan>, predicate: Arc<dyn PhysicalExpr>, output: Vec<usize>) -> Result<Self> {
        let schema = Arc::new(input.schema().project(&output)?);
        let partitions = input.properties().output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self { input, predicate, output, schema, properties })
    }
}

impl DisplayAs for ScopeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopeExec")
    }
}

impl ExecutionPlan for ScopeExec {
    fn name(&self) -> &str {
        "ScopeExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        f(&self.predicate)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.with_children(children)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        self.with_children(children)
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let (predicate, output) = (self.predicate.clone(), self.output.clone());
        let rows = input.map(move |batch| {
            let batch = batch?;
            let keep = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
            let keep = keep
                .as_boolean_opt()
                .ok_or_else(|| DataFusionError::Internal("the scope predicate is not boolean".into()))?;
            Ok(filter_record_batch(&batch, keep)?.project(&output)?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), rows)))
    }
}

impl ScopeExec {
    fn with_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .filter(|_| children.is_empty())
            .ok_or_else(|| DataFusionError::Internal("ScopeExec has exactly one child".into()))?;
        Ok(Arc::new(ScopeExec::new(input, self.predicate.clone(), self.output.clone())?))
    }
}
