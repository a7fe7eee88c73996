package ingest

// Hooks for the external tests (package ingest_test), which build on
// ingesttest and so cannot live inside this package.
var (
	LoadCheckpoint   = loadCheckpoint
	CheckpointRowKey = checkpointRowKey
)
