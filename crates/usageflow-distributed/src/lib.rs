//! The lake's SQL on a distributed engine: DataFusion Ballista, whose release line follows
//! DataFusion's (Ballista 55 on DataFusion 55), for when one machine is not enough.
//!
//! A Ballista cluster is a scheduler and executors that talk gRPC; the client plans the query
//! like the embedded engine does and the scheduler splits it into stages that the executors
//! run, shuffling between them. [`LocalCluster`] starts a scheduler and executors on
//! localhost (what the tests and a single-host setup use); [`connect`] joins a running
//! cluster (`ballista-scheduler` and `ballista-executor` processes) by its URL. Either way
//! [`register_lake`] registers the lake's tables over exactly the committed files, so the
//! answers equal the embedded session's.

use std::net::SocketAddr;
use std::path::Path;

use ballista::prelude::SessionContextExt;
use ballista_core::serde::BallistaCodec;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use std::sync::Arc;
use usageflow_lake::{LakeState, Table};

/// A scheduler and executors running on localhost.
#[derive(Debug, Clone, Copy)]
pub struct LocalCluster {
    /// The scheduler's address.
    pub scheduler: SocketAddr,
    /// Executors started.
    pub executors: usize,
}

impl LocalCluster {
    /// Starts a scheduler and `executors` executors of `slots` task slots each.
    pub async fn start(executors: usize, slots: usize) -> Result<Self> {
        let scheduler = ballista_scheduler::standalone::new_standalone_scheduler()
            .await
            .map_err(|e| DataFusionError::Configuration(format!("cannot start the scheduler: {e}")))?;
        let url = format!("http://localhost:{}", scheduler.port());
        let client = loop {
            match SchedulerGrpcClient::connect(url.clone()).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        };
        for _ in 0..executors {
            ballista_executor::new_standalone_executor(client.clone(), slots, BallistaCodec::default())
                .await
                .map_err(|e| DataFusionError::Configuration(format!("cannot start an executor: {e}")))?;
        }
        Ok(Self { scheduler, executors })
    }

    /// The `df://` URL of the scheduler.
    pub fn url(&self) -> String {
        format!("df://localhost:{}", self.scheduler.port())
    }
}

/// A session whose queries run on the cluster at `url` (`df://host:port`).
pub async fn connect(url: &str) -> Result<SessionContext> {
    SessionContext::remote(url).await
}

/// Registers `usage_records` and `events` over the committed files of a lake kept in the
/// local directory `root` (executors read the files themselves, so they must see the same
/// directory).
pub async fn register_lake(ctx: &SessionContext, root: &Path, lake: &LakeState) -> Result<()> {
    for (name, table, schema) in [
        ("usage_records", Table::Records, usageflow_lake::tables::records_schema()),
        ("events", Table::Events, usageflow_lake::tables::events_schema()),
    ] {
        let urls = lake
            .files_of(table)
            .map(|f| ListingTableUrl::parse(root.join(f.location()).to_string_lossy()))
            .collect::<Result<Vec<_>>>()?;
        if urls.is_empty() {
            ctx.register_table(name, Arc::new(datafusion::datasource::empty::EmptyTable::new(schema)))?;
            continue;
        }
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options).with_schema(schema);
        ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
    }
    Ok(())
}
