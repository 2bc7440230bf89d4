package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// BenchmarkSynthetic checks the synthetic history of TestSyntheticLarge (both encodings,
// all keys, in parallel): go test -run XXX -bench Synthetic -benchtime 3x
func BenchmarkSynthetic(b *testing.B) {
	lines := synthHistory(synthConfig{ops: 50_000, keys: 200, clients: 8, partitions: 12,
		hotKeys: 5, unknownWrites: 0.01, seed: 1})
	path := filepath.Join(b.TempDir(), "synthetic.jsonl")
	if err := writeHistory(path, lines); err != nil {
		b.Fatal(err)
	}
	h, err := load(path)
	if err != nil {
		b.Fatal(err)
	}
	model := kstateModel()
	ops, _ := h.operations()
	parts := model.Partition(ops)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, r := range checkKeys(model, parts, time.Minute) {
			if r.result != porcupine.Ok {
				b.Fatalf("%s: %v", r.key, r.result)
			}
		}
	}
}
