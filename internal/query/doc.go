// Package query answers questions of the index: events of a selector in a
// time window, page by page; stats by one dimension; and detections. It
// knows parameters and pages: it parses and validates query parameters,
// plans which index partitions a query reads, pages through them with
// continuation tokens of its own, and counts. It knows nothing of HTTP or
// of the Functions host (handler/ serves it and the `handler query` CLI).
//
// # Selectors and partitions
//
// Every query names at least one of vault, caller, ip or object, and reads
// only that key's day partitions, never a table scan: vault reads its
// Events partitions (index.Partition); caller, ip and object read their
// posting rows of each day (one RowKey range of the Postings partition of
// their kind and day), then the Events rows the entries point at. With
// several selectors the most specific is read — caller, object, ip, vault,
// in that order — and the others narrow it (see plan). Days are read
// newest first and each day newest first by Events RowKey, so the
// concatenation is newest first.
//
// # Safety
//
// Caller text reaches storage in two ways only: as a key part, through
// index.EncodeKeyPart, inside an OData string literal whose quotes are
// doubled; or as a literal of a validated parameter (a vault name of
// letters, digits and hyphens, an IP address in canonical form, an
// operation name of letters and digits, a status code), quoted the same
// way. vault=x' or PartitionKey ne ' is refused; caller=x' or
// PartitionKey ne ' is looked up as the caller "x' or partitionkey ne '"
// and matches nothing. A continuation token is checked against the plan of
// the query it comes back with (see token.go): it can move the reading
// position only inside that query's own partitions.
//
// # Windows
//
// from is inclusive and to exclusive, at the 100 ns precision of record
// times (index.RowKeyRange); the default is the 24 hours before now, and a
// window longer than Limits.MaxDays is refused. A continuation carries its
// window, so a default window does not slide while a client pages.
//
// # Stats
//
// A vault alone is answered from the per-vault-hour counts ingest commits
// with each checkpoint: the counts rows of the blob partitions around the
// window whose record hour lies wholly inside it, plus the vault's event
// rows of the partial first and last hours. That is O(hours), not
// O(events). Counts are marginal (per dimension), so a filter on
// operations can be answered only by operation, hour or day, and one on
// statuses only by status, hour or day; every other combination, and
// every caller, ip or object selector, scans the key's index rows with
// $select of the columns it needs, up to Querier.MaxScanRows rows.
//
// # Detections
//
// See [Querier.Detections] for what each kind reads.
package query
