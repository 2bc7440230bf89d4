package main

// Checking every key on its own, in parallel, under one deadline.

import (
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// keyResult is the verdict on one key's sub-history.
type keyResult struct {
	key     string
	exact   []porcupine.Operation // see ops.go
	relaxed []porcupine.Operation
	folded  []porcupine.Operation
	result  porcupine.CheckResult
	byRelax bool // the relaxed encoding proved the violation
}

func newKeyResult(exact []porcupine.Operation) keyResult {
	relaxed, folded := relax(exact)
	return keyResult{key: exact[0].Input.(input).Key, exact: exact, relaxed: relaxed,
		folded: folded}
}

// check decides one key by the deadline: first in the relaxed encoding, whose "illegal"
// is final and quick to find; then, if it passed and differs, in the exact one.
func (k *keyResult) check(model porcupine.Model, deadline time.Time) {
	if len(k.folded) > 0 {
		k.result = checkUntil(model, k.relaxed, deadline)
		if k.result != porcupine.Ok {
			k.byRelax = k.result == porcupine.Illegal
			return
		}
	}
	k.result = checkUntil(model, k.exact, deadline)
}

func checkUntil(model porcupine.Model, ops []porcupine.Operation, deadline time.Time,
) porcupine.CheckResult {
	left := time.Until(deadline)
	if left <= 0 { // 0 would mean "no timeout" to Porcupine
		return porcupine.Unknown
	}
	return porcupine.CheckOperationsTimeout(model, ops, left)
}

// checkKeys checks each partition on a pool of GOMAXPROCS workers, largest first (so a
// big key does not start last). All keys share one deadline: a key whose turn comes after
// it, or whose search runs past it, is Unknown; never Ok.
func checkKeys(model porcupine.Model, parts [][]porcupine.Operation, timeout time.Duration,
) []keyResult {
	results := make([]keyResult, len(parts))
	order := make([]int, len(parts))
	for i, p := range parts {
		results[i] = newKeyResult(p)
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return len(parts[order[a]]) > len(parts[order[b]]) })
	deadline := time.Now().Add(timeout)
	parallel(order, func(i int) { results[i].check(model, deadline) })
	return results
}

// parallel calls f for each item on GOMAXPROCS goroutines and waits for all.
func parallel(items []int, f func(int)) {
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				f(i)
			}
		}()
	}
	for _, i := range items {
		work <- i
	}
	close(work)
	wg.Wait()
}

// maxConcurrency is the largest number of operations of one sub-history that are pending
// at the same instant (intervals are closed, as Porcupine reads them).
func maxConcurrency(ops []porcupine.Operation) int {
	type ev struct {
		t     int64
		delta int
	}
	evs := make([]ev, 0, 2*len(ops))
	for _, op := range ops {
		evs = append(evs, ev{op.Call, +1}, ev{op.Return, -1})
	}
	sort.Slice(evs, func(a, b int) bool {
		if evs[a].t != evs[b].t {
			return evs[a].t < evs[b].t
		}
		return evs[a].delta > evs[b].delta // calls before returns at the same instant
	})
	cur, best := 0, 0
	for _, e := range evs {
		cur += e.delta
		best = max(best, cur)
	}
	return best
}
