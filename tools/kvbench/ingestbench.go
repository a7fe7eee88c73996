package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// Target 3: entity writes per second into Azurite through the ingest path
// (internal/ingest: ranged read, parse, rows, batched writes, checkpoints)
// against a bare loop of aztables SubmitTransaction over the very same
// entity bodies, grouped by partition in batches of 100, with the same
// number of transactions in flight. Each side writes into fresh tables,
// which are dropped after it, so both meet Azurite in the same state; the
// sides alternate which goes first, and the ratio is the median of the
// per-round ratios.

// blobData is one generated blob.
type blobData struct {
	name    string
	data    []byte
	records int
}

// ingestFigures is what the cost measurement takes from the ingest one.
type ingestFigures struct {
	records, rawBytes int64
	rows              int64 // index rows (events and postings)
	rowBytes          int64 // their JSON bodies, as sent
	rowStored         int64 // their size by the service's entity size formula
	eventsRows        int64 // the Events rows' part of rows
	eventsStored      int64 // the Events rows' part of rowStored
	eventsRecord      int64 // the R columns' part of eventsStored (name, overhead, bytes)
	blobsRows         int64 // rows of the Blobs table (checkpoints, counts) after ingest
	blobsStored       int64
	blobsRowBytes     int64
	tableBatches      int64 // requests of one run of the ingest path
	tableOther        int64
	blobReqs          int64
	// blobDown and tableUp are the body bytes blob reads downloaded and
	// table requests uploaded in one run of the ingest path.
	blobDown, tableUp int64
	ours              time.Duration // median run time of the ingest path
	oursRate          float64       // entity writes/s
}

// ingestDataset generates the blobs of the comparison: three vaults in
// turn, one blob a day, perBlob records each in the blob's hour. One blob a
// day keeps every partition (vault, caller, IP or object, and day) inside
// one blob: the bare loop, which sees all rows at once, could otherwise
// fill transactions across blobs, which no per-blob ingest can, and
// Azurite's cost per row grows with its partition (see BENCHMARKS.md).
func (b *bench) ingestDataset(total, perBlob int) []blobData {
	gens := []*vaultGen{newVaultGen(b.samples, "kv-payments-prod", 3), newVaultGen(b.samples, "kv-identity-prod", 3), newVaultGen(b.samples, "kv-batch-dev", 3)}
	base := time.Date(2025, 2, 1, 9, 0, 0, 0, time.UTC)
	var out []blobData
	for i := 0; total > 0; i++ {
		g := gens[i%len(gens)]
		hour := base.AddDate(0, 0, i).Add(time.Duration(i%len(gens)) * time.Hour)
		n := min(perBlob, total)
		total -= n
		var data []byte
		for k := range n {
			data = g.appendRecord(data, g.timeIn(hour, k, n))
		}
		out = append(out, blobData{name: g.blobName(hour), data: data, records: n})
	}
	return out
}

// batch is one transaction of the bare loop.
type batch struct {
	table   string // short name
	actions []aztables.TransactionAction
}

// bareBatches encodes the blobs' records into rows with index.Encoder,
// exactly as ingest does, and groups them by table and partition into
// batches of at most 100.
func bareBatches(blobs []blobData, fig *ingestFigures) ([]batch, error) {
	type key struct{ table, pk string }
	groups := map[key][]index.Entity{}
	var order []key
	created := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	var enc index.Encoder
	var rows []index.Entity
	var rec parse.Record
	add := func(rows []index.Entity) error {
		for _, r := range rows {
			k := key{r.Table, r.PK}
			if _, ok := groups[k]; !ok {
				order = append(order, k)
			}
			groups[k] = append(groups[k], r)
			fig.rows++
			fig.rowBytes += int64(len(r.Body))
			n, err := entitySize(r.Body, nil)
			if err != nil {
				return err
			}
			fig.rowStored += n
			if r.Table == index.TableEvents {
				fig.eventsRows++
				fig.eventsStored += n
				lean, err := entitySize(r.Body, recordProps)
				if err != nil {
					return err
				}
				fig.eventsRecord += n - lean
			}
		}
		return nil
	}
	for _, bl := range blobs {
		p := parse.NewReader(bytes.NewReader(bl.data), parse.Options{Blob: bl.name, Complete: true})
		src := index.SourceID(bl.name, created)
		for {
			err := p.Next(&rec)
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, err
			}
			fig.records++
			rows = enc.Rows(rows[:0], &rec, p.Raw(), src)
			if err := add(rows); err != nil {
				return nil, err
			}
		}
		// One blob is one ingest chunk here (under 4 MiB): its postings.
		if err := add(enc.Postings(rows[:0], 0)); err != nil {
			return nil, err
		}
		fig.rawBytes += int64(len(bl.data))
	}
	var out []batch
	for _, k := range order {
		es := groups[k]
		for len(es) > 0 {
			n := min(len(es), 100)
			bt := batch{table: k.table}
			for _, e := range es[:n] {
				bt.actions = append(bt.actions, aztables.TransactionAction{ActionType: aztables.TransactionTypeInsertReplace, Entity: e.Body})
			}
			out = append(out, bt)
			es = es[n:]
		}
	}
	return out, nil
}

// runBare submits the batches, concurrency at a time.
func runBare(ctx context.Context, tables *index.Tables, batches []batch, concurrency int) (time.Duration, error) {
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	t0 := time.Now()
	for _, bt := range batches {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := tables.Client(bt.table).SubmitTransaction(ctx, bt.actions, nil); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return time.Since(t0), first
}

func (b *bench) measureIngest(ctx context.Context, rep *report) (*ingestFigures, error) {
	az, err := b.azurite()
	if err != nil {
		return nil, err
	}
	cl, err := newClients(az)
	if err != nil {
		return nil, err
	}
	blobs := b.ingestDataset(b.o.ingestRecords, b.o.blobRecords)
	fig := &ingestFigures{}
	batches, err := bareBatches(blobs, fig)
	if err != nil {
		return nil, err
	}
	cc, _, err := cl.newContainer(ctx, "ingest")
	if err != nil {
		return nil, err
	}
	defer cc.Delete(context.Background(), nil) //nolint:errcheck // best effort
	for _, bl := range blobs {
		if err := appendBlob(ctx, cc, bl.name, bl.data); err != nil {
			return nil, err
		}
	}
	b.logf("ingest dataset: %d blobs, %d records, %d rows in %d bare batches", len(blobs), fig.records, fig.rows, len(batches))

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var oursRates, bareRates, ratios, recRates []float64
	var oursTimes []float64
	for round := range b.o.runs {
		sides := []string{"bare", "ours"}
		if round%2 == 1 {
			sides = []string{"ours", "bare"}
		}
		var rate [2]float64
		for _, side := range sides {
			prefix := "kb" + randomID()
			tables := index.NewTables(cl.table, prefix)
			if err := tables.Ensure(ctx); err != nil {
				return nil, err
			}
			cl.count.reset()
			switch side {
			case "bare":
				d, err := runBare(ctx, tables, batches, b.o.concurrency)
				if err != nil {
					cl.dropTables(context.Background(), prefix) //nolint:errcheck
					return nil, fmt.Errorf("bare loop: %w", err)
				}
				rate[0] = float64(fig.rows) / d.Seconds()
				bareRates = append(bareRates, rate[0])
				b.logf("ingest round %d bare: %d rows in %s = %.0f rows/s", round+1, fig.rows, d.Round(time.Millisecond), rate[0])
			case "ours":
				in := &ingest.Ingester{Container: cc, Tables: tables, Log: quiet, Concurrency: b.o.concurrency}
				var recs, ents int64
				t0 := time.Now()
				for _, bl := range blobs {
					res, err := in.IngestBlob(ctx, bl.name)
					if err != nil {
						cl.dropTables(context.Background(), prefix) //nolint:errcheck
						return nil, fmt.Errorf("ingest %s: %w", bl.name, err)
					}
					recs += res.Records
					ents += res.Entities
				}
				d := time.Since(t0)
				if recs != fig.records || ents != fig.rows {
					cl.dropTables(context.Background(), prefix) //nolint:errcheck
					return nil, fmt.Errorf("ingest path wrote %d records, %d rows; the bare loop %d, %d", recs, ents, fig.records, fig.rows)
				}
				rate[1] = float64(ents) / d.Seconds()
				oursRates = append(oursRates, rate[1])
				recRates = append(recRates, float64(recs)/d.Seconds())
				oursTimes = append(oursTimes, d.Seconds())
				fig.tableBatches, fig.tableOther, fig.blobReqs = cl.count.tableBatch.Load(), cl.count.tableOther.Load(), cl.count.blobReqs.Load()
				fig.blobDown, fig.tableUp = cl.count.blobDown.Load(), cl.count.tableUp.Load()
				if err := blobsTableSize(ctx, tables, fig); err != nil {
					return nil, err
				}
				b.logf("ingest round %d ours: %d rows in %s = %.0f rows/s; %d batches, %d other table requests, %d blob requests",
					round+1, ents, d.Round(time.Millisecond), rate[1], fig.tableBatches, fig.tableOther, fig.blobReqs)
			}
			if err := cl.dropTables(ctx, prefix); err != nil {
				return nil, err
			}
		}
		ratios = append(ratios, rate[1]/rate[0])
	}
	r := median(ratios)
	fig.oursRate = median(oursRates)
	fig.ours = time.Duration(median(oursTimes) * float64(time.Second))
	rep.add("3 ingest", fmt.Sprintf("entity writes/s into Azurite: ingest path vs bare SubmitTransaction loop (batches of 100), concurrency %d, %d records × %d runs", b.o.concurrency, fig.records, b.o.runs),
		fmt.Sprintf("%.0f vs %.0f rows/s = %.0f%%", fig.oursRate, median(bareRates), 100*r), "≥ 80%", verdictAtLeast(100*r, 80, " points"))
	rep.add("3 ingest", "end to end through internal/ingest (read, parse, rows, writes, checkpoints)",
		fmt.Sprintf("%.0f records/s, %.2f entity writes/record", median(recRates), float64(fig.rows)/float64(fig.records)), "(report)", "")
	var rs []string
	for _, x := range ratios {
		rs = append(rs, fmt.Sprintf("%.0f%%", 100*x))
	}
	rep.note("ingest: %d blobs of %d records (%d bytes/record), one per vault and day; %d index rows; the bare loop sends them in %d batches, the ingest path in %d batches plus %d other table requests (checkpoints, counts) per run. Ratios of the rounds: %s.",
		len(blobs), b.o.blobRecords, fig.rawBytes/fig.records, fig.rows, len(batches), fig.tableBatches, fig.tableOther, strings.Join(rs, ", "))
	return fig, nil
}

// blobsTableSize measures the Blobs table (checkpoints and counts) after
// an ingest run.
func blobsTableSize(ctx context.Context, tables *index.Tables, fig *ingestFigures) error {
	fig.blobsRows, fig.blobsStored, fig.blobsRowBytes = 0, 0, 0
	pager := tables.Client(index.TableBlobs).NewListEntitiesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, e := range page.Entities {
			n, err := entitySize(e, nil)
			if err != nil {
				return err
			}
			fig.blobsRows++
			fig.blobsStored += n
			fig.blobsRowBytes += int64(len(e))
		}
	}
	return nil
}

// recordProps are the Events row's compressed record (R and its
// continuations).
var recordProps = map[string]bool{index.PropRecord: true, index.PropRecord + "1": true, index.PropRecord + "2": true}

// entitySize is the service's size formula for an entity given as its JSON
// body: 4 bytes + 2 per key character + per property (8 bytes + 2 per name
// character + the value's size), the system Timestamp included
// (learn.microsoft.com, "Understanding the Table service data model"),
// leaving out the properties in skip.
func entitySize(body []byte, skip map[string]bool) (int64, error) {
	var m map[string]json.RawMessage
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return 0, err
	}
	str := func(raw json.RawMessage) (string, bool) {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false
		}
		return s, true
	}
	u16 := func(s string) int64 { return int64(len(utf16.Encode([]rune(s)))) }
	pk, _ := str(m["PartitionKey"])
	rk, _ := str(m["RowKey"])
	size := 4 + 2*(u16(pk)+u16(rk))
	size += 8 + 2*int64(len("Timestamp")) + 8
	for k, v := range m {
		if k == "PartitionKey" || k == "RowKey" || k == "Timestamp" || strings.Contains(k, "@odata.") || skip[k] || skip["*"] {
			continue
		}
		size += 8 + 2*u16(k)
		typ, _ := str(m[k+"@odata.type"])
		switch typ {
		case "Edm.Int64", "Edm.Double", "Edm.DateTime":
			size += 8
			continue
		case "Edm.Guid":
			size += 16
			continue
		case "Edm.Int32":
			size += 4
			continue
		case "Edm.Boolean":
			size++
			continue
		case "Edm.Binary":
			s, _ := str(v)
			n, _ := base64.StdEncoding.DecodeString(s)
			size += int64(len(n)) + 4
			continue
		}
		switch {
		case len(v) > 0 && v[0] == '"':
			s, _ := str(v)
			size += 4 + 2*u16(s)
		case string(v) == "true" || string(v) == "false":
			size++
		default:
			if n, err := strconv.ParseInt(string(v), 10, 32); err == nil && n == int64(int32(n)) {
				size += 4
			} else {
				size += 8
			}
		}
	}
	return size, nil
}
