package main

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"time"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// Issue 15, items 2 and 3: a lookup's memory follows its page, not the
// key's day. One IP with N entries on one day (100,000 and 1,000,000),
// every request with its own random 300–4,000-character User-Agent, as
// an attacker would send them; the index rows are written straight into
// Azurite by the index package's own encoder and writer (the posting rows
// of every entry, the Events rows of the newest 400), which loads a
// million entries in seconds where ingesting them through Azurite would
// take hours. A fresh handler then answers the first page of
// `events?ip=` and follows its continuation for three more pages; the
// figure is its peak RSS (VmHWM) above its RSS when idle.
//
// And a posting row planted as a decompression bomb (a string table
// declaring 7 million strings, 63 MB of zeros, ~61 KB compressed): what
// decoding it allocates before it is refused.

// lookupSizes are the key-day sizes measured; -quick measures the first.
var lookupSizes = []int{100_000, 1_000_000}

const lookupIP = "203.0.113.66"

var lookupDay = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

func (b *bench) measureLookup(ctx context.Context, rep *report) error {
	az, err := b.azurite()
	if err != nil {
		return err
	}
	cl, err := newClients(az)
	if err != nil {
		return err
	}
	sizes := lookupSizes
	if b.o.quick {
		sizes = sizes[:1]
	}
	for _, n := range sizes {
		prefix := "kbl" + randomID()
		tables := index.NewTables(cl.table, prefix)
		if err := tables.Ensure(ctx); err != nil {
			return err
		}
		t0 := time.Now()
		rows, err := writeKeyDay(ctx, tables, n)
		if err != nil {
			cl.dropTables(context.Background(), prefix) //nolint:errcheck // best effort
			return err
		}
		b.logf("lookup: %d entries of one IP on one day in %d posting rows, written in %s", n, rows, time.Since(t0).Round(time.Second))
		above, pages, lat, err := b.lookupPeak(ctx, prefix)
		cl.dropTables(context.Background(), prefix) //nolint:errcheck // best effort
		if err != nil {
			return err
		}
		mib := float64(above) / 1024
		rep.add("15 lookup", fmt.Sprintf("peak RSS above idle of bin/handler answering events?ip= (first page of 100 and %d more) over %d entries of that IP on one day (%d posting rows), random 300–4,000-character User-Agents", pages-1, n, rows),
			fmt.Sprintf("%.1f MiB (first page %d ms)", mib, lat.Milliseconds()), "≤ 50 MiB", verdictAtMost(mib, 50, " MiB"))
	}
	alloc, err := bombAlloc()
	if err != nil {
		return err
	}
	rep.add("15 lookup", "allocated decoding a planted posting row that inflates to 63 MB and declares 7,000,000 strings (refused)",
		fmt.Sprintf("%.1f MiB", float64(alloc)/(1<<20)), "bounded", verdictAtMost(float64(alloc)/(1<<20), 24, " MiB"))
	return nil
}

// writeKeyDay writes n entries of lookupIP spread over lookupDay: posting
// rows by chunks of 3,000 records (as ingest cuts a busy blob), and the
// Events rows of the newest 400. It returns the posting rows written.
func writeKeyDay(ctx context.Context, tables *index.Tables, n int) (int, error) {
	const (
		source   = "00a1b2c3d4e5f607"
		perChunk = 3000
		newest   = 400
	)
	blob := "resourceId=/SUBSCRIPTIONS/0000-SUB/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-LOOKUP/y=2025/m=03/d=01/h=00/m=00/PT1H.json"
	w := tables.NewWriter(slog.New(slog.DiscardHandler), 8, 0)
	rnd := rand.New(rand.NewPCG(2, 15))
	var (
		post  index.Postings
		enc   index.Encoder
		rows  int
		rec   parse.Record
		buf   []index.Entity
		ua    = make([]byte, 4000)
		alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/;()._ -"
	)
	step := 24 * time.Hour / time.Duration(n)
	flush := func(chunk int64) error {
		buf = post.Rows(buf[:0], chunk)
		rows += len(buf)
		for _, e := range buf {
			if err := w.Add(ctx, e); err != nil {
				return err
			}
		}
		return nil
	}
	for i := range n {
		k := 300 + rnd.IntN(3701)
		for j := range k {
			ua[j] = alpha[rnd.IntN(len(alpha))]
		}
		t := lookupDay.Add(time.Duration(i) * step)
		off := int64(i) * 5000
		if i >= n-newest {
			line := fmt.Appendf(nil, `{"time":"%s","resourceId":"/SUBSCRIPTIONS/0000-SUB/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-LOOKUP","operationName":"SecretGet","category":"AuditEvent","resultType":"Success","resultSignature":"Unauthorized","callerIpAddress":%q,"correlationId":"l-%07d","identity":null,"properties":{"id":"https://kv-lookup.vault.azure.net/secrets/db-password","clientInfo":%q,"httpStatusCode":401}}`+"\n",
				parse.FormatTime(t), lookupIP, i, ua[:k])
			p := parse.NewReader(bytes.NewReader(line), parse.Options{Blob: blob, BaseOffset: off, Format: parse.FormatJSONLines, Complete: true})
			if err := p.Next(&rec); err != nil {
				return rows, fmt.Errorf("generated record: %w", err)
			}
			for _, e := range enc.Rows(nil, &rec, p.Raw(), source) {
				if err := w.Add(ctx, e); err != nil {
					return rows, err
				}
			}
			enc.Postings(nil, 0) // the posting rows are post's
		} else {
			rec = parse.Record{Time: t, Vault: "kv-lookup", OperationName: "SecretGet", Status: 401,
				CallerIPAddress: lookupIP, ObjectName: "db-password", ClientInfo: string(ua[:k]), Offset: off, Blob: blob}
		}
		post.Add(&rec, source)
		if (i+1)%perChunk == 0 {
			if err := flush(int64(i+1-perChunk) * 5000); err != nil {
				return rows, err
			}
		}
	}
	if err := flush(int64(n-n%perChunk) * 5000); err != nil {
		return rows, err
	}
	return rows, w.Flush(ctx)
}

// lookupPeak starts a handler on the index of prefix, reads its idle RSS,
// pages through events?ip= (4 pages of 100) and returns the peak RSS above
// idle (KiB), the pages read and the first page's latency.
func (b *bench) lookupPeak(ctx context.Context, prefix string) (int64, int, time.Duration, error) {
	p, err := b.startHandler(b.handlerEnv("insights-logs-auditevent", prefix))
	if err != nil {
		return 0, 0, 0, err
	}
	defer p.stop()
	if err := p.waitReady(ctx, 10*time.Second); err != nil {
		return 0, 0, 0, err
	}
	client := &http.Client{Timeout: 2 * time.Minute}
	// One small request first, so that idle includes what every request
	// sets up (connections, the layout check).
	if _, _, err := get(ctx, client, p.url+"/api/audit/vaults"); err != nil {
		return 0, 0, 0, err
	}
	time.Sleep(200 * time.Millisecond)
	idle, err := procStatus(p.cmd.Process.Pid, "VmRSS")
	if err != nil {
		return 0, 0, 0, err
	}
	v := url.Values{"ip": {lookupIP}, "limit": {"100"}, "from": {lookupDay.Format(time.RFC3339)}, "to": {lookupDay.AddDate(0, 0, 1).Format(time.RFC3339)}}
	var first time.Duration
	pages := 0
	for ; pages < 4; pages++ {
		t0 := time.Now()
		code, body, err := get(ctx, client, p.url+"/api/audit/events?"+v.Encode())
		if pages == 0 {
			first = time.Since(t0)
		}
		if err != nil {
			return 0, 0, 0, err
		}
		var page struct {
			Events       []json.RawMessage `json:"events"`
			Continuation string            `json:"continuation"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &page) != nil || len(page.Events) != 100 {
			return 0, 0, 0, fmt.Errorf("events?ip= page %d: %d, %d events: %.300s", pages+1, code, len(page.Events), body)
		}
		if page.Continuation == "" {
			break
		}
		v.Set("continuation", page.Continuation)
	}
	hwm, err := procStatus(p.cmd.Process.Pid, "VmHWM")
	if err != nil {
		return 0, 0, 0, err
	}
	return hwm - idle, pages, first, nil
}

// bombAlloc is what decoding a planted posting bomb allocates.
func bombAlloc() (uint64, error) {
	var out bytes.Buffer
	w, err := flate.NewWriterDict(&out, flate.BestCompression, index.RecordDict())
	if err != nil {
		return 0, err
	}
	w.Write(binary.AppendUvarint(nil, 7_000_000)) //nolint:errcheck // a bytes.Buffer
	if _, err := io.CopyN(w, zeroReader{}, 63<<20); err != nil {
		return 0, err
	}
	w.Close() //nolint:errcheck // likewise
	row, err := json.Marshal(map[string]any{"PartitionKey": "i|20250301", "RowKey": "x|h00|00a1b2c3d4e5f607|000000000000",
		"V": index.Layout, "N": 100, "P@odata.type": "Edm.Binary", "P": out.Bytes()})
	if err != nil {
		return 0, err
	}
	var a, c runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	var pr index.PostingRow
	_, derr := index.DecodePostingRow(nil, row, &pr)
	runtime.ReadMemStats(&c)
	if derr == nil || !strings.Contains(derr.Error(), "inflates past its limit") {
		return 0, fmt.Errorf("the bomb row decoded: %v", derr)
	}
	return c.TotalAlloc - a.TotalAlloc, nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }
