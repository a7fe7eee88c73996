package query

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// stallReads plays a storage read that does not come back: the reads
// numbered in stall wait until their context ends. A read without a
// deadline would wait for ever; it fails at once instead, so that the test
// says so rather than hanging.
type stallReads struct {
	mu         sync.Mutex
	n          int
	stall      map[int]bool
	stalled    int
	noDeadline int
}

func (s *stallReads) Do(req *policy.Request) (*http.Response, error) {
	s.mu.Lock()
	s.n++
	stall := s.stall[s.n]
	s.mu.Unlock()
	if !stall {
		return req.Next()
	}
	ctx := req.Raw().Context()
	if _, ok := ctx.Deadline(); !ok {
		s.mu.Lock()
		s.noDeadline++
		s.mu.Unlock()
		return nil, errors.New("stallReads: this storage read has no deadline: it would run past the request's time budget")
	}
	<-ctx.Done()
	s.mu.Lock()
	s.stalled++
	s.mu.Unlock()
	return nil, ctx.Err()
}

// The events request's time budget bounds a storage read too: a read that
// outlasts it ends the page with the events emitted so far and a
// continuation from where the read began, never an error, and following
// the continuations still gives every event once, in order.
func TestEventsTimeBudgetCutsAStorageRead(t *testing.T) {
	e := fixtureEnv(t)
	az := azuritetest.Require(t)
	cred, err := aztables.NewSharedKeyCredential(config.DevAccountName, config.DevAccountKey)
	if err != nil {
		t.Fatal(err)
	}
	// Four day partitions, newest first: 22 (empty), 21, 20, 19 (empty).
	// Read 3 is day 20 after day 21's events were emitted; read 4 is day 20
	// again, the first read of the next request.
	stalls := &stallReads{stall: map[int]bool{3: true, 4: true}}
	svc, err := aztables.NewServiceClientWithSharedKey(az.TableURL+"/", cred,
		&aztables.ClientOptions{ClientOptions: policy.ClientOptions{PerCallPolicies: []policy.Policy{stalls}}})
	if err != nil {
		t.Fatal(err)
	}
	// The budget is the stalled reads' wait; reads that come back take
	// milliseconds. A slower read is cut too, which only adds a page.
	q := &Querier{Tables: index.NewTables(svc, e.tables.Name("")), MaxDuration: 3 * time.Second}

	v := mustValues(t, "vault=vault1&from=2026-11-19T00:00:00Z&to=2026-11-23T00:00:00Z&limit=1000")
	var got []string
	var perPage []int
	for page := 0; ; page++ {
		if page == 20 {
			t.Fatalf("more than 20 pages: %v", perPage)
		}
		eq, err := ParseEvents(v, time.Now(), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		next, err := q.Events(context.Background(), eq, func(r *parse.Record) error {
			got = append(got, r.CorrelationID)
			n++
			return nil
		})
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		perPage = append(perPage, n)
		if next == "" {
			break
		}
		v.Set(ParamContinuation, next)
	}
	if w := want(fixture(), 0, func(x ev) bool { return x.vault == "vault1" }); strings.Join(got, ",") != strings.Join(w, ",") {
		t.Fatalf("events by page %v:\n%v\nwant every vault1 event once, newest first:\n%v", perPage, got, w)
	}
	if stalls.noDeadline != 0 || stalls.stalled != 2 {
		t.Fatalf("%d reads without a deadline, %d cut by it; want 0 and 2", stalls.noDeadline, stalls.stalled)
	}
	if len(perPage) < 3 || perPage[0] == 0 || perPage[1] != 0 {
		t.Fatalf("events by page %v: want day 21's events, then an empty page (its only read cut), then the rest", perPage)
	}
}
