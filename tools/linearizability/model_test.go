package main

import (
	"os"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func checkFile(t *testing.T, path string) keyResult {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := readHistory(f)
	if err != nil {
		t.Fatal(err)
	}
	ops, _ := h.operations()
	model := kstateModel()
	parts := model.Partition(ops)
	if len(parts) != 1 {
		t.Fatalf("%d keys", len(parts))
	}
	r := newKeyResult(parts[0])
	r.check(model, time.Now().Add(time.Minute))
	return r
}

// The relaxed encoding proves what the unknown writes cannot explain away; what it lets
// pass only because it allows a write nobody saw to take effect twice, the exact one
// decides.
func TestEncodings(t *testing.T) {
	r := checkFile(t, "testdata/violation_stale_read_beside_unknown_writes.jsonl")
	if r.result != porcupine.Illegal || !r.byRelax || len(r.folded) != 2 {
		t.Fatalf("stale read beside unknown writes: %v byRelax=%v folded=%d",
			r.result, r.byRelax, len(r.folded))
	}
	r = checkFile(t, "testdata/violation_unknown_write_used_twice.jsonl")
	if r.result != porcupine.Illegal || r.byRelax || len(r.folded) != 1 {
		t.Fatalf("unknown write used twice: %v byRelax=%v folded=%d",
			r.result, r.byRelax, len(r.folded))
	}
	if porcupine.CheckOperations(kstateModel(), r.relaxed) != true {
		t.Fatal("the relaxed encoding should let the write take effect twice")
	}
}

func TestStep(t *testing.T) {
	v := func(o int64) version { return version{P: 3, O: o} }
	at10 := state{Exists: true, Value: "a", Ver: v(10), Exact: true}
	tomb := state{Ver: v(20)}
	unseenAt10 := state{Exists: true, Value: unseen, Ver: v(10)}
	etag := func(o int64) condition { return condition{kind: condETag, ver: v(o)} }
	star := condition{kind: condAny}
	cases := []struct {
		name string
		s    state
		in   input
		out  output
		want int // how many next states; 0: illegal
	}{
		{"412 on the current version", at10, input{Op: opPut, Outcome: outcomeFail, Cond: etag(10)},
			output{Status: 412}, 0},
		{"412 on an older version", at10, input{Op: opPut, Outcome: outcomeFail, Cond: etag(5)},
			output{Status: 412}, 1},
		{"412 without If-Match", at10, input{Op: opPut, Outcome: outcomeFail}, output{Status: 412}, 0},
		{"If-Match the tombstone's ETag", tomb, input{Op: opPut, Outcome: outcomeOK, Cond: etag(20),
			Value: "b"}, output{Status: 200, Ver: v(30), HasVer: true}, 0},
		{"create after a tombstone", tomb, input{Op: opPut, Outcome: outcomeOK, Value: "b"},
			output{Status: 201, Ver: v(30), HasVer: true}, 1},
		{"create under an older version", tomb, input{Op: opPut, Outcome: outcomeOK, Value: "b"},
			output{Status: 201, Ver: v(15), HasVer: true}, 0},
		{"delete of a missing key writes nothing", tomb, input{Op: opDelete, Outcome: outcomeOK},
			output{Status: 204}, 1},
		{"delete of an existing key must write", at10, input{Op: opDelete, Outcome: outcomeOK},
			output{Status: 204}, 0},
		{"unknown conditional put that cannot apply", at10,
			input{Op: opPut, Outcome: outcomeUnknown, Cond: etag(5), Value: "b"}, output{}, 1},
		{"unknown put may or may not apply", at10,
			input{Op: opPut, Outcome: outcomeUnknown, Cond: star, Value: "b"}, output{}, 2},
		{"unseen version: an ETag above it may match", unseenAt10,
			input{Op: opPut, Outcome: outcomeOK, Cond: etag(12), Value: "b"},
			output{Status: 200, Ver: v(13), HasVer: true}, 1},
		{"unseen version: an ETag below it cannot", unseenAt10,
			input{Op: opPut, Outcome: outcomeOK, Cond: etag(8), Value: "b"},
			output{Status: 200, Ver: v(13), HasVer: true}, 0},
		{"spontaneous delete explains a 404", at10,
			input{Op: opGet, Outcome: outcomeOK, Spont: []spontaneous{{Op: opDelete}}},
			output{Status: 404}, 1},
	}
	for _, c := range cases {
		if got := len(step(c.s, c.in, c.out)); got != c.want {
			t.Errorf("%s: %d next states, want %d", c.name, got, c.want)
		}
	}
}
