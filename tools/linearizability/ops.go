package main

// From records to Porcupine operations, in two encodings of the same history.
//
// exact: every kept operation; an unknown outcome returns at +infinity (it may take effect
// at any later time), except an unknown put whose value some get read: that put must have
// taken effect before the first such get returned, so that is where it returns. This is
// the model of the brief, and its verdict is the checker's.
//
// relaxed: the unknown writes nobody can have observed (puts whose value no get read, and
// every unknown delete) are taken out of the history and become transitions the model may
// take at any step whose operation returns after their call, any number of times. That
// allows everything the exact encoding allows (and more), so "illegal" there is illegal
// for certain; and with no operation pending forever, it is proved quickly. A pending
// write that stays pending to the end doubles what an exhaustive search must try, which is
// what makes a violation on a busy key with many unknown outcomes slow to prove exactly.

import (
	"sort"

	"github.com/anishathalye/porcupine"
)

// operations turns the kept records into the exact encoding, for all keys.
func (h *history) operations() (ops []porcupine.Operation, unknown int) {
	type kv struct{ key, value string }
	seen := map[kv]version{}     // where a value was observed, first
	firstRead := map[kv]record{} // the get that read a value and returned first
	var end int64
	for i := range h.records {
		r := &h.records[i]
		end = max(end, r.call, r.ret)
		if r.dropped {
			continue
		}
		switch {
		case r.op == opPut && r.outcome == outcomeOK:
			if _, ok := seen[kv{r.key, r.value}]; !ok {
				seen[kv{r.key, r.value}] = r.ver
			}
		case r.op == opGet && r.found:
			k := kv{r.key, r.read}
			if _, ok := seen[k]; !ok {
				seen[k] = r.ver
			}
			if f, ok := firstRead[k]; !ok || r.ret < f.ret {
				firstRead[k] = *r
			}
		}
	}
	infinity := end + int64(1e9)
	clients := denseClients(h.records)

	for i := range h.records {
		r := &h.records[i]
		if r.dropped {
			continue
		}
		in := input{Key: r.key, Op: r.op, Outcome: r.outcome, Cond: r.cond, Value: r.value}
		out := output{Status: r.status, Found: r.found, Read: r.read, Ver: r.ver, HasVer: r.hasVer}
		ret := r.ret
		if r.outcome == outcomeUnknown {
			unknown++
			ret = infinity
			if v, ok := seen[kv{r.key, r.value}]; ok && r.op == opPut {
				in.Seen, in.HasSeen = v, true
				if f, ok := firstRead[kv{r.key, r.value}]; ok {
					ret, in.SeenBy = max(f.ret, r.call), f.line
				}
			}
		}
		ops = append(ops, porcupine.Operation{
			ClientId: clients[r.key][r.client],
			Input:    in,
			Call:     r.call,
			Output:   out,
			Return:   ret,
			Metadata: meta{ID: r.id, Line: r.line, Client: r.client, Node: r.node,
				Status: r.status, Code: r.code, Outcome: r.outcome},
		})
	}
	return ops, unknown
}

// denseClients numbers the clients of each key 0, 1, ...: Porcupine's picture draws one
// row per client id, from 0 to the largest.
func denseClients(records []record) map[string]map[int]int {
	clients := map[string]map[int]int{}
	for i := range records {
		r := &records[i]
		if r.dropped {
			continue
		}
		if clients[r.key] == nil {
			clients[r.key] = map[int]int{}
		}
		clients[r.key][r.client] = 0
	}
	for _, m := range clients {
		ids := make([]int, 0, len(m))
		for c := range m {
			ids = append(ids, c)
		}
		sort.Ints(ids)
		for i, c := range ids {
			m[c] = i
		}
	}
	return clients
}

// unobservable: an unknown write whose effect no operation can have named.
func unobservable(op porcupine.Operation) bool {
	in := op.Input.(input)
	return in.Outcome == outcomeUnknown && !in.HasSeen
}

// relax builds the relaxed encoding of one key's exact operations; folded are the
// operations that became the model's spontaneous transitions.
func relax(exact []porcupine.Operation) (relaxed, folded []porcupine.Operation) {
	for _, op := range exact {
		if unobservable(op) {
			folded = append(folded, op)
		}
	}
	if len(folded) == 0 {
		return exact, nil
	}
	sort.SliceStable(folded, func(a, b int) bool { return folded[a].Call < folded[b].Call })
	for _, op := range exact {
		if unobservable(op) {
			continue
		}
		// The folded writes called before this operation returned may take effect just
		// before it; one of each kind is enough, as the model may take each any number of
		// times (and the earliest is enabled whenever a later one is).
		var sp []spontaneous
		have := map[spontaneous]bool{}
		for _, f := range folded {
			if f.Call > op.Return {
				break
			}
			in := f.Input.(input)
			s := spontaneous{Op: in.Op, Cond: in.Cond}
			if !have[s] {
				have[s] = true
				sp = append(sp, s)
			}
		}
		in := op.Input.(input)
		in.Spont = sp
		op.Input = in
		relaxed = append(relaxed, op)
	}
	return relaxed, folded
}
