package query

import "container/heap"

// topK counts keys with bounded memory: exactly while it has seen at most
// its capacity of distinct keys; past that, by the Space-Saving algorithm
// (Metwally, Agrawal, El Abbadi, "Efficient computation of frequent and
// top-k elements in data streams", ICDT 2005): a new key takes the place of
// the least counted one with that count plus one. Every key counted more
// than n/capacity times (n the keys offered) is kept, and a kept key's
// count is over by at most the count it replaced. A finding's lists (its
// objects, IPs, clientInfos …) are its most frequent keys: values a
// caller chooses at will, thousands of random User-Agents say, cannot grow
// it. Its zero value is ready and holds nothing until the first add; not
// safe for concurrent use.
type topK struct {
	byKey map[string]*topEntry
	h     topHeap // min-heap by count: the one to replace is at the root
	// approximate is set once a key was replaced: counts may then be over.
	approximate bool
}

type topEntry struct {
	key   string
	count int64
	i     int // index in h
}

type topHeap []*topEntry

func (h topHeap) Len() int { return len(h) }
func (h topHeap) Less(i, j int) bool {
	if h[i].count != h[j].count {
		return h[i].count < h[j].count
	}
	return h[i].key > h[j].key // of equal counts, the largest key goes first
}
func (h topHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].i, h[j].i = i, j }
func (h *topHeap) Push(x any)   { e := x.(*topEntry); e.i = len(*h); *h = append(*h, e) }
func (h *topHeap) Pop() any     { old := *h; e := old[len(old)-1]; *h = old[:len(old)-1]; return e }

// topKCapacity is the distinct keys one list counts exactly.
const topKCapacity = 1000

// add counts k once; "" is not counted. O(log capacity).
func (t *topK) add(k string) {
	if k == "" {
		return
	}
	if e := t.byKey[k]; e != nil {
		e.count++
		heap.Fix(&t.h, e.i)
		return
	}
	if t.byKey == nil {
		t.byKey = make(map[string]*topEntry, 1)
	}
	if len(t.h) < topKCapacity {
		e := &topEntry{key: k, count: 1}
		t.byKey[k] = e
		heap.Push(&t.h, e)
		return
	}
	e := t.h[0]
	delete(t.byKey, e.key)
	e.key, e.count = k, e.count+1
	t.byKey[k] = e
	heap.Fix(&t.h, 0)
	t.approximate = true
}

// top is the most counted keys, at most n, by descending count then key.
func (t *topK) top(n int) []Group {
	if len(t.h) == 0 {
		return nil
	}
	gs := make([]Group, 0, len(t.h))
	for _, e := range t.h {
		gs = append(gs, Group{Key: e.key, Count: e.count})
	}
	sortGroups(gs)
	if len(gs) > n {
		gs = gs[:n]
	}
	return gs
}
