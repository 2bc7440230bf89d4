package main

// The sequential specification of one kstate key: a register with versions.
//
// A version is the Kafka offset of the record that wrote it; within a key every write
// lands in one partition, so a later write always has a larger offset. The state is what
// the key holds after some prefix of the linearization: absent or a value, and its
// version. An unknown-outcome write makes the model nondeterministic (it took effect or it
// did not), which Porcupine's NondeterministicModel handles with a power-set construction.

import (
	"fmt"
	"html"
	"slices"
	"strconv"
	"strings"

	"github.com/anishathalye/porcupine"
)

type opKind uint8

const (
	opGet opKind = iota
	opPut
	opDelete
)

func (k opKind) String() string { return [...]string{"get", "put", "delete"}[k] }

type outcomeKind uint8

const (
	outcomeOK      outcomeKind = iota // completed
	outcomeFail                       // definitely not applied (only 412s are kept)
	outcomeUnknown                    // may take effect at any later time, or never
)

func (o outcomeKind) String() string { return [...]string{"ok", "fail", "unknown"}[o] }

// version is an ETag: partition and offset. O < 0: none known.
type version struct {
	P int32
	O int64
}

func (v version) String() string {
	if v.O < 0 {
		return "none"
	}
	return fmt.Sprintf("%d-%d", v.P, v.O)
}

var noVersion = version{O: -1}

type condKind uint8

const (
	condNone  condKind = iota // no If-Match: always holds
	condAny                   // "*": the key exists
	condETag                  // the current version is exactly ver
	condNever                 // an If-Match no version can match
)

type condition struct {
	kind condKind
	ver  version
	raw  string // condNever: the header as sent, for the picture
}

func (c condition) String() string {
	switch c.kind {
	case condAny:
		return " If-Match *"
	case condETag:
		return " If-Match " + c.ver.String()
	case condNever:
		return " If-Match " + c.raw
	}
	return ""
}

// state of one key. Exact says Ver is the current version; otherwise Ver is only a lower
// bound (a write of a version nobody observed took effect after it). An absent key keeps
// the last version it had as a lower bound for the next write.
type state struct {
	Exists bool
	Value  string
	Ver    version
	Exact  bool
}

var absent = state{Ver: noVersion}

// canHold: could the condition hold in s. Unknown versions give the benefit of the doubt.
func (c condition) canHold(s state) bool {
	switch c.kind {
	case condNone:
		return true
	case condAny:
		return s.Exists
	case condETag:
		if !s.Exists {
			return false
		}
		if s.Exact {
			return s.Ver == c.ver
		}
		return c.ver.O > s.Ver.O
	}
	return false
}

// canFail: could the condition fail in s (a 412 be right).
func (c condition) canFail(s state) bool {
	switch c.kind {
	case condNone:
		return false
	case condAny:
		return !s.Exists
	case condETag:
		return !s.Exists || !s.Exact || s.Ver != c.ver
	}
	return true
}

// newer: may a write of version v follow state s (offsets grow within a key).
func newer(v version, s state) bool { return s.Ver.O < 0 || v.O > s.Ver.O }

// input is what the client sent; for an unknown put, also the version its value was
// observed under anywhere in the history (and the line of the first get that read it).
// In the relaxed encoding (ops.go), Spont lists the writes the model may take before it.
type input struct {
	Key     string
	Op      opKind
	Outcome outcomeKind
	Cond    condition
	Value   string
	Seen    version
	HasSeen bool
	SeenBy  int
	Spont   []spontaneous
}

// spontaneous is an unknown write nobody observed, folded into the relaxed model.
type spontaneous struct {
	Op   opKind
	Cond condition
}

// unseen stands for the value of a write nobody read: which one it was makes no
// difference to any operation, and states that differ only there are one.
const unseen = "\x00unseen"

// applySpontaneous is s after w took effect, if it can.
func applySpontaneous(s state, w spontaneous) (state, bool) {
	if !w.Cond.canHold(s) {
		return s, false
	}
	if w.Op == opPut {
		return state{Exists: true, Value: unseen, Ver: s.Ver}, true
	}
	if s.Exists {
		return state{Ver: s.Ver}, true
	}
	return s, false
}

// closure is every state reachable from s by spontaneous writes.
func closure(s state, ws []spontaneous) []state {
	set := []state{s}
	for i := 0; i < len(set); i++ {
		for _, w := range ws {
			if n, ok := applySpontaneous(set[i], w); ok && !slices.Contains(set, n) {
				set = append(set, n)
			}
		}
	}
	return set
}

// output is what the client was answered.
type output struct {
	Status int
	Found  bool   // get: 200
	Read   string // get 200: the value read
	Ver    version
	HasVer bool
}

// meta is shown in the picture's tooltip; the checker ignores it.
type meta struct {
	ID      string
	Line    int
	Client  int
	Node    string
	Status  int
	Code    string
	Outcome outcomeKind
}

// step lists every state the key can be in after the operation, from s; none: illegal.
func step(s state, in input, out output) []state {
	if len(in.Spont) == 0 {
		return stepOne(s, in, out)
	}
	var res []state
	for _, c := range closure(s, in.Spont) {
		for _, n := range stepOne(c, in, out) {
			if !slices.Contains(res, n) {
				res = append(res, n)
			}
		}
	}
	return res
}

func stepOne(s state, in input, out output) []state {
	if in.Outcome == outcomeFail { // kept only for 412: the condition was false
		if in.Cond.canFail(s) {
			return []state{s}
		}
		return nil
	}
	switch in.Op {
	case opGet:
		if !out.Found {
			if !s.Exists {
				return []state{s}
			}
			return nil
		}
		if !s.Exists || s.Value != out.Read {
			return nil
		}
		if s.Exact && s.Ver != out.Ver || !s.Exact && !newer(out.Ver, s) {
			return nil
		}
		return []state{{Exists: true, Value: s.Value, Ver: out.Ver, Exact: true}}
	case opPut:
		written := state{Exists: true, Value: in.Value, Ver: in.Seen, Exact: in.HasSeen}
		if in.Outcome == outcomeOK {
			written.Ver, written.Exact = out.Ver, true
		}
		if !written.Exact {
			// Nobody saw it: its version is only known to be above the last one.
			written.Value, written.Ver = unseen, s.Ver
		}
		can := in.Cond.canHold(s) && (!written.Exact || newer(written.Ver, s))
		if in.Outcome == outcomeUnknown {
			if can {
				return []state{s, written}
			}
			return []state{s}
		}
		created := out.Status == 201
		if can && created != s.Exists {
			return []state{written}
		}
		return nil
	case opDelete:
		deleted := state{Ver: s.Ver}
		if in.Outcome == outcomeUnknown {
			if s.Exists && in.Cond.canHold(s) {
				return []state{s, deleted}
			}
			return []state{s}
		}
		if !in.Cond.canHold(s) {
			return nil
		}
		if !out.HasVer { // nothing written: only right if there was nothing to delete
			if !s.Exists {
				return []state{s}
			}
			return nil
		}
		if s.Exists && newer(out.Ver, s) {
			return []state{{Ver: out.Ver}}
		}
		return nil
	}
	return nil
}

// hashState is FNV-1a over the state's fields (Porcupine's cache calls it a lot).
func hashState(x any) uint64 {
	s := x.(state)
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for i := 0; i < len(s.Value); i++ {
		h = (h ^ uint64(s.Value[i])) * prime
	}
	flags := uint64(0)
	if s.Exists {
		flags |= 1
	}
	if s.Exact {
		flags |= 2
	}
	for _, w := range [...]uint64{flags, uint64(s.Ver.P), uint64(s.Ver.O)} {
		h = (h ^ w) * prime
	}
	return h
}

func describeOperation(i, o any) string {
	in, out := i.(input), o.(output)
	var b strings.Builder
	b.WriteString(in.Op.String())
	if in.Op == opPut {
		b.WriteString(" " + shortValue(in.Value))
	}
	b.WriteString(in.Cond.String())
	b.WriteString(" → ")
	switch {
	case in.Outcome == outcomeUnknown:
		b.WriteString("? (unknown outcome")
		if in.HasSeen {
			fmt.Fprintf(&b, "; value seen at %s", in.Seen)
			if in.SeenBy > 0 {
				fmt.Fprintf(&b, ", first by line %d", in.SeenBy)
			}
		} else if in.Op == opPut {
			b.WriteString("; value never seen")
		}
		b.WriteString(")")
	case in.Outcome == outcomeFail:
		fmt.Fprintf(&b, "%d", out.Status)
	case in.Op == opGet && out.Found:
		fmt.Fprintf(&b, "200 %s @%s", shortValue(out.Read), out.Ver)
	case in.Op == opGet:
		b.WriteString("404")
	case out.HasVer:
		fmt.Fprintf(&b, "%d @%s", out.Status, out.Ver)
	default:
		fmt.Fprintf(&b, "%d (nothing written)", out.Status)
	}
	return b.String()
}

// describeState is shown as HTML in the picture's tooltip, hence escaped.
func describeState(x any) string { return html.EscapeString(stateText(x.(state))) }

func stateText(s state) string {
	switch {
	case !s.Exists && s.Ver.O < 0:
		return "absent"
	case !s.Exists:
		return fmt.Sprintf("absent (last version %s)", s.Ver)
	case s.Value == unseen && s.Ver.O < 0:
		return "a value nobody read @?"
	case s.Value == unseen:
		return fmt.Sprintf("a value nobody read @>%s", s.Ver)
	}
	return fmt.Sprintf("%s @%s", shortValue(s.Value), s.Ver) // only unseen values are inexact
}

// shortValue is how the picture shows a value: the harness writes "<key>#<n>", and in a
// picture of one key the "#<n>" says it all.
func shortValue(v string) string {
	if i := strings.LastIndexByte(v, '#'); i > 0 && strings.Contains(v[:i], "@") {
		if _, err := strconv.Atoi(v[i+1:]); err == nil {
			return v[i:]
		}
	}
	return strconv.Quote(v)
}

// describeMeta is shown as HTML in the picture's tooltip, hence escaped.
func describeMeta(x any) string {
	m, ok := x.(meta)
	if !ok {
		return ""
	}
	return html.EscapeString(metaText(m))
}

func metaText(m meta) string {
	s := fmt.Sprintf("line %d, id %s, client %d, node %s, outcome %s", m.Line, m.ID, m.Client,
		m.Node, m.Outcome)
	if m.Status != 0 {
		s += fmt.Sprintf(", status %d", m.Status)
	}
	if m.Code != "" {
		s += ", code " + m.Code
	}
	return s
}

// partitionByKey splits a history into one sub-history per key, in order of first
// appearance; keys are independent registers, so the history is linearizable iff each is.
func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	index := map[string]int{}
	var parts [][]porcupine.Operation
	for _, op := range history {
		k := op.Input.(input).Key
		i, ok := index[k]
		if !ok {
			i = len(parts)
			index[k] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], op)
	}
	return parts
}

// kstateModel is the register model for Porcupine, partitioned by key.
func kstateModel() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: partitionByKey,
		Init:      func() []any { return []any{absent} },
		Step: func(s, i, o any) []any {
			next := step(s.(state), i.(input), o.(output))
			res := make([]any, len(next))
			for j, n := range next {
				res[j] = n
			}
			return res
		},
		Hash:                      hashState,
		DescribeOperation:         describeOperation,
		DescribeState:             describeState,
		DescribeOperationMetadata: describeMeta,
	}
	return nm.ToModel()
}
