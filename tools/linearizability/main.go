// Command linearizability checks a kstate chaos history for linearizability with
// Porcupine: each key is a register with versions (see model.go), checked on its own.
//
//	linearizability --history FILE [--out DIR] [--timeout 120s] [--visualize KEY|any|none]
//
// Exit status: 0 linearizable, 1 violation, 2 unknown (timed out) or bad input.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

const (
	exitOK        = 0
	exitViolation = 1
	exitUnknown   = 2
)

// report is DIR/linearizability.json.
type report struct {
	Verdict        string   `json:"verdict"`
	Ops            int      `json:"ops"`
	OpsChecked     int      `json:"ops_checked"`
	Keys           int      `json:"keys"`
	Seconds        float64  `json:"seconds"`
	ViolatingKeys  []string `json:"violating_keys"`
	MaxConcurrency int      `json:"max_concurrency_per_key"`
	UnknownOps     int      `json:"unknown_ops"`
	TimedOutKeys   []string `json:"timed_out_keys"`
	TimeoutSeconds float64  `json:"timeout_seconds"`
	Pictures       []string `json:"pictures"`
	Error          string   `json:"error,omitempty"`
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("linearizability", flag.ContinueOnError)
	fs.SetOutput(stderr)
	historyPath := fs.String("history", "", "the history file (JSON lines), required")
	outDir := fs.String("out", "", "where to write linearizability.json and pictures "+
		"(default: the history file's directory)")
	timeout := fs.Duration("timeout", 120*time.Second, "give up (verdict unknown) after this long")
	visualize := fs.String("visualize", "none",
		"also draw one key's history even when linearizable: a key, any (the busiest key) or none")
	if err := fs.Parse(args); err != nil {
		return exitUnknown
	}
	if *historyPath == "" || fs.NArg() > 0 || *timeout <= 0 {
		fmt.Fprintln(stderr, "linearizability: usage: linearizability --history FILE "+
			"[--out DIR] [--timeout 120s] [--visualize KEY|any|none]")
		return exitUnknown
	}
	if *outDir == "" {
		*outDir = filepath.Dir(*historyPath)
	}
	rep := report{ViolatingKeys: []string{}, TimedOutKeys: []string{}, Pictures: []string{},
		TimeoutSeconds: timeout.Seconds()}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		fmt.Fprintf(stderr, "linearizability: cannot create %s: %v\n", *outDir, err)
		return exitUnknown
	}
	h, err := load(*historyPath)
	if err != nil {
		msg := fmt.Sprintf("bad input: %s: %v", *historyPath, err)
		fmt.Fprintf(stderr, "linearizability: %s\n", msg)
		rep.Verdict, rep.Error = "unknown", msg
		_ = writeReport(*outDir, &rep)
		return exitUnknown
	}

	model := kstateModel()
	ops, unknown := h.operations()
	parts := model.Partition(ops)
	rep.Ops, rep.OpsChecked, rep.Keys, rep.UnknownOps = len(h.records), len(ops), h.keys, unknown
	for _, p := range parts {
		rep.MaxConcurrency = max(rep.MaxConcurrency, maxConcurrency(p))
	}

	start := time.Now()
	results := checkKeys(model, parts, *timeout)
	rep.Seconds = math.Round(time.Since(start).Seconds()*1000) / 1000
	var draw []keyResult
	for _, r := range results {
		switch r.result {
		case porcupine.Illegal:
			rep.ViolatingKeys = append(rep.ViolatingKeys, r.key)
			draw = append(draw, r)
		case porcupine.Unknown:
			rep.TimedOutKeys = append(rep.TimedOutKeys, r.key)
		}
	}
	sort.Strings(rep.ViolatingKeys)
	sort.Strings(rep.TimedOutKeys)
	switch {
	case len(rep.ViolatingKeys) > 0:
		rep.Verdict = "violation"
	case len(rep.TimedOutKeys) > 0:
		rep.Verdict = "unknown"
	default:
		rep.Verdict = "linearizable"
	}

	switch pick, status := chooseVisualized(*visualize, results); status {
	case pickFound:
		draw = append(draw, pick)
	case pickMissing:
		fmt.Fprintf(stderr, "linearizability: --visualize %s: no checked operation on that key\n",
			*visualize)
	}
	rep.Pictures = drawPictures(model, draw, *outDir, *timeout, stderr)
	if err := writeReport(*outDir, &rep); err != nil {
		fmt.Fprintf(stderr, "linearizability: cannot write the report: %v\n", err)
		return exitUnknown
	}

	took := fmt.Sprintf("ops=%d checked_in=%.2fs", rep.Ops, rep.Seconds)
	switch rep.Verdict {
	case "violation":
		fmt.Fprintf(stdout, "linearizability: VIOLATION keys=%d (%s) %s\n",
			len(rep.ViolatingKeys), listKeys(rep.ViolatingKeys), took)
		return exitViolation
	case "unknown":
		fmt.Fprintf(stdout, "linearizability: UNKNOWN (timed out after %gs) keys=%d (%s) %s\n",
			timeout.Seconds(), len(rep.TimedOutKeys), listKeys(rep.TimedOutKeys), took)
		return exitUnknown
	}
	fmt.Fprintf(stdout, "linearizability: linearizable ops=%d keys=%d checked_in=%.2fs\n",
		rep.Ops, rep.Keys, rep.Seconds)
	return exitOK
}

func load(path string) (*history, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readHistory(f)
}

type pickStatus int

const (
	pickNone    pickStatus = iota // --visualize none, or the key is drawn as a violation
	pickFound                     // draw this key's history
	pickMissing                   // the key named has no checked operation
)

// chooseVisualized finds the key --visualize names ("any": the one with most operations).
func chooseVisualized(which string, results []keyResult) (keyResult, pickStatus) {
	if which == "none" {
		return keyResult{}, pickNone
	}
	var best keyResult
	for _, r := range results {
		if which == "any" && len(r.exact) > len(best.exact) || which == r.key {
			best = r
		}
	}
	switch {
	case best.key == "" && which == "any":
		return best, pickNone
	case best.key == "":
		return best, pickMissing
	case best.result == porcupine.Illegal:
		return best, pickNone // drawn anyway, as a violation
	}
	return best, pickFound
}

// drawPictures writes Porcupine's visualization for each key: violation-<key>.html for an
// illegal one, history-<key>.html otherwise. Finding the longest partial linearizations
// takes a second, verbose search per key, in the encoding that decided it; they run in
// parallel, each with the timeout, and a search cut short still draws what it found.
func drawPictures(model porcupine.Model, keys []keyResult, dir string, timeout time.Duration,
	stderr io.Writer) []string {
	names := make([]string, len(keys))
	var mu sync.Mutex
	items := make([]int, len(keys))
	for i := range items {
		items[i] = i
	}
	parallel(items, func(i int) {
		r := keys[i]
		prefix := "history-"
		if r.result == porcupine.Illegal {
			prefix = "violation-"
		}
		name := prefix + sanitize(r.key) + ".html"
		ops := r.exact
		if r.byRelax {
			ops = r.relaxed
		}
		_, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
		if r.byRelax {
			info.AddAnnotations(foldedAnnotations(r.folded))
		}
		if err := porcupine.VisualizePath(model, info, filepath.Join(dir, name)); err != nil {
			mu.Lock()
			fmt.Fprintf(stderr, "linearizability: cannot draw %s: %v\n", name, err)
			mu.Unlock()
			return
		}
		names[i] = name
	})
	var out []string
	for _, n := range names {
		if n != "" {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// foldedAnnotations draws the unknown writes that the relaxed encoding took out of the
// history, in their clients' rows, so the picture still shows everything that was sent.
func foldedAnnotations(folded []porcupine.Operation) []porcupine.Annotation {
	var out []porcupine.Annotation
	for _, op := range folded {
		out = append(out, porcupine.Annotation{
			ClientId:    op.ClientId,
			Start:       op.Call,
			End:         op.Return,
			Description: describeOperation(op.Input, op.Output),
			Details: metaText(op.Metadata.(meta)) + "; nobody can have observed it: checked as a " +
				"write that may take effect after its call, any number of times",
			BackgroundColor: "#e0e0e0",
		})
	}
	return out
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._@+-]`)

// sanitize makes a key usable as a file name.
func sanitize(key string) string {
	s := unsafeChars.ReplaceAllString(key, "_")
	if s == "" || strings.HasPrefix(s, ".") {
		s = "_" + s
	}
	return s
}

func listKeys(keys []string) string {
	const shown = 10
	if len(keys) <= shown {
		return strings.Join(keys, ", ")
	}
	return strings.Join(keys[:shown], ", ") + fmt.Sprintf(", ... %d more", len(keys)-shown)
}

func writeReport(dir string, rep *report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "linearizability.json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return errors.Join(fmt.Errorf("write %s", path), err)
	}
	return nil
}
