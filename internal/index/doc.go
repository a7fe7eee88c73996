// Package index knows the index tables: keys (EncodeKeyPart, Partition,
// RowKey), the rows of layout 2 (Encoder: an Events row per record with
// the record compressed in R, and Postings rows per lookup key, day, blob
// lineage and ingest chunk; see README's Tables), the per-hour counts
// beside each checkpoint, Table Storage's limits, and batched writes.
package index
