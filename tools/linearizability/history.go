package main

// Reading the chaos harness's history (JSON lines) into Porcupine operations.
//
// Every line is validated as far as the checker relies on it; a line that is not what the
// harness promises is bad input (exit 2) with its line number, never guessed at. Fields
// the checker does not use are ignored, and so are metadata lines (those with "type").

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// rawLine is one history line as the harness writes it; pointers tell null from absent
// values where it matters.
type rawLine struct {
	Type    json.RawMessage `json:"type"`
	ID      json.RawMessage `json:"id"`
	Client  *int            `json:"client"`
	Node    *string         `json:"node"`
	Key     *string         `json:"key"`
	Op      *string         `json:"op"`
	IfMatch *string         `json:"if_match"`
	Value   *string         `json:"value"`
	Call    *float64        `json:"call"`
	Return  *float64        `json:"return"`
	Status  *int            `json:"status"`
	Code    *string         `json:"code"`
	Result  *struct {
		Value   *string `json:"value"`
		Version *string `json:"version"`
	} `json:"result"`
	Outcome *string `json:"outcome"`
}

// record is one validated operation, before it becomes a porcupine.Operation.
type record struct {
	line    int
	id      string
	client  int
	node    string
	key     string
	op      opKind
	outcome outcomeKind
	cond    condition
	value   string  // put: the value written
	call    int64   // nanoseconds
	ret     int64   // nanoseconds; meaningless for unknown outcomes
	status  int     // 0 when the harness recorded none
	code    string  // the error code the harness recorded, if any
	found   bool    // get: 200 (true) or 404 (false)
	read    string  // get 200: the value read
	ver     version // get 200, put ok: the version answered; delete ok: the tombstone's
	hasVer  bool    // ver is set (get 200, put ok; delete ok: a tombstone was written)
	dropped bool    // says nothing about the state (failed or unknown get, non-412 failure)
}

// history is a whole parsed file.
type history struct {
	records []record
	keys    int // distinct keys among all operations, dropped ones included
}

// badInput is an input error that names the line.
type badInput struct {
	line int
	msg  string
}

func (e *badInput) Error() string {
	if e.line == 0 {
		return e.msg
	}
	return fmt.Sprintf("line %d: %s", e.line, e.msg)
}

// readHistory parses every line of r. It returns a *badInput for anything the checker
// cannot interpret.
func readHistory(r io.Reader) (*history, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 64*1024*1024)
	h := &history{}
	keys := map[string]struct{}{}
	type kv struct{ key, value string }
	writer := map[kv]int{} // the line of the put that wrote a value (if it may have)
	n := 0
	for sc.Scan() {
		n++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var raw rawLine
		if err := json.Unmarshal(b, &raw); err != nil {
			return nil, &badInput{n, "not a JSON object: " + err.Error()}
		}
		if raw.Type != nil {
			continue // metadata line
		}
		rec, err := parseRecord(n, &raw)
		if err != nil {
			return nil, err
		}
		keys[rec.key] = struct{}{}
		if rec.op == opPut && !rec.dropped && rec.outcome != outcomeFail {
			// A read names the write it returns only if values are unique per key.
			if first, ok := writer[kv{rec.key, rec.value}]; ok {
				return nil, &badInput{n, fmt.Sprintf(
					"the put of line %d already wrote %q to %s: values must be unique per key",
					first, rec.value, rec.key)}
			}
			writer[kv{rec.key, rec.value}] = n
		}
		h.records = append(h.records, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, &badInput{n + 1, "cannot read: " + err.Error()}
	}
	if len(h.records) == 0 {
		return nil, &badInput{0, "no operations in the history"}
	}
	h.keys = len(keys)
	return h, nil
}

func parseRecord(n int, raw *rawLine) (record, error) {
	bad := func(format string, a ...any) (record, error) {
		return record{}, &badInput{n, fmt.Sprintf(format, a...)}
	}
	rec := record{line: n, id: string(raw.ID)}
	if raw.Client != nil {
		rec.client = *raw.Client
	}
	if raw.Node != nil {
		rec.node = *raw.Node
	}
	if raw.Code != nil {
		rec.code = *raw.Code
	}
	if raw.Status != nil {
		rec.status = *raw.Status
	}
	if raw.Key == nil || *raw.Key == "" {
		return bad(`"key" is missing or empty`)
	}
	rec.key = *raw.Key
	if raw.Op == nil {
		return bad(`"op" is missing`)
	}
	switch *raw.Op {
	case "get":
		rec.op = opGet
	case "put":
		rec.op = opPut
	case "delete":
		rec.op = opDelete
	default:
		return bad(`"op" is %q, not get, put or delete`, *raw.Op)
	}
	if raw.Outcome == nil {
		return bad(`"outcome" is missing`)
	}
	switch *raw.Outcome {
	case "ok":
		rec.outcome = outcomeOK
	case "fail":
		rec.outcome = outcomeFail
	case "unknown":
		rec.outcome = outcomeUnknown
	default:
		return bad(`"outcome" is %q, not ok, fail or unknown`, *raw.Outcome)
	}
	if raw.Call == nil || math.IsNaN(*raw.Call) || math.IsInf(*raw.Call, 0) {
		return bad(`"call" is missing or not a number`)
	}
	rec.call = toNanos(*raw.Call)
	if raw.Return != nil {
		if math.IsNaN(*raw.Return) || math.IsInf(*raw.Return, 0) {
			return bad(`"return" is not a number`)
		}
		rec.ret = toNanos(*raw.Return)
	}

	// What says nothing about the state is dropped before anything else is demanded of it.
	is412 := rec.outcome == outcomeFail && rec.status == 412 && rec.op != opGet
	if (rec.op == opGet && rec.outcome != outcomeOK) || (rec.outcome == outcomeFail && !is412) {
		rec.dropped = true
		return rec, nil
	}
	if rec.outcome != outcomeUnknown {
		if raw.Return == nil {
			return bad(`outcome %q needs a "return" time`, *raw.Outcome)
		}
		if rec.ret < rec.call {
			return bad(`"return" (%v) is before "call" (%v)`, *raw.Return, *raw.Call)
		}
	}
	if rec.op != opGet {
		rec.cond = parseCondition(raw.IfMatch)
	}
	if rec.op == opPut {
		if raw.Value == nil {
			return bad(`a put needs a "value"`)
		}
		rec.value = *raw.Value
	}
	if rec.outcome != outcomeOK {
		return rec, nil // a 412 or an unknown write: the answer carries nothing more
	}
	resVersion := func() (version, bool, error) {
		if raw.Result == nil || raw.Result.Version == nil {
			return version{}, false, nil
		}
		v, ok := parseVersion(*raw.Result.Version)
		if !ok {
			return version{}, false, &badInput{n, fmt.Sprintf(
				`"result.version" %q is not "<partition>-<offset>"`, *raw.Result.Version)}
		}
		return v, true, nil
	}
	v, hasV, err := resVersion()
	if err != nil {
		return record{}, err
	}
	switch rec.op {
	case opGet:
		switch rec.status {
		case 200:
			if raw.Result == nil || raw.Result.Value == nil || !hasV {
				return bad(`a get answered 200 needs "result" with "value" and "version"`)
			}
			rec.found, rec.read, rec.ver, rec.hasVer = true, *raw.Result.Value, v, true
		case 404:
		default:
			return bad(`a get with outcome "ok" has status %d, not 200 or 404`, rec.status)
		}
	case opPut:
		if rec.status != 200 && rec.status != 201 {
			return bad(`a put with outcome "ok" has status %d, not 200 or 201`, rec.status)
		}
		if !hasV {
			return bad(`a put answered %d needs "result.version"`, rec.status)
		}
		rec.ver, rec.hasVer = v, true
	case opDelete:
		if rec.status != 204 {
			return bad(`a delete with outcome "ok" has status %d, not 204`, rec.status)
		}
		rec.ver, rec.hasVer = v, hasV
	}
	return rec, nil
}

// toNanos turns the harness's float seconds into integer nanoseconds for Porcupine.
func toNanos(s float64) int64 { return int64(math.Round(s * 1e9)) }

// parseVersion reads "<partition>-<offset>" (an ETag without its quotes).
func parseVersion(s string) (version, bool) {
	p, o, ok := strings.Cut(s, "-")
	if !ok {
		return version{}, false
	}
	pi, err1 := strconv.ParseInt(p, 10, 32)
	oi, err2 := strconv.ParseInt(o, 10, 64)
	if err1 != nil || err2 != nil || pi < 0 || oi < 0 {
		return version{}, false
	}
	return version{P: int32(pi), O: oi}, true
}

// parseCondition reads an If-Match header as sent. An ETag that is not one kstate could
// have answered matches no version, as on the server.
func parseCondition(h *string) condition {
	if h == nil {
		return condition{kind: condNone}
	}
	s := strings.TrimSpace(*h)
	if s == "*" {
		return condition{kind: condAny}
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		if v, ok := parseVersion(s[1 : len(s)-1]); ok {
			return condition{kind: condETag, ver: v}
		}
	}
	return condition{kind: condNever, raw: s}
}
