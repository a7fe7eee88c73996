package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/index"
)

// The slow cases: `make chaos` runs them (KVAUDIT_CHAOS=1).

// Two chunks: records of about 1.5 KB, and a checkpoint every 4 MiB (about
// 2 800 records), so the second chunk holds about 12 Events transactions.
const (
	twoChunks   = 4000
	twoChunkPad = 900
)

// afterCheckpoint runs fn after the n-th Events transaction acknowledged
// once the blob's first checkpoint is: in the second chunk.
func afterCheckpoint(e *env, n ...int64) (hits <-chan int64, fn *func()) {
	ch := make(chan int64, len(n))
	var f func()
	var committed atomic.Bool
	var seen atomic.Int64
	events, blobs := e.tables.Name(index.TableEvents), e.tables.Name(index.TableBlobs)
	e.table.after = func(x *exchange) {
		if !x.Acked {
			return
		}
		if x.Table() == blobs && strings.HasPrefix(x.Writes[0].RK, "c|") {
			committed.Store(true)
			return
		}
		if x.Table() == events && committed.Load() {
			k := seen.Add(1)
			if slices.Contains(n, k) {
				f()
				ch <- k
			}
		}
	}
	return ch, &f
}

// TestStorageRestartedMidIngest stops Azurite while a blob is being
// indexed (its second chunk, after a checkpoint) and starts it again on the
// same ports with the same persistent location: gracefully (SIGTERM: Azurite
// saves) and as a crash (SIGKILL: Azurite loses what it acknowledged since
// its last save, every 5 s). What Azurite acknowledged and no longer has
// after the restart is the emulator's loss, reported as such; kvaudit must
// recover from it by reading again from the checkpoint that survived.
func TestStorageRestartedMidIngest(t *testing.T) {
	slow(t)
	for _, crash := range []bool{false, true} {
		name := "SIGTERM"
		if crash {
			name = "SIGKILL"
		}
		t.Run(name, func(t *testing.T) { storageRestart(t, name, crash) })
	}
}

func storageRestart(t *testing.T, mode string, crash bool) {
	az, err := azuritetest.Start(azuritetest.Options{Location: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { az.Stop() }) // after the handler is gone: registered first
	e := newEnv(t, az)
	name := e.blob(0)
	e.append(name, true, 0, twoChunks, twoChunkPad)
	// The blob must survive the crash: the fault is on the index. A
	// graceful restart saves it.
	if err := az.Restart(); err != nil {
		t.Fatal(err)
	}
	fault, fn := afterCheckpoint(e, 5)
	*fn = func() {
		// Unreachable from now on, as a dead server is.
		e.table.down.Store(true)
		e.blobs.down.Store(true)
	}
	e.startHandler()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), invocationLimit)
		defer cancel()
		_, _, err := e.invokeBlob(ctx, name)
		done <- err
	}()
	select {
	case <-fault:
	case err := <-done:
		t.Fatalf("the invocation ended before the fault: %v", err)
	case <-time.After(invocationLimit):
		t.Fatal("no fault within the invocation limit")
	}
	if crash {
		az.Kill()
	} else if err := az.Stop(); err != nil {
		t.Fatal(err)
	}
	// Every acknowledgement is in: Azurite is gone.
	acked := map[string]map[rowID]ackedRow{}
	for _, short := range []string{index.TableEvents, index.TablePostings} {
		acked[short] = e.table.ackedIn(e.tables.Name(short))
	}
	ackedCP := e.table.ackedCheckpoints()
	e.step("Azurite stopped (%s) after %d acknowledged Events rows", mode, len(acked[index.TableEvents]))
	if err := az.Restart(); err != nil {
		t.Fatal(err)
	}

	// What survived, before the handler can write again.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lost := emulatorLoss{events: map[string]bool{}, rows: map[string]map[string]bool{}}
	nLost := 0
	for short, rows := range acked {
		present := map[rowID]bool{}
		if err := e.listRows(ctx, short, "PartitionKey,RowKey", func(raw []byte) error {
			var r struct{ PartitionKey, RowKey string }
			if err := json.Unmarshal(raw, &r); err != nil {
				return err
			}
			present[rowID{e.tables.Name(short), r.PartitionKey, r.RowKey}] = true
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		lost.rows[short] = map[string]bool{}
		for id, r := range rows {
			if !present[id] {
				nLost++
				lost.rows[short][id.RK] = true
				if short == index.TableEvents {
					lost.events[r.CorrelationID] = true
				}
			}
		}
	}
	cpNow, _, _, err := e.checkpoint(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var cpAcked int64
	for _, off := range ackedCP {
		cpAcked = max(cpAcked, off)
	}
	if n := e.blobLength(ctx, name); n != e.lengths[name] {
		t.Fatalf("Azurite lost blob bytes over the restart: %d of %d (the emulator's loss; the case needs the blob intact)", n, e.lengths[name])
	}
	note := fmt.Sprintf("Azurite %s lost %d of %d acknowledged index rows (%d events); checkpoint acknowledged at byte %d, %d after restart",
		mode, nLost, len(acked[index.TableEvents])+len(acked[index.TablePostings]),
		len(lost.events), cpAcked, cpNow)
	e.step("%s", note)
	if !crash && (nLost > 0 || cpNow != cpAcked) {
		t.Errorf("Azurite lost acknowledged writes over a graceful stop (the emulator's loss, not kvaudit's): %s", note)
	}
	if cpNow > cpAcked {
		t.Errorf("checkpoint %d after the restart is past any acknowledged (%d)", cpNow, cpAcked)
	}

	e.table.down.Store(false)
	e.blobs.down.Store(false)
	select {
	case err := <-done:
		e.step("the invocation in flight ended: %v", err)
	case <-time.After(invocationLimit):
		t.Fatal("the invocation in flight did not end")
	}
	e.settle()
	e.finish("storage "+mode+" + restart mid-ingest", "Azurite "+mode+" at the 5th Events transaction after the first checkpoint, restarted on the same ports", lost, note)
}

func (e *env) blobLength(ctx context.Context, name string) int64 {
	p, err := e.cc.NewBlobClient(name).GetProperties(ctx, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return *p.ContentLength
}

// TestHandlerKilledAfterCheckpoint SIGKILLs the handler twice: in its
// second chunk, after a checkpoint, and again in the re-invocation.
func TestHandlerKilledAfterCheckpoint(t *testing.T) {
	slow(t)
	e := newEnv(t, nil)
	name := e.blob(0)
	e.append(name, true, 0, twoChunks, twoChunkPad)
	kills, fn := afterCheckpoint(e, 4, 9)
	*fn = func() { e.handler().kill() }
	for i := range 2 {
		e.startHandler()
		ctx, cancel := context.WithTimeout(context.Background(), invocationLimit)
		_, _, err := e.invokeBlob(ctx, name)
		cancel()
		select {
		case <-kills:
			e.step("kill %d; invocation: %v", i+1, err)
		case <-time.After(readyLimit):
			t.Fatalf("kill %d did not happen (invocation: %v)", i+1, err)
		}
	}
	e.startHandler()
	e.settle()
	e.finish("handler SIGKILL twice, after a checkpoint", "SIGKILL at the 4th Events transaction after the first checkpoint and the 5th of the re-invocation; new handler each time", emulatorLoss{}, "")
}

// TestRacingTriggersLong is the racing case on a blob that grows past
// several checkpoints.
func TestRacingTriggersLong(t *testing.T) {
	slow(t)
	racingTriggers(t, 30, 80, 2000)
}

// TestReadStalledPastTryTimeout stalls the handler's first read of a blob
// mid-body for longer than the storage client's try timeout (60 s, not a
// setting), while the blob grows: the read must go on where it stalled.
func TestReadStalledPastTryTimeout(t *testing.T) {
	slow(t)
	e := newEnv(t, nil)
	name := e.blob(0)
	e.append(name, true, 0, 2000, 0)
	var reads atomic.Int64
	var stalled atomic.Bool
	e.blobs.wrapBody = func(x *exchange, body io.ReadCloser) io.ReadCloser {
		if !x.IsBlobRead() || reads.Add(1) != 1 {
			return body
		}
		return &stallBody{body: body, n: 256 << 10, ctx: x.Req.Context(), limit: 150 * time.Second, onStall: func() {
			e.append(name, false, 2000, 500, 0)
			stalled.Store(true)
		}}
	}
	e.startHandler()
	ctx, cancel := context.WithTimeout(context.Background(), invocationLimit)
	defer cancel()
	status, logs, err := e.invokeBlob(ctx, name)
	if !stalled.Load() {
		t.Fatal("the read was not stalled: the handler read fewer than 256 KiB in its first blob read")
	}
	e.step("invocation: %d %v %s", status, err, brief(logs))
	longRead(t, e, "read stalled past the try timeout while the blob grows", "first blob read stalled after 256 KiB until the client gave up (60 s try timeout), 500 records appended meanwhile", status, logs, err)
}

// TestInvocationCutAtFunctionTimeout plays the host's functionTimeout on a
// blob that takes longer than it to index (table writes slowed by the
// proxy): the host cancels by closing the connection.
//
//   - cut: no BlobTrigger budget to speak of; the host cuts the invocation.
//     Nothing may be lost or doubled: CatchUp and the next trigger finish.
//   - budget: BlobTriggerBudgetSeconds=5; the handler must answer before
//     functionTimeout, stopped at a checkpoint, and leave the rest to
//     CatchUp.
func TestInvocationCutAtFunctionTimeout(t *testing.T) {
	slow(t)
	cases := []struct {
		name    string
		budget  int // BlobTriggerBudgetSeconds
		timeout time.Duration
	}{
		{"cut", 3600, 10 * time.Second},
		{"budget", 5, 30 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.settings[config.SettingTriggerBudget] = strconv.Itoa(c.budget)
			name := e.blob(0)
			e.append(name, true, 0, 4000, 3300) // 4 chunks of about 1 000 records
			var slowed atomic.Bool
			slowed.Store(true)
			e.table.before = func(x *exchange) {
				if slowed.Load() && len(x.Writes) > 0 {
					time.Sleep(time.Second)
				}
			}
			e.startHandler()
			ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
			status, logs, err := e.invokeBlob(ctx, name)
			cancel()
			off, _, _, _ := e.checkpoint(context.Background(), name)
			cut := errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil && err != nil
			e.step("functionTimeout %v: status %d, cut %v, checkpoint %d of %d: %s", c.timeout, status, cut, off, e.lengths[name], brief(logs))
			slowed.Store(false)
			var problem string
			switch {
			case c.name == "budget" && cut:
				problem = fmt.Sprintf("the invocation did not end inside functionTimeout (%v): the host cut it (BlobTriggerBudgetSeconds=%d not honoured)", c.timeout, c.budget)
			case c.name == "budget" && (err != nil || status != 200):
				problem = fmt.Sprintf("the invocation answered %d: %v", status, err)
			case c.name == "budget" && off == 0:
				problem = "the invocation stopped before its first checkpoint"
			case c.name == "cut" && !cut:
				problem = fmt.Sprintf("the invocation was not cut (it ended within %v): the case did not happen", c.timeout)
			}
			e.settle()
			label := "invocation cut at functionTimeout: " + c.name
			v := e.finish(label, fmt.Sprintf("functionTimeout %v, BlobTriggerBudgetSeconds=%d, table writes +1 s", c.timeout, c.budget), emulatorLoss{},
				fmt.Sprintf("first invocation: cut %v, checkpoint %d of %d", cut, off, e.lengths[name]))
			if problem != "" {
				t.Error(problem)
				if v.ok() {
					markFailed(label)
				}
			}
		})
	}
}
