//! A table over exactly the data files of one version of a Delta table.
//!
//! The lake's directories may hold files that no commit names (written by an ingester that
//! died before committing); listing a directory would read them. This table reads only the
//! files of the snapshot, and prunes them before anything is opened: each file's partition
//! values (product and month for usage records, day for raw events) and the minimum and
//! maximum statistics of its `add` action give bounds of its columns, and DataFusion's
//! pruning predicate decides from those bounds which files a query's filters can match.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, StringArray, TimestampMicrosecondArray, UInt64Array};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::{PruningPredicateBuilder, PruningStatistics};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;

/// What a file's partition says about one column: all its values lie in `min..=max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// A text column with one value in the whole file (`product_id`).
    Text { column: &'static str, value: String },
    /// A timestamp column (µs, UTC) bounded below and, when known, above.
    Time { column: &'static str, min: i64, max: Option<i64> },
}

/// A committed data file.
#[derive(Debug, Clone)]
pub struct CommittedFile {
    /// Path in the store.
    pub path: String,
    /// Rows.
    pub rows: u64,
    /// What its partition says.
    pub bounds: Vec<Bound>,
}

/// The table.
pub struct CommittedTable {
    base: String,
    schema: SchemaRef,
    files: Vec<CommittedFile>,
}

impl fmt::Debug for CommittedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommittedTable").field("files", &self.files.len()).finish_non_exhaustive()
    }
}

impl CommittedTable {
    /// A table of `files` (paths relative to the store registered at `base`) with `schema`.
    pub fn new(base: &str, schema: SchemaRef, files: Vec<CommittedFile>) -> Self {
        Self { base: base.to_owned(), schema, files }
    }

    /// Which files `filters` may match.
    fn keep(&self, state: &dyn Session, filters: &[Expr]) -> Result<Vec<bool>> {
        let Some(predicate) = conjunction(filters.iter().cloned()) else { return Ok(vec![true; self.files.len()]) };
        let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
        let physical = state.create_physical_expr(predicate, &df_schema)?;
        match PruningPredicateBuilder::new().with_file_schema(self.schema.clone()).build(physical) {
            Some(pruning) => pruning.prune(&Stats { files: &self.files }),
            None => Ok(vec![true; self.files.len()]),
        }
    }
}

struct Stats<'a> {
    files: &'a [CommittedFile],
}

impl Stats<'_> {
    fn bound(&self, column: &Column, upper: bool) -> Option<ArrayRef> {
        let name = column.name.as_str();
        let text = self
            .files
            .iter()
            .any(|f| f.bounds.iter().any(|b| matches!(b, Bound::Text { column, .. } if *column == name)));
        if text {
            let values: StringArray = self
                .files
                .iter()
                .map(|f| {
                    f.bounds.iter().find_map(|b| match b {
                        Bound::Text { column, value } if *column == name => Some(value.as_str()),
                        _ => None,
                    })
                })
                .collect();
            return Some(Arc::new(values));
        }
        let time = self
            .files
            .iter()
            .any(|f| f.bounds.iter().any(|b| matches!(b, Bound::Time { column, .. } if *column == name)));
        if time {
            let values: TimestampMicrosecondArray = self
                .files
                .iter()
                .map(|f| {
                    f.bounds.iter().find_map(|b| match b {
                        Bound::Time { column, min, max } if *column == name => {
                            if upper {
                                *max
                            } else {
                                Some(*min)
                            }
                        }
                        _ => None,
                    })
                })
                .collect();
            return Some(Arc::new(values.with_timezone("UTC")));
        }
        None
    }
}

impl PruningStatistics for Stats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bound(column, false)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bound(column, true)
    }

    fn num_containers(&self) -> usize {
        self.files.len()
    }

    fn null_counts(&self, _column: &Column) -> Option<ArrayRef> {
        None
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(self.files.iter().map(|f| f.rows).collect::<UInt64Array>()))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

#[async_trait]
impl TableProvider for CommittedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // Used for pruning files; DataFusion still filters the rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let keep = self.keep(state, filters)?;
        let urls = self
            .files
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(f, _)| ListingTableUrl::parse(format!("{}{}", self.base, f.path)))
            .collect::<Result<Vec<_>>>()?;
        tracing::debug!(files = self.files.len(), read = urls.len(), "committed table scan");
        if urls.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(self.schema.clone());
        ListingTable::try_new(config)?.scan(state, projection, filters, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{SessionContext, col, lit};

    fn table() -> CommittedTable {
        let month = |product: &str, m: u32| {
            let start = chrono::NaiveDate::from_ymd_opt(2026, m, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
            let end = chrono::NaiveDate::from_ymd_opt(2026, m + 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
            CommittedFile {
                path: format!("lake/records/product={product}/month=2026-{m:02}/part.parquet"),
                rows: 10,
                bounds: vec![
                    Bound::Text { column: "product_id", value: product.to_owned() },
                    Bound::Time {
                        column: "period_start",
                        min: start.and_utc().timestamp_micros(),
                        max: Some(end.and_utc().timestamp_micros() - 1),
                    },
                ],
            }
        };
        CommittedTable::new(
            "usageflow://lake/",
            usageflow_lake::tables::records_schema(),
            vec![month("PRD-A", 9), month("PRD-A", 10), month("PRD-B", 10), month("PRD-B", 11)],
        )
    }

    #[test]
    fn files_outside_the_filters_are_pruned() {
        let t = table();
        let state = SessionContext::new().state();
        let nov = lit(ScalarValue::TimestampMicrosecond(
            Some(
                chrono::NaiveDate::from_ymd_opt(2026, 11, 1)
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap()
                    .and_utc()
                    .timestamp_micros(),
            ),
            Some("UTC".into()),
        ));
        assert_eq!(t.keep(&state, &[col("product_id").eq(lit("PRD-A"))]).unwrap(), [true, true, false, false]);
        assert_eq!(t.keep(&state, &[col("period_start").gt_eq(nov.clone())]).unwrap(), [false, false, false, true]);
        assert_eq!(
            t.keep(&state, &[col("product_id").eq(lit("PRD-B")), col("period_start").lt(nov)]).unwrap(),
            [false, false, true, false]
        );
        // Filters on other columns keep everything (the rows are still filtered).
        assert_eq!(t.keep(&state, &[col("asset_id").eq(lit("AS-1"))]).unwrap(), [true; 4]);
        assert_eq!(t.keep(&state, &[]).unwrap(), [true; 4]);
    }
}
