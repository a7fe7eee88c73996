package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/kvaudit/kvaudit/internal/index"
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
	priceLABasicGB      = 0.50 // Log Analytics, Basic logs (AZKVAuditLogs supports it), per GB ingested, 30 days included
	priceLALongTermGB   = 0.02 // long-term retention per GB-month, past the Basic plan's 30 days
	retentionMonths     = 3    // RetentionDays default 90
	// Data transfer between Azure regions (Azure bandwidth pricing,
	// azure.microsoft.com/pricing/details/bandwidth/, "Data transfer between
	// Azure regions"): within North America or within Europe, and from one
	// continent to another. Only bytes leaving a region are billed.
	priceInterRegionGB    = 0.02
	priceInterContinentGB = 0.05
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

	laBasic31 := priceLABasicGB
	laBasic90 := priceLABasicGB + priceLALongTermGB*(retentionMonths-1)

	rep.add("6 cost", "Table transactions per 1,000 records (busy-hour blobs; batches + checkpoint/counts requests)",
		fmt.Sprintf("%.0f (%.0fk per GB raw; %.1f rows per transaction)", txPerK, txPerK*recsPerGB/1e6, float64(f.rows)/float64(f.tableBatches)), "≤ 60", verdictAtMost(txPerK, 60, ""))
	if q := b.quietFig; q != nil && q.records > 0 {
		rep.add("6 cost", fmt.Sprintf("Table transactions per 1,000 records (quiet-hour blobs of %d records, query dataset)", q.recordsPerBl),
			fmt.Sprintf("%.0f", 1000*float64(q.tx)/float64(q.records)), "(report)", "")
	}
	rowsPerRec := float64(f.rows+f.blobsRows) / float64(f.records)
	rep.add("6 cost", "index rows per record (Events, Postings, Blobs: checkpoints and counts)",
		fmt.Sprintf("%.2f (Events %.2f, Postings %.3f, Blobs %.3f)", rowsPerRec, float64(f.eventsRows)/float64(f.records),
			float64(f.rows-f.eventsRows)/float64(f.records), float64(f.blobsRows)/float64(f.records)), "≤ 3", verdictAtMost(rowsPerRec, 3, ""))
	perRec := func(n int64) float64 { return float64(n) / float64(f.records) }
	rep.add("6 cost", "bytes billed per record, by table (entity size formula), against the raw record",
		fmt.Sprintf("%.0f B = Events %.0f (compressed record %.0f) + Postings %.0f + Blobs %.0f; raw %.0f B: %.2f× raw", stored/float64(f.records),
			perRec(f.eventsStored), perRec(f.eventsRecord), perRec(f.rowStored-f.eventsStored), perRec(f.blobsStored), recBytes, gbStoredPerGB),
		"≤ 1.0× (stretch 0.5×)", verdictAtMost(gbStoredPerGB, 1.0, "×"))
	rep.add("6 cost", "bytes stored per 1,000 records (index rows, checkpoints, counts)",
		fmt.Sprintf("%.2f MB (%.2f GB per GB raw; %.0f bytes/row billed)", storedPerK/1e6, gbStoredPerGB, float64(f.rowStored)/float64(f.rows)), "(report)", "")
	rep.add("6 cost", "$ per GB of raw log kept 31 days: kvaudit (Table LRS + transactions + Flex execution); Log Analytics Analytics; Basic",
		fmt.Sprintf("$%.3f ($%.3f + $%.4f + $%.3f); $%.2f (%s); $%.2f (%s)", ours31, storageMonth, txCost, funcs, la31, cheaper(ours31, la31), laBasic31, cheaper(ours31, laBasic31)), "(report)", "")
	rep.add("6 cost", "$ per GB of raw log kept 90 days (RetentionDays default): kvaudit; Log Analytics Analytics; Basic",
		fmt.Sprintf("$%.3f; $%.2f (%s); $%.2f (%s)", ours90, la90, cheaper(ours90, la90), laBasic90, cheaper(ours90, laBasic90)), "≤ $0.25", verdictAtMost(ours90, 0.25, " $"))
	// Issue 17: logs accounts in every region holding vaults, one index. One
	// app reading every region's account moves each remote region's raw
	// bytes across (the blob reads); an ingest app per region would move
	// only what it writes to the index (table request bodies). Measured on
	// the same run: bytes on the wire per raw byte.
	if f.blobDown > 0 && f.tableUp > 0 {
		down := float64(f.blobDown) / float64(f.rawBytes)
		up := float64(f.tableUp) / float64(f.rawBytes)
		rep.add("6 cost", "inter-region transfer per GB of raw log of a remote region: one app reading every region's logs account (blob reads) against an ingest app per region writing the index (table requests)",
			fmt.Sprintf("%.2f GB = $%.3f in a continent, $%.3f across ($%.3f per GB raw kept 90 days with it); per region: %.2f GB = $%.3f, $%.3f",
				down, down*priceInterRegionGB, down*priceInterContinentGB, ours90+down*priceInterContinentGB, up, up*priceInterRegionGB, up*priceInterContinentGB),
			"(report)", "")
		rep.note("cost: inter-region transfer $%.2f/GB within North America or Europe, $%.2f/GB between continents (Azure bandwidth pricing, data transfer between regions; as known in 2025, not checked online here). Bytes are the request and response bodies the SDK sent and received in the ingest comparison's run: blob reads download %.2f× the raw log (ranged reads from the checkpoint, each byte once), table writes upload %.2f× (JSON, the record column as base64, batch envelopes: more than the %.2f× billed at rest). So an ingest app per region would move %.0f%% of what the one app moves, at the price of an app, a plan and settings per region; kvaudit runs one app (README, Several regions).",
			priceInterRegionGB, priceInterContinentGB, down, up, gbStoredPerGB, 100*up/down)
	}
	rep.note("cost: layout %d rows — an Events row per record (filter columns and the record as logged, DEFLATE with a preset dictionary) and posting rows per lookup key, day, blob and ingest chunk; see README's Tables.", index.Layout)
	rep.note("cost: public list prices, US East, pay-as-you-go, as known in 2025, not checked online here: Table Storage LRS $%.3f/GB-month and $%.5f/10,000 transactions (an entity-group transaction is billed as one); Functions Flex Consumption on demand $%.6f/GB-s at the default %.0f GB instance, $%.2f/million executions; Log Analytics Analytics logs $%.2f/GB ingested with 31 days included, then $%.2f/GB-month; Basic logs $%.2f/GB with 30 days, then long-term retention $%.2f/GB-month. Execution time per GB from the %s (%.0f s/GB against Azurite: an upper bound; Table Storage takes rows much faster). Raw blobs in the logs account cost the same either way.",
		priceTableGBMonth, priceTablePer10kTx, priceFlexGBs, priceFlexMemGB, priceFlexPerMExec, priceLogAnalyticsGB, priceLARetentionGB, priceLABasicGB, priceLALongTermGB, src, secPerGB)
	return nil
}

// cheaper says how ours compares with theirs.
func cheaper(ours, theirs float64) string {
	if ours <= theirs {
		return fmt.Sprintf("%.1f× cheaper", theirs/ours)
	}
	return fmt.Sprintf("%.1f× dearer", ours/theirs)
}
