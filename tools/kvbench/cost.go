package main

import (
	"context"
	"errors"
	"fmt"
)

// Target 6: table transactions and bytes stored per 1,000 records and per
// GB of raw log, measured on the ingest comparison's dataset (requests
// counted as the SDK sent them, sizes by the service's entity size
// formula), priced at public list prices.
//
// Public list prices, US East, pay-as-you-go, as known to us in 2025 (no
// network here to check them; see docs/BENCHMARKS.md):
const (
	priceTableGBMonth   = 0.045   // Table Storage, Standard LRS, per GB-month
	priceTablePer10kTx  = 0.00036 // Table Storage, per 10,000 transactions (an entity-group transaction is one)
	priceFlexGBs        = 0.000026
	priceFlexPerMExec   = 0.40
	priceFlexMemGB      = 2.0  // Flex Consumption default instance memory
	priceLogAnalyticsGB = 2.30 // Log Analytics, Analytics logs, pay-as-you-go ingestion per GB (31 days retention included)
	priceLARetentionGB  = 0.10 // per GB-month beyond the included retention
	retentionMonths     = 3    // RetentionDays default 90
)

// quietFigures are the transactions of the query dataset's small blobs.
type quietFigures struct {
	records, tx  int64
	recordsPerBl int
}

func (b *bench) measureCost(_ context.Context, rep *report, f *ingestFigures) error {
	if f == nil || f.records == 0 {
		return errors.New("needs the ingest measurement (-only …,ingest,cost)")
	}
	recBytes := float64(f.rawBytes) / float64(f.records)
	recsPerGB := 1e9 / recBytes
	tx := float64(f.tableBatches + f.tableOther)
	txPerK := 1000 * tx / float64(f.records)
	stored := float64(f.rowStored + f.blobsStored)
	storedPerK := 1000 * stored / float64(f.records)
	gbStoredPerGB := stored / float64(f.rawBytes)

	storageMonth := gbStoredPerGB * priceTableGBMonth
	txCost := txPerK / 1000 * recsPerGB / 1e4 * priceTablePer10kTx
	// Execution time: the memory measurement's invocation if it ran (the
	// handler process, blob to rows), else the in-process ingest path.
	secPerGB := f.ours.Seconds() * 1e9 / float64(f.rawBytes)
	src := "ingest comparison"
	if m := b.memFig; m != nil && m.bytes > 0 {
		secPerGB = m.elapsed.Seconds() * 1e9 / float64(m.bytes)
		src = "memory measurement"
	}
	funcs := secPerGB * priceFlexMemGB * priceFlexGBs
	ours31 := storageMonth + txCost + funcs
	ours90 := storageMonth*retentionMonths + txCost + funcs
	la31 := priceLogAnalyticsGB
	la90 := priceLogAnalyticsGB + priceLARetentionGB*(retentionMonths-1)

	rep.add("6 cost", "Table transactions per 1,000 records (busy-hour blobs; batches + checkpoint/counts requests)",
		fmt.Sprintf("%.0f (%.0fk per GB raw; %.1f rows per transaction)", txPerK, txPerK*recsPerGB/1e6, float64(f.rows)/float64(f.tableBatches)), "(report)", "")
	if q := b.quietFig; q != nil && q.records > 0 {
		rep.add("6 cost", fmt.Sprintf("Table transactions per 1,000 records (quiet-hour blobs of %d records, query dataset)", q.recordsPerBl),
			fmt.Sprintf("%.0f", 1000*float64(q.tx)/float64(q.records)), "(report)", "")
	}
	rep.add("6 cost", "bytes stored per 1,000 records (entity size formula: index rows, checkpoints, counts)",
		fmt.Sprintf("%.1f MB (%.1f GB per GB raw; raw %.0f bytes/record, %.0f bytes/row billed)", storedPerK/1e6, gbStoredPerGB, recBytes, float64(f.rowStored)/float64(f.rows)), "(report)", "")
	rep.add("6 cost", "$ per GB of raw log kept 31 days: kvaudit (Table LRS + transactions + Flex execution) vs Log Analytics",
		fmt.Sprintf("$%.2f ($%.3f + $%.4f + $%.3f) vs $%.2f: %s", ours31, storageMonth, txCost, funcs, la31, cheaper(ours31, la31)), "(report)", "")
	rep.add("6 cost", "$ per GB of raw log kept 90 days (RetentionDays default)",
		fmt.Sprintf("$%.2f vs $%.2f: %s", ours90, la90, cheaper(ours90, la90)), "(report)", "")
	lean := float64(f.rowStoredLean+f.blobsStored) / float64(f.rawBytes)
	keys := float64(f.rowStoredKeys+f.blobsStored) / float64(f.rawBytes)
	rep.note("cost: %.0f%% of the bytes stored are the lookup rows' copies of the event (%.1f lookup rows a record), and Table Storage counts text as UTF-16, 2 bytes a character. What-ifs, not built: lookup rows without Properties, Claims and Extra (the logged JSON) would store %.1f GB per GB raw instead of %.1f ($%.2f a month instead of $%.2f); lookup rows of keys only (a second read per event found) %.1f GB ($%.2f).",
		100*float64(f.rowStored-f.eventsStored)/float64(f.rowStored), float64(f.rows)/float64(f.records)-1, lean, gbStoredPerGB, lean*priceTableGBMonth, storageMonth, keys, keys*priceTableGBMonth)
	rep.note("cost: public list prices, US East, pay-as-you-go, as known in 2025, not checked online here: Table Storage LRS $%.3f/GB-month and $%.5f/10,000 transactions (an entity-group transaction is billed as one); Functions Flex Consumption on demand $%.6f/GB-s at the default %.0f GB instance, $%.2f/million executions; Log Analytics Analytics logs $%.2f/GB ingested with 31 days included, then $%.2f/GB-month. Execution time per GB from the %s (%.0f s/GB against Azurite: an upper bound; Table Storage takes rows much faster). Raw blobs in the logs account cost the same either way.",
		priceTableGBMonth, priceTablePer10kTx, priceFlexGBs, priceFlexMemGB, priceFlexPerMExec, priceLogAnalyticsGB, priceLARetentionGB, src, secPerGB)
	return nil
}

// cheaper says how ours compares with theirs.
func cheaper(ours, theirs float64) string {
	if ours <= theirs {
		return fmt.Sprintf("%.1f× cheaper", theirs/ours)
	}
	return fmt.Sprintf("%.1f× dearer", ours/theirs)
}
