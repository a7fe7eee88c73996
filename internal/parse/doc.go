// Package parse turns Key Vault audit blob bytes into normalized Records; it
// knows bytes and records, nothing of storage or HTTP.
//
// # Input
//
// Azure Monitor writes a vault's AuditEvent records to one blob per vault
// and hour (see [ParseBlobPath]). Since November 2018 a blob is JSON Lines,
// one record per line, and it grows by appends that need not end on a line
// end. Older blobs are one document {"records":[…]}, possibly
// pretty-printed. A [Reader] detects the format from the first bytes
// ([Format]) and reads either, in one pass with bounded memory.
//
// # Resuming
//
// [Reader.Consumed] is the checkpoint: the offset just past the last
// complete record. A Reader made with Options{BaseOffset: Consumed(),
// Format: Format()} over the blob's bytes from that offset continues
// exactly where the previous one stopped. An unterminated last line of a
// growing blob is not a record yet, and is not consumed.
//
// # Bad input
//
// A record that is not a JSON object or has no usable time is skipped and
// reported as a [*RecordError]; reading goes on. A line (or document
// element) longer than Options.MaxRecordBytes is skipped without being
// buffered. A document whose structure breaks is given up: one RecordError,
// then io.EOF with Consumed at the end, so a broken blob is not retried
// forever.
//
// # Normalization
//
// Record documents each field. Times become UTC; durationMs logged as a
// string or a number becomes a float64; the caller's object id and UPN come
// from short or long claim names; Status comes from properties.httpStatusCode
// or resultSignature, never resultType (which says "Success" on a 403);
// the secret, key or certificate name comes from properties.id or
// requestUri. The vault comes from resourceId, else from the blob name.
//
// # Keeping records
//
// [Reader.Next] fills a caller's Record. Its strings are copies, safe to
// keep; its raw JSON fields (Properties, Extra, Identity.Claims) share the
// Reader's buffers and are valid until the next call of Next. Memory does
// not grow with the input: a Reader holds at most MaxRecordBytes plus a
// fixed buffer, and a few recent values of fields that repeat (the
// resourceId of the blob's vault, its callers), so that most records cost
// one small allocation.
//
// # Output
//
// [AppendJSON] writes a Record as kvaudit's event JSON, the shape the query
// API returns; [FormatTime] writes times as Key Vault does.
package parse
