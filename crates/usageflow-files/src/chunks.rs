//! Usage chunks: when a file is accepted, its records are exported per hub, one chunk (a
//! Connect-format workbook) for each hub the records' assets are billed through. Chunks move
//! `draft` → `ready` (generated) or `failed`; the provider closes a ready chunk with the
//! billing batch id, or regenerates a ready or failed one. Every state is a snapshot
//! (`workflow/chunks/{UFC-id}/{version}.json`), so the history stays.

use std::collections::BTreeMap;

use chrono::Utc;
use object_store::path::Path;
use usageflow_model::{
    Actor, ActorRole, Binding, Chunk, ChunkStatus, ChunkStep, EventStamp, FileEvents, Ref, Stats, UsageFile, ids,
};

use crate::service::{FileService, ServiceError};
use crate::write::write_workbook;
use crate::xlsx::read_workbook;

fn prefix(chunk_id: &str) -> Path {
    Path::from("workflow/chunks").join(chunk_id)
}

impl FileService {
    /// Generates the chunks of an accepted file, one per hub (again: a no-op when they exist).
    pub async fn generate_chunks(&self, file_id: &str) -> Result<Vec<Chunk>, ServiceError> {
        let file = self.workflow().get(file_id).await?;
        if !file.status.is_billed() {
            return Err(ServiceError::Document(format!(
                "chunks are generated for accepted files; {file_id} is {}",
                file.status
            )));
        }
        let existing = self.chunks(file_id).await?;
        if !existing.is_empty() {
            return Ok(existing);
        }
        let object =
            file.uploaded_file.as_ref().ok_or_else(|| ServiceError::Document(format!("{file_id} has no records")))?;
        let book = read_workbook(&self.document(object).await?, &Default::default())
            .map_err(|e| ServiceError::Document(e.to_string()))?;
        // Exactly the approved records: the valid records of the current upload that the
        // provider did not reject one by one.
        let valid: std::collections::HashSet<String> = self.record_ids(&file).await?.into_iter().collect();
        let (_, changes) = self.record_changes(&file).await?;
        let approved = |id: &str| {
            valid.contains(id) && changes.get(id).is_none_or(|c| c.status != usageflow_model::RecordStatus::Rejected)
        };
        // Records by hub, each with its Connect record id (position in the file).
        let mut by_hub: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
        let mut columns: Vec<&str> = vec!["record_id"];
        columns.extend(book.columns.iter().map(String::as_str).filter(|c| *c != "record_id"));
        columns.extend(["vendor_record_id", "asset_id", "hub_id"]);
        for (position, row) in book.records.iter().enumerate() {
            let asset_value = row.get("asset_search_value").unwrap_or_default();
            let criteria =
                usageflow_model::AssetCriteria::parse(row.get("asset_search_criteria").unwrap_or("asset.id"))
                    .unwrap_or(usageflow_model::AssetCriteria::Id);
            let asset = self.catalogue().find_asset(&file.product.id, &criteria, asset_value);
            let hub = asset.map_or_else(String::new, |a| a.hub.clone());
            let record_id = ids::record_id(&file.id, position as u64);
            if !approved(&record_id) {
                continue;
            }
            let mut cells = vec![record_id];
            cells.extend(
                book.columns
                    .iter()
                    .filter(|c| *c != "record_id")
                    .map(|c| crate::validate::normalized_cell(c, row.get(c).unwrap_or_default()).into_owned()),
            );
            cells.push(row.get("record_id").unwrap_or_default().to_owned());
            cells.push(asset.map_or_else(String::new, |a| a.id.clone()));
            cells.push(hub.clone());
            by_hub.entry(hub).or_default().push(cells);
        }
        let mut chunks = Vec::new();
        for (n, (hub_id, rows)) in by_hub.into_iter().enumerate() {
            let id = ids::chunk_id(&file.id, n as u32 + 1);
            let hub = self.catalogue().hub(&hub_id).map_or_else(
                || Ref { id: hub_id.clone(), name: String::new() },
                |h| Ref { id: h.id.clone(), name: h.name.clone() },
            );
            let now = EventStamp { at: Utc::now(), by: None };
            let mut chunk = Chunk {
                id: id.clone(),
                status: ChunkStatus::Draft,
                outdated: false,
                usagefile: Ref { id: file.id.clone(), name: file.name.clone() },
                binding: Binding { hub: hub.clone(), external_id: String::new() },
                marketplace: file.marketplace.clone(),
                provider: file.provider.clone(),
                error: None,
                events: FileEvents { created: Some(now.clone()), ..FileEvents::default() },
                stats: Stats { accepted: rows.len() as u64, ..Stats::default() },
                external_billing_id: None,
                external_billing_note: None,
                document: None,
                version: 1,
            };
            self.save_chunk(&chunk).await?;
            let general = chunk_general(&file, &chunk, rows.len());
            let path = Path::from(format!("files/{}/{}/chunks/{id}.xlsx", file.product.id, file.id));
            let written = match write_workbook(&general, &[], &columns, &rows) {
                Ok(bytes) => self.store_document(&path, bytes, &format!("{id}.xlsx")).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let step = match written {
                Ok(document) => {
                    chunk.document = Some(document);
                    chunk.events.uploaded = Some(now);
                    ChunkStep::Generated
                }
                Err(detail) => {
                    chunk.error = Some(usageflow_model::ErrorDetail { detail: detail.clone() });
                    ChunkStep::Failed { detail }
                }
            };
            chunk.status = chunk.status.next(&id, &step).map_err(|e| ServiceError::Document(e.to_string()))?;
            chunk.version = 2;
            self.save_chunk(&chunk).await?;
            chunks.push(chunk);
        }
        Ok(chunks)
    }

    async fn save_chunk(&self, chunk: &Chunk) -> Result<(), ServiceError> {
        if self.snapshots().put(&prefix(&chunk.id), chunk.version, chunk).await? {
            Ok(())
        } else {
            Err(ServiceError::Document(format!(
                "chunk {} changed while this step was being written; try again",
                chunk.id
            )))
        }
    }

    /// A chunk's current state.
    pub async fn chunk(&self, chunk_id: &str) -> Result<Chunk, ServiceError> {
        self.snapshots()
            .latest::<Chunk>(&prefix(chunk_id))
            .await?
            .map(|(_, c)| c)
            .ok_or_else(|| ServiceError::Document(format!("chunk {chunk_id} does not exist")))
    }

    /// The chunks of a usage file.
    pub async fn chunks(&self, file_id: &str) -> Result<Vec<Chunk>, ServiceError> {
        self.chunks_of([file_id]).await
    }

    /// The chunks of each of `file_ids`, in chunk id order, with one listing of the chunks.
    pub async fn chunks_of<'a>(&self, file_ids: impl IntoIterator<Item = &'a str>) -> Result<Vec<Chunk>, ServiceError> {
        let mut out = Vec::new();
        for (id, version) in self.chunk_versions(file_ids).await? {
            out.push(self.chunk_version(&id, version).await?);
        }
        Ok(out)
    }

    /// The latest version of each chunk of `file_ids`, in chunk id order, with one listing.
    pub async fn chunk_versions<'a>(
        &self,
        file_ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<(String, u64)>, ServiceError> {
        Ok(chunks_of_files(&self.all_chunk_versions().await?, file_ids))
    }

    /// The latest version of every chunk, with one listing.
    pub async fn all_chunk_versions(&self) -> Result<BTreeMap<String, u64>, ServiceError> {
        Ok(self.snapshots().latest_versions(&Path::from("workflow/chunks")).await?)
    }
}

/// The `(chunk id, version)` of `versions` that belong to `file_ids`, in chunk id order.
pub fn chunks_of_files<'a>(
    versions: &BTreeMap<String, u64>,
    file_ids: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, u64)> {
    let files: std::collections::HashSet<&str> = file_ids.into_iter().collect();
    {
        versions
            .iter()
            .map(|(id, v)| (id.clone(), *v))
            .filter(|(id, _)| {
                // `UFC-{file number}-{nnnn}` belongs to `UF-{file number}`.
                let file =
                    id.strip_prefix("UFC").and_then(|rest| rest.rsplit_once('-')).map(|(num, _)| format!("UF{num}"));
                file.is_some_and(|f| files.contains(f.as_str()))
            })
            .collect()
    }
}

impl FileService {
    /// Version `version` of a chunk (versions never change once written).
    pub async fn chunk_version(&self, chunk_id: &str, version: u64) -> Result<Chunk, ServiceError> {
        Ok(self.snapshots().read::<Chunk>(&prefix(chunk_id), version).await?)
    }

    /// A provider step on a chunk: close with the billing batch id, or regenerate.
    pub async fn chunk_step(&self, actor: &Actor, chunk_id: &str, step: ChunkStep) -> Result<Chunk, ServiceError> {
        let mut chunk = self.chunk(chunk_id).await?;
        if actor.role != ActorRole::Provider || actor.account.as_deref() != Some(chunk.provider.id.as_str()) {
            return Err(ServiceError::Document(format!(
                "only the chunk's provider {} may change {chunk_id}",
                chunk.provider.id
            )));
        }
        chunk.status = chunk.status.next(chunk_id, &step).map_err(|e| ServiceError::Document(e.to_string()))?;
        let stamp = EventStamp { at: Utc::now(), by: actor.by.clone() };
        match &step {
            ChunkStep::Close { external_billing_id, external_billing_note } => {
                chunk.external_billing_id = Some(external_billing_id.clone());
                chunk.external_billing_note = Some(external_billing_note.clone());
                chunk.stats.closed = chunk.stats.accepted;
                chunk.events.closed = Some(stamp);
            }
            ChunkStep::Regenerate => {
                chunk.error = None;
                chunk.outdated = false;
                // The records of an accepted file do not change, so the workbook is still right.
                chunk.version += 1;
                self.save_chunk(&chunk).await?;
                chunk.status = chunk
                    .status
                    .next(chunk_id, &ChunkStep::Generated)
                    .map_err(|e| ServiceError::Document(e.to_string()))?;
                chunk.events.uploaded = Some(stamp);
            }
            ChunkStep::Generated | ChunkStep::Failed { .. } | ChunkStep::RecordsClosed => {}
        }
        chunk.version += 1;
        self.save_chunk(&chunk).await?;
        Ok(chunk)
    }
}

impl FileService {
    /// Brings the chunks of a file up to date with its records' closing: `stats.closed` counts
    /// the chunk's records that are closed, and a ready chunk whose records are all closed (by
    /// reconciliation, `close-records`, or closing the file) is closed with them, with their
    /// billing id when they share one.
    pub async fn settle_chunks(&self, file_id: &str) -> Result<Vec<Chunk>, ServiceError> {
        let file = self.workflow().get(file_id).await?;
        if !file.status.is_billed() {
            return Ok(Vec::new());
        }
        let (_, changes) = self.record_changes(&file).await?;
        let mut settled = Vec::new();
        for mut chunk in self.chunks(file_id).await? {
            if chunk.status != ChunkStatus::Ready {
                continue;
            }
            let Some(object) = &chunk.document else { continue };
            let book = read_workbook(&self.document(object).await?, &Default::default())
                .map_err(|e| ServiceError::Document(format!("chunk {}: {e}", chunk.id)))?;
            let ids: Vec<&str> = book.records.iter().filter_map(|r| r.get("record_id")).collect();
            let closed: Vec<&crate::records::RecordChange> = ids
                .iter()
                .filter_map(|id| changes.get(*id))
                .filter(|c| c.status == usageflow_model::RecordStatus::Closed)
                .collect();
            let all = file.status == usageflow_model::FileStatus::Closed || closed.len() == ids.len();
            let count = if all { ids.len() as u64 } else { closed.len() as u64 };
            if count == chunk.stats.closed && !all {
                continue;
            }
            chunk.stats.closed = count;
            if all {
                let billing: std::collections::BTreeSet<&str> =
                    closed.iter().filter_map(|c| c.external_billing_id.as_deref()).collect();
                let step = ChunkStep::RecordsClosed;
                chunk.status =
                    chunk.status.next(&chunk.id, &step).map_err(|e| ServiceError::Document(e.to_string()))?;
                if billing.len() == 1 {
                    chunk.external_billing_id = billing.first().map(|b| (*b).to_owned());
                }
                chunk.events.closed = Some(EventStamp { at: Utc::now(), by: None });
            }
            chunk.version += 1;
            self.save_chunk(&chunk).await?;
            settled.push(chunk);
        }
        Ok(settled)
    }
}

fn chunk_general(file: &UsageFile, chunk: &Chunk, records: usize) -> Vec<(String, String)> {
    [
        ("chunk_id", chunk.id.clone()),
        ("report_id", file.id.clone()),
        ("report_name", file.name.clone()),
        ("usage_schema", file.schema.sheet_name().to_owned()),
        ("currency", file.currency.clone().unwrap_or_default()),
        ("hub_id", chunk.binding.hub.id.clone()),
        ("hub_name", chunk.binding.hub.name.clone()),
        ("product_id", file.product.id.clone()),
        ("marketplace_id", file.marketplace.id.clone()),
        ("provider_account_id", file.provider.id.clone()),
        ("distribution_contract_id", file.contract.id.clone()),
        ("report_start_time_utc", file.start_datetime_utc.format("%Y-%m-%d %H:%M:%S").to_string()),
        ("report_end_time_utc", file.end_datetime_utc.format("%Y-%m-%d %H:%M:%S").to_string()),
        ("records", records.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl FileService {
    /// Sets the external id of a chunk's hub binding (`PUT /usage/chunks/{id}`), the provider's
    /// own reference for the batch.
    pub async fn set_chunk_external_id(
        &self,
        actor: &Actor,
        chunk_id: &str,
        external_id: &str,
    ) -> Result<Chunk, ServiceError> {
        let mut chunk = self.chunk(chunk_id).await?;
        if actor.account.as_deref() != Some(chunk.provider.id.as_str()) {
            return Err(ServiceError::Document(format!("only the provider of chunk {chunk_id} may change it")));
        }
        if external_id.chars().count() > 255 {
            return Err(ServiceError::Document("external_id is longer than 255 characters".to_owned()));
        }
        chunk.binding.external_id = external_id.to_owned();
        chunk.version += 1;
        self.save_chunk(&chunk).await?;
        Ok(chunk)
    }
}
