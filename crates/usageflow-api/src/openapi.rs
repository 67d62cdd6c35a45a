//! The OpenAPI 3 document of Usageflow's own API, served at `/public/v1/openapi.json`.
//! It lists every endpoint the router serves (a test checks both agree), with the Connect
//! object shapes referenced by name, the listing parameters, the error body and the API key
//! security scheme.

use axum::Json;
use serde_json::{Map, Value, json};

/// Every endpoint: method, path, summary, success status, whether it is a paged listing.
pub const ENDPOINTS: &[(&str, &str, &str, u16, bool)] = &[
    ("get", "/usage/files", "List usage files (RQL, paging)", 200, true),
    ("post", "/usage/files", "Create a usage file (vendor)", 201, false),
    ("get", "/usage/files/{id}", "Usage file detail", 200, false),
    ("put", "/usage/files/{id}", "Update description, note, external id, period, currency", 200, false),
    ("post", "/usage/files/{id}/upload", "Upload the usage spreadsheet (multipart `usage_file`)", 201, false),
    ("post", "/usage/files/{id}/submit", "Submit a ready file (vendor)", 200, false),
    ("post", "/usage/files/{id}/accept", "Accept a pending file (provider, `acceptance_note`)", 200, false),
    ("post", "/usage/files/{id}/reject", "Reject a pending file (provider, `rejection_note`)", 200, false),
    ("put", "/usage/files/{id}/approve-all", "Approve every record of a pending file (provider)", 200, false),
    ("post", "/usage/files/{id}/close", "Close an accepted file (provider)", 200, false),
    ("post", "/usage/files/{id}/delete", "Delete a file (vendor)", 200, false),
    ("post", "/usage/files/{id}/reprocess", "Regenerate the processed output (provider)", 200, false),
    ("post", "/usage/files/{id}/reconciliation", "Upload a reconciliation (multipart `recon_file`)", 201, false),
    ("get", "/usage/files/{id}/categories", "Categories of a file", 200, true),
    ("get", "/usage/files/{id}/history", "Audit trail: every workflow step, who, when, resulting status", 200, false),
    (
        "get",
        "/usage/files/{id}/errors",
        "Why the last upload is invalid: problems of the whole file (row 0), then each invalid row with its reasons",
        200,
        true,
    ),
    ("get", "/usage/files/{id}/summary", "Review summary: totals, per item, top assets, per day", 200, false),
    ("get", "/usage/files/{id}/usagefile", "Download the uploaded spreadsheet", 200, false),
    ("get", "/usage/files/{id}/processedfile", "Download the processed spreadsheet", 200, false),
    ("get", "/usage/products/{id}/template", "Link to the product's usage template", 200, false),
    ("get", "/usage/products/{id}/template/download", "Download the product's usage template", 200, false),
    ("get", "/usage/records", "List usage records (RQL on DataFusion, paging)", 200, true),
    ("post", "/usage/records/close-records", "Close records in bulk: 206 with one result per record", 206, false),
    ("get", "/usage/records/{id}", "Usage record", 200, false),
    ("put", "/usage/records/{id}", "Approve or reject one record of a pending file (provider)", 200, false),
    ("post", "/usage/records/{id}/close", "Close one record with its billing reference (provider)", 200, false),
    ("get", "/usage/aggregates", "Consumed and accepted usage per asset and item", 200, true),
    ("get", "/assets/{asset_pk}/usage/aggregates", "Aggregates of one asset", 200, true),
    ("get", "/usage/chunks", "List chunks (provider)", 200, true),
    ("get", "/usage/chunks/{id}", "Chunk", 200, false),
    ("put", "/usage/chunks/{id}", "Set the chunk's external id", 200, false),
    ("get", "/usage/chunks/{id}/download", "Download the chunk spreadsheet", 200, false),
    ("post", "/usage/chunks/{id}/close", "Close a chunk with its billing reference", 200, false),
    ("post", "/usage/chunks/{id}/regenerate", "Generate the chunk again", 200, false),
    ("get", "/usage/reconciliations", "List reconciliations (provider)", 200, true),
    ("post", "/usage/reconciliations", "Upload a reconciliation (multipart `recon_file`, `usagefile`)", 201, false),
    ("get", "/usage/reconciliations/{id}", "Reconciliation", 200, false),
    ("get", "/usage/reconciliations/{id}/uploadedfile", "Download the uploaded reconciliation", 200, false),
    ("get", "/usage/reconciliations/{id}/processedfile", "Download the processed reconciliation", 200, false),
    ("get", "/products/{product_pk}/usage/rules", "List usage rules", 200, true),
    ("post", "/products/{product_pk}/usage/rules", "Create a usage rule (provider)", 201, false),
    ("get", "/products/{product_pk}/usage/rules/{id}", "Usage rule", 200, false),
    ("put", "/products/{product_pk}/usage/rules/{id}", "Update a usage rule (provider)", 200, false),
    ("delete", "/products/{product_pk}/usage/rules/{id}", "Delete a usage rule (provider)", 204, false),
    ("post", "/usage/events", "Report metering events over HTTP (vendor): 202 with one result per event", 202, false),
    (
        "post",
        "/sql",
        "Read-only SQL over the caller's share of the lake, files and catalogue (`{\"sql\": ..., \"format\": \"json\"|\"csv\", \"as_of\": VERSION|TIME}`); the answer's `x-usageflow-lake-version` names the lake versions read",
        200,
        false,
    ),
    (
        "get",
        "/usage/live",
        "Usage being ingested: totals, series per item, top assets (`product`, `item`, `asset`, `from`, `to`, `bucket`)",
        200,
        false,
    ),
    (
        "get",
        "/billing/export",
        "Billing export of accepted records (`format` csv|parquet|xlsx, `from`, `to`, `hub`, `marketplace`, `product`)",
        200,
        false,
    ),
    ("get", "/me", "The caller's key, account and role", 200, false),
    ("get", "/products", "The caller's products with usage capabilities, items and contracts", 200, false),
    ("get", "/openapi.json", "This document", 200, false),
];

fn operation(method: &str, path: &str, summary: &str, status: u16, paged: bool) -> Value {
    let mut params: Vec<Value> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    if paged {
        params.push(json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 100}}));
        params
            .push(json!({"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}}));
    }
    let mut ok = json!({"description": summary});
    if paged {
        ok["headers"] =
            json!({"Content-Range": {"description": "items {first}-{last}/{total}", "schema": {"type": "string"}}});
    }
    let error = json!({"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut responses = Map::new();
    responses.insert(status.to_string(), ok);
    for code in ["400", "401", "403", "404"] {
        responses.insert(code.to_owned(), error.clone());
    }
    let op_id = format!("{method}{}", path.replace(['/', '{', '}', '-', '.'], "_"));
    let mut op = json!({
        "operationId": op_id,
        "summary": summary,
        "tags": [if path.contains("/events") { "Usage Events" } else { "Usage Reporting" }],
        "parameters": params,
        "responses": responses,
    });
    if path == "/openapi.json" {
        op["security"] = json!([]);
    }
    op
}

/// The document.
pub fn spec() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, status, paged) in ENDPOINTS {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = operation(method, path, summary, *status, *paged);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Usageflow API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The usage part of the CloudBlue Connect REST API, plus HTTP event ingestion. \
                Listings take RQL filters (eq, ne, lt, le, gt, ge, like, ilike, in, out, null, empty, and, or, not, \
                select, ordering) or field=value pairs, and limit/offset paging with a Content-Range header."
        },
        "servers": [{"url": "/public/v1"}],
        "security": [{"ApiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`ApiKey {key}`"}},
            "schemas": {"Error": {"type": "object", "required": ["error_code", "errors"], "properties": {
                "error_code": {"type": "string"}, "errors": {"type": "array", "items": {"type": "string"}}}}}
        }
    })
}

pub(crate) async fn document() -> Json<Value> {
    Json(spec())
}
