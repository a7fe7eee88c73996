package main

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/parse"
)

func templates(t *testing.T) []template {
	t.Helper()
	root, err := azuritetest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ts, err := loadTemplates(root)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func generate(ts []template, vault string, n int) []byte {
	g := newVaultGen(ts, vault, 7)
	hour := time.Date(2025, 2, 1, 9, 0, 0, 0, time.UTC)
	var b []byte
	for i := range n {
		b = g.appendRecord(b, g.timeIn(hour, i, n))
	}
	return b
}

// The same seed and vault give the same bytes: figures from two runs are of
// the same input.
func TestGeneratorDeterministic(t *testing.T) {
	ts := templates(t)
	a, b := generate(ts, "kv-a", 500), generate(ts, "kv-a", 500)
	if !bytes.Equal(a, b) {
		t.Fatal("two generators of one seed wrote different records")
	}
	if bytes.Equal(a, generate(ts, "kv-b", 500)) {
		t.Fatal("two vaults got the same records")
	}
}

// Every generated record is one the parser accepts whole, in its vault,
// in order, with a caller; most name an object.
func TestGeneratorRecordsParse(t *testing.T) {
	ts := templates(t)
	const n = 2000
	data := generate(ts, "KV-Payments", n)
	p := parse.NewReader(bytes.NewReader(data), parse.Options{Blob: "gen", Complete: true})
	var rec parse.Record
	var got, named int
	var last time.Time
	callers := map[string]bool{}
	for {
		err := p.Next(&rec)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("record %d: %v", got, err)
		}
		got++
		if rec.Vault != "kv-payments" {
			t.Fatalf("record %d: vault %q", got, rec.Vault)
		}
		if rec.Time.Before(last) {
			t.Fatalf("record %d: time %v before %v", got, rec.Time, last)
		}
		last = rec.Time
		if rec.Identity.ObjectID == "" || rec.CallerIPAddress == "" {
			t.Fatalf("record %d: no caller or IP: %+v", got, rec.Identity)
		}
		callers[rec.Identity.ObjectID] = true
		if rec.ObjectName != "" {
			named++
		}
	}
	if got != n {
		t.Fatalf("parsed %d records, generated %d", got, n)
	}
	if named < n/2 {
		t.Errorf("only %d of %d records name an object", named, n)
	}
	if len(callers) < 10 || len(callers) > vaultCallers {
		t.Errorf("%d distinct callers, want 10..%d", len(callers), vaultCallers)
	}
}

// The shared caller uses every vault.
func TestSharedCaller(t *testing.T) {
	ts := templates(t)
	id := sharedCaller(7)
	for _, v := range []string{"kv-a", "kv-b", "kv-c"} {
		if !bytes.Contains(generate(ts, v, 3000), []byte(id)) {
			t.Errorf("vault %s has no record of the shared caller %s", v, id)
		}
	}
}

// entitySize follows the service's formula.
func TestEntitySize(t *testing.T) {
	body := []byte(`{"PartitionKey":"pk","RowKey":"r1","S":"ab","N":5,"L@odata.type":"Edm.Int64","L":"9","D@odata.type":"Edm.Double","D":1.5,"B":true}`)
	// 4 + 2*(2+2) + Timestamp (8+18+8) + S (8+2 + 4+4) + N (8+2+4) + L (8+2+8) + D (8+2+8) + B (8+2+1)
	want := int64(4 + 8 + 34 + 18 + 14 + 18 + 18 + 11)
	got, err := entitySize(body, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("entitySize = %d, want %d", got, want)
	}
}
