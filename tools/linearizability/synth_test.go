package main

// A synthetic but correct history: a simulation of a linearizable kstate (a register per
// key, Kafka-like offsets per partition) driven by concurrent clients, written in the
// harness's format. Some writes time out (outcome unknown): half of those take effect, at
// any time up to seconds later, the other half never do.

import (
	"bufio"
	"container/heap"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
)

type synthConfig struct {
	ops, keys, clients, partitions int
	hotKeys                        int     // a fifth of the requests go to these keys
	unknownWrites                  float64 // share of writes whose outcome is unknown
	seed                           int64
}

// harnessLine is one history line as the harness writes it.
type harnessLine struct {
	ID      int            `json:"id"`
	Client  int            `json:"client"`
	Node    string         `json:"node"`
	Key     string         `json:"key"`
	Op      string         `json:"op"`
	IfMatch *string        `json:"if_match"`
	Value   *string        `json:"value"`
	Call    float64        `json:"call"`
	Return  *float64       `json:"return"`
	Status  *int           `json:"status"`
	Code    *string        `json:"code"`
	Result  *harnessResult `json:"result"`
	Outcome string         `json:"outcome"`
}

type harnessResult struct {
	Value   *string `json:"value"`
	Version *string `json:"version"`
}

type simKey struct {
	exists bool
	value  string
	etag   string // "p-o" of the current (or last) record
}

type simEvent struct {
	t     float64
	apply bool // the operation takes effect (else: the client gets its answer)
	op    *simOp
}

type simOp struct {
	line    harnessLine
	key     int
	unknown bool // the client will not learn the outcome
	lands   bool // unknown: it takes effect (at its apply event) or never
}

type eventQueue []simEvent

func (q eventQueue) Len() int           { return len(q) }
func (q eventQueue) Less(i, j int) bool { return q[i].t < q[j].t }
func (q eventQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)        { *q = append(*q, x.(simEvent)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

func strp(s string) *string { return &s }
func intp(i int) *int       { return &i }

// synthHistory simulates cfg.ops client operations and returns them in completion order.
func synthHistory(cfg synthConfig) []harnessLine {
	rng := rand.New(rand.NewSource(cfg.seed))
	keys := make([]simKey, cfg.keys)
	offsets := make([]int64, cfg.partitions)
	known := make([]map[int]string, cfg.clients) // per client: the last ETag it saw per key
	for c := range known {
		known[c] = map[int]string{}
	}
	keyName := func(k int) string { return fmt.Sprintf("k%d@chaos.test", k) }
	var q eventQueue
	var out []harnessLine
	issued, writes := 0, 0

	issue := func(client int, t float64) {
		if issued >= cfg.ops {
			return
		}
		issued++
		k := rng.Intn(cfg.keys)
		if rng.Float64() < 0.2 {
			k = rng.Intn(cfg.hotKeys)
		}
		op := &simOp{key: k, line: harnessLine{ID: issued, Client: client, Key: keyName(k),
			Node: fmt.Sprintf("127.0.0.1:%d", 8081+rng.Intn(3)), Call: t}}
		r := rng.Float64()
		switch {
		case r < 0.62:
			op.line.Op = "get"
		case r < 0.95:
			op.line.Op = "put"
			writes++
			op.line.Value = strp(fmt.Sprintf("%s#%d", keyName(k), writes))
		default:
			op.line.Op = "delete"
		}
		if op.line.Op != "get" && rng.Float64() < 0.3 {
			if etag, ok := known[client][k]; ok && rng.Float64() < 0.8 {
				op.line.IfMatch = strp(`"` + etag + `"`)
			} else {
				op.line.IfMatch = strp("*")
			}
		}
		latency := 0.001 + rng.ExpFloat64()*0.004
		applyAt := t + rng.Float64()*latency
		if op.line.Op != "get" && rng.Float64() < cfg.unknownWrites {
			op.unknown, op.lands = true, rng.Float64() < 0.5
			latency = 0.5                 // the client's timeout
			applyAt = t + rng.Float64()*3 // late, perhaps after its own timeout
		}
		if op.line.Op == "get" && rng.Float64() < 0.01 { // a 503 read: no information
			op.line.Status, op.line.Code = intp(503), strp("not_serving")
			op.line.Outcome = "fail"
			ret := t + latency
			op.line.Return = &ret
			heap.Push(&q, simEvent{t: ret, op: op})
			return
		}
		if !op.unknown || op.lands {
			heap.Push(&q, simEvent{t: applyAt, apply: true, op: op})
		}
		heap.Push(&q, simEvent{t: t + latency, op: op})
	}

	apply := func(op *simOp) {
		s := &keys[op.key]
		p := op.key % cfg.partitions
		l := &op.line
		holds := true
		if l.IfMatch != nil {
			holds = s.exists && (*l.IfMatch == "*" || *l.IfMatch == `"`+s.etag+`"`)
		}
		switch {
		case l.Op == "get":
			l.Outcome, l.Status = "ok", intp(404)
			if s.exists {
				l.Status = intp(200)
				l.Result = &harnessResult{Value: strp(s.value), Version: strp(s.etag)}
			}
			return
		case !holds:
			l.Outcome, l.Status, l.Code = "fail", intp(412), strp("precondition_failed")
			return
		case l.Op == "delete" && !s.exists:
			l.Outcome, l.Status = "ok", intp(204)
			l.Result = &harnessResult{}
			return
		}
		offsets[p] += 1 + int64(rng.Intn(4)) // other keys share the partition
		etag := fmt.Sprintf("%d-%d", p, offsets[p])
		l.Outcome, l.Result = "ok", &harnessResult{Version: strp(etag)}
		if l.Op == "put" {
			l.Status = intp(200)
			if !s.exists {
				l.Status = intp(201)
			}
			*s = simKey{exists: true, value: *l.Value, etag: etag}
		} else {
			l.Status = intp(204)
			*s = simKey{etag: etag}
		}
	}

	for c := 0; c < cfg.clients; c++ {
		issue(c, rng.Float64()*0.01)
	}
	for q.Len() > 0 {
		e := heap.Pop(&q).(simEvent)
		if e.apply {
			apply(e.op)
			continue
		}
		l := &e.op.line
		if e.op.unknown {
			l.Outcome, l.Status, l.Code, l.Result = "unknown", intp(503), strp("write_timeout"), nil
			if rng.Float64() < 0.5 {
				l.Status, l.Code = nil, strp("timeout")
			}
		} else {
			ret := e.t
			l.Return = &ret
			switch {
			case l.Outcome != "ok":
			case l.Op == "get" && *l.Status == 200, l.Op == "put":
				known[l.Client][e.op.key] = *l.Result.Version
			default:
				delete(known[l.Client], e.op.key)
			}
		}
		out = append(out, *l)
		issue(l.Client, e.t+rng.Float64()*0.002)
	}
	return out
}

func writeHistory(path string, lines []harnessLine) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	if err := enc.Encode(map[string]any{"type": "meta", "synthetic": true}); err != nil {
		return err
	}
	for _, l := range lines {
		if err := enc.Encode(l); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}
