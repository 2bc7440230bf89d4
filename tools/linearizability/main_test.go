package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runCLI runs the command in-process and returns its exit code, stdout and report.
func runCLI(t *testing.T, args ...string) (int, string, report) {
	t.Helper()
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"--out", out}, args...), &stdout, &stderr)
	var rep report
	b, err := os.ReadFile(filepath.Join(out, "linearizability.json"))
	if err != nil {
		t.Fatalf("no report (exit %d, stderr %q): %v", code, stderr.String(), err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report is not JSON: %v", err)
	}
	for _, p := range rep.Pictures {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Errorf("picture %s listed but not written: %v", p, err)
		}
	}
	return code, stdout.String() + stderr.String(), rep
}

// The name of each testdata file says what it is: ok_* is linearizable, violation_* is
// not (on k1@chaos.test), bad_input_* is refused.
func TestTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/*.jsonl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".jsonl")
		t.Run(name, func(t *testing.T) {
			code, out, rep := runCLI(t, "--history", f)
			switch {
			case strings.HasPrefix(name, "ok_"):
				if code != exitOK || rep.Verdict != "linearizable" {
					t.Fatalf("want linearizable, got exit %d %q: %s", code, rep.Verdict, out)
				}
			case strings.HasPrefix(name, "violation_"):
				if code != exitViolation || rep.Verdict != "violation" {
					t.Fatalf("want violation, got exit %d %q: %s", code, rep.Verdict, out)
				}
				if fmt.Sprint(rep.ViolatingKeys) != "[k1@chaos.test]" ||
					fmt.Sprint(rep.Pictures) != "[violation-k1@chaos.test.html]" {
					t.Fatalf("violating keys %v, pictures %v", rep.ViolatingKeys, rep.Pictures)
				}
			case strings.HasPrefix(name, "bad_input_"):
				if code != exitUnknown || !strings.Contains(out, "line 2:") {
					t.Fatalf("want exit 2 naming line 2, got exit %d: %s", code, out)
				}
			default:
				t.Fatalf("testdata name %q says nothing about its verdict", name)
			}
		})
	}
}

func TestReportCounts(t *testing.T) {
	code, out, rep := runCLI(t, "--history", "testdata/ok_unknown_put_shows_up.jsonl",
		"--visualize", "any")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, out)
	}
	// 9 operations (the meta line is not one); the unknown and the failed get say nothing.
	if rep.Ops != 9 || rep.OpsChecked != 7 || rep.Keys != 1 || rep.UnknownOps != 2 {
		t.Fatalf("counts: %+v", rep)
	}
	// Both unknown puts were read, so each is pending only until its value was first read.
	if rep.MaxConcurrency != 2 {
		t.Fatalf("max concurrency %d", rep.MaxConcurrency)
	}
	if fmt.Sprint(rep.Pictures) != "[history-k1@chaos.test.html]" {
		t.Fatalf("pictures %v", rep.Pictures)
	}
	if !strings.HasPrefix(out, "linearizability: linearizable ops=9 keys=1 checked_in=") {
		t.Fatalf("summary %q", out)
	}
}

func TestVisualizeNamedKey(t *testing.T) {
	_, _, rep := runCLI(t, "--history", "testdata/ok_concurrent_either_order.jsonl",
		"--visualize", "k2@chaos.test")
	if fmt.Sprint(rep.Pictures) != "[history-k2@chaos.test.html]" {
		t.Fatalf("pictures %v", rep.Pictures)
	}
	_, _, rep = runCLI(t, "--history", "testdata/ok_concurrent_either_order.jsonl")
	if len(rep.Pictures) != 0 {
		t.Fatalf("pictures %v without --visualize", rep.Pictures)
	}
}

// Thirty concurrent If-Match "*" puts on a missing key, all rightly refused, then a read
// of a value nobody wrote: proving that illegal means trying every subset of the thirty.
// The deadline must turn that into "unknown", promptly, never into "linearizable".
func TestTimeoutIsUnknown(t *testing.T) {
	var lines []harnessLine
	for i := 0; i < 30; i++ {
		ret := 10.0
		lines = append(lines, harnessLine{ID: i, Client: i, Key: "k1@chaos.test", Op: "put",
			IfMatch: strp("*"), Value: strp(fmt.Sprintf("k1@chaos.test#%d", i)),
			Call: float64(i) / 100, Return: &ret, Status: intp(412), Outcome: "fail"})
	}
	ret := 11.1
	lines = append(lines, harnessLine{ID: 30, Client: 30, Key: "k1@chaos.test", Op: "get",
		Call: 11.0, Return: &ret, Status: intp(200), Outcome: "ok",
		Result: &harnessResult{Value: strp("phantom"), Version: strp("0-1")}})
	path := filepath.Join(t.TempDir(), "h.jsonl")
	if err := writeHistory(path, lines); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, out, rep := runCLI(t, "--history", path, "--timeout", "300ms")
	if code != exitUnknown || rep.Verdict != "unknown" ||
		fmt.Sprint(rep.TimedOutKeys) != "[k1@chaos.test]" {
		t.Fatalf("exit %d verdict %q timed out %v: %s", code, rep.Verdict, rep.TimedOutKeys, out)
	}
	if !strings.HasPrefix(out, "linearizability: UNKNOWN (timed out after 0.3s) keys=1 (k1@chaos.test) ops=31 ") {
		t.Fatalf("summary %q", out)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %s", took)
	}
}

func TestEmptyHistoryIsBadInput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.jsonl")
	if err := os.WriteFile(path, []byte(`{"type": "meta"}`+"\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, rep := runCLI(t, "--history", path)
	if code != exitUnknown || !strings.Contains(out, "no operations") || rep.Error == "" {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func TestVisualizeMissingKeyKeepsVerdict(t *testing.T) {
	code, out, rep := runCLI(t, "--history", "testdata/ok_right_412.jsonl",
		"--visualize", "nobody@chaos.test")
	if code != exitOK || len(rep.Pictures) != 0 || !strings.Contains(out, "no checked operation") {
		t.Fatalf("exit %d pictures %v: %s", code, rep.Pictures, out)
	}
	code, _, rep = runCLI(t, "--history", "testdata/violation_stale_read.jsonl",
		"--visualize", "k1@chaos.test")
	if code != exitViolation || fmt.Sprint(rep.Pictures) != "[violation-k1@chaos.test.html]" {
		t.Fatalf("exit %d pictures %v", code, rep.Pictures)
	}
}

func TestBadUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--timeout", "1s"}, &stdout, &stderr); code != exitUnknown {
		t.Fatalf("no --history: exit %d", code)
	}
	if code := run([]string{"--history", filepath.Join(t.TempDir(), "none.jsonl"),
		"--out", t.TempDir()}, &stdout, &stderr); code != exitUnknown {
		t.Fatalf("missing file: exit %d", code)
	}
}

// ~50,000 operations over 200 keys from 8 clients with unknown outcomes: correct, and
// checked well within the default timeout. Then one read on a busy key is made stale:
// exactly that key must be reported.
func TestSyntheticLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large synthetic history: not with -short")
	}
	lines := synthHistory(synthConfig{ops: 50_000, keys: 200, clients: 8, partitions: 12,
		hotKeys: 5, unknownWrites: 0.01, seed: 1})
	dir := t.TempDir()
	path := filepath.Join(dir, "synthetic.jsonl")
	if err := writeHistory(path, lines); err != nil {
		t.Fatal(err)
	}
	code, out, rep := runCLI(t, "--history", path, "--visualize", "any")
	t.Logf("%s(unknown_ops=%d max_concurrency_per_key=%d)", out, rep.UnknownOps, rep.MaxConcurrency)
	if code != exitOK || rep.Ops != 50_000 || rep.Keys != 200 || rep.UnknownOps == 0 {
		t.Fatalf("exit %d: %+v", code, rep)
	}
	if rep.Seconds > 60 {
		t.Fatalf("checked in %.1fs", rep.Seconds)
	}

	// A read on hot key k0 after a write it should have seen, answered with an older value.
	stale := staleRead(t, lines, "k0@chaos.test")
	lines = append(lines, stale)
	if err := writeHistory(path, lines); err != nil {
		t.Fatal(err)
	}
	code, out, rep = runCLI(t, "--history", path)
	t.Logf("%s", out)
	if code != exitViolation || fmt.Sprint(rep.ViolatingKeys) != "[k0@chaos.test]" {
		t.Fatalf("exit %d: %+v", code, rep)
	}
}

// staleRead makes a read of key that starts after the last acknowledged put of it
// returned, yet answers the value of an earlier acknowledged put.
func staleRead(t *testing.T, lines []harnessLine, key string) harnessLine {
	t.Helper()
	var puts []harnessLine
	end := 0.0
	for _, l := range lines {
		if l.Return != nil {
			end = max(end, *l.Return)
		}
		if l.Key == key && l.Op == "put" && l.Outcome == "ok" {
			puts = append(puts, l)
		}
	}
	if len(puts) < 2 {
		t.Fatalf("too few puts of %s", key)
	}
	old := puts[len(puts)/2]
	call, ret := end+1, end+1.001
	return harnessLine{ID: len(lines) + 1, Client: 99, Key: key, Op: "get", Call: call,
		Return: &ret, Status: intp(200), Outcome: "ok",
		Result: &harnessResult{Value: old.Value, Version: old.Result.Version}}
}
